//go:build amd64 && !purego

package gemm

import "golang.org/x/sys/cpu"

// hasAsm reports whether the AVX2+FMA micro-kernel can run here. Both
// flags are only set when the OS also saves the ymm registers.
var hasAsm = cpu.X86.HasAVX2 && cpu.X86.HasFMA

// kernAsm is the AVX2+FMA micro-kernel, in kernel_amd64.s: it computes the
// 6×16 tile C = A·B + beta*C (row stride ldc floats) from k depth steps of
// packed A (6 floats each) and packed B (16 floats each), without reading C
// when beta is 0. The caller guarantees that all three regions are in
// bounds.
//
//go:noescape
func kernAsm(k int, a, b, c *float32, ldc int, beta float32)

// Packing routines for full panels, in pack_amd64.s. Each requires its
// count to be at least 1 and every element it touches to be in bounds.

// packAN packs 6 rows × 8*kb8 columns of A (stride lda) scaled by alpha:
// dst[p*6+r] = alpha*src[r*lda+p].
//
//go:noescape
func packAN(kb8 int, src *float32, lda int, dst *float32, alpha float32)

// packAT packs npan consecutive full panels of op(A) = A^T, panel c at
// dst[c*pstride:]: dst[c*pstride+p*6+r] = alpha*src[p*lda+c*6+r].
//
//go:noescape
func packAT(kb int, src *float32, lda int, dst *float32, npan, pstride int, alpha float32)

// packBN packs kb rows × 16 columns of B: dst[p*16+q] = src[p*ldb+q].
//
//go:noescape
func packBN(kb int, src *float32, ldb int, dst *float32)

// packBT packs the 8*kb8×16 block of op(B) = B^T: dst[p*16+q] = src[q*ldb+p].
//
//go:noescape
func packBT(kb8 int, src *float32, ldb int, dst *float32)
