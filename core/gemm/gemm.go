// Package gemm holds sslrun's single-precision matrix multiply, the kernel
// every linear layer, convolution and similarity matrix in the core runs on.
//
// Sgemm follows the GotoBLAS/BLIS design: op(A) and op(B) are copied
// ("packed") block by block into contiguous buffers laid out in the exact
// order a register-blocked micro-kernel reads them, and the blocks are sized
// so that the packed B micro-panel stays in L1, the packed A block in L2 and
// the packed B block in L3. The micro-kernel computes a 6×16 tile of C in
// twelve ymm accumulators with AVX2 FMA instructions (Go assembly, chosen at
// run time from the CPU's features); a portable Go micro-kernel takes its
// place elsewhere. Work on blocks of C is split across core/parallel's
// workers once a product is large enough to pay for the hand-off.
package gemm

import (
	"fmt"
	"sync/atomic"
)

// forceGeneric makes Sgemm use the portable Go micro-kernel even where the
// assembly one is available. Only tests and benchmarks set it.
var forceGeneric atomic.Bool

// ForceGeneric makes every later Sgemm call use the portable pure-Go
// micro-kernel (on=true) or the fastest one the CPU supports (on=false), and
// returns the previous setting. It exists so that tests and benchmarks can
// exercise the fallback path on machines that have AVX2; production code has
// no reason to call it.
func ForceGeneric(on bool) (prev bool) { return forceGeneric.Swap(on) }

// HasAsmKernel reports whether this build and CPU run the assembly
// micro-kernel (amd64 with AVX2 and FMA) when ForceGeneric is off.
func HasAsmKernel() bool { return hasAsm }

// Sgemm computes C = alpha*op(A)*op(B) + beta*C for row-major matrices,
// where op(X) is X or X^T as transA/transB say. op(A) is m×k, op(B) is k×n
// and C is m×n; lda, ldb and ldc are the row strides of A, B and C as stored.
// It has the argument order of gonum's blas.Float32 Sgemm so that it can
// stand behind gorgonia's tensor.Use.
//
// When beta is 0, C is only written, never read, so it may hold NaN or Inf.
// C must not overlap A or B. Sgemm is safe for concurrent use on disjoint C. It panics, like gonum, when
// a dimension is negative or a stride or slice length cannot hold the stated
// shape: those are programmer errors, and the assembly kernel must never be
// handed a short slice.
func Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	CheckArgs(transA, transB, m, n, k, a, lda, b, ldb, c, ldc)
	if m == 0 || n == 0 {
		return
	}
	if k == 0 || alpha == 0 {
		scaleC(m, n, beta, c, ldc)
		return
	}
	sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// SgemmBlockedC is Sgemm with C stored as column blocks: columns
// [q*blk, (q+1)*blk) of the m×n result are the m×blk matrix at
// c[q*blkStride:] with row stride ldc (the last block holds what remains of
// the n columns). With blk >= n it is Sgemm. A convolution over a group of
// images computes [K, images×pixels] in one product, while its NCHW output
// holds each image's [K, pixels] block apart from the next: as blocks of
// blk = pixels, blkStride = K×pixels, ldc = pixels, the product writes the
// output in place instead of through a staging copy. Blocks must not
// overlap (blkStride >= (m-1)*ldc + blk). It panics on invalid arguments,
// as Sgemm does.
func SgemmBlockedC(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc, blk, blkStride int) {
	if blk < 1 || blk >= n {
		if blk < 1 {
			panic(fmt.Sprintf("gemm: column block %d < 1", blk))
		}
		Sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	// A, and C's first block; then all of B.
	CheckArgs(transA, transB, m, blk, k, a, lda, b, ldb, c, ldc)
	if transB {
		checkMat("B", n, k, b, ldb)
	} else {
		checkMat("B", k, n, b, ldb)
	}
	if m > 0 && blkStride < (m-1)*ldc+blk {
		panic(fmt.Sprintf("gemm: column blocks of %d×%d with stride %d overlap (block stride %d)", m, blk, ldc, blkStride))
	}
	if m == 0 || n == 0 {
		return
	}
	nb := (n + blk - 1) / blk
	if need := (nb-1)*blkStride + (m-1)*ldc + (n - (nb-1)*blk); len(c) < need {
		panic(fmt.Sprintf("gemm: len(C)=%d, need %d for %d×%d in blocks of %d (stride %d, row stride %d)", len(c), need, m, n, blk, blkStride, ldc))
	}
	if k == 0 || alpha == 0 {
		for q := 0; q < nb; q++ {
			scaleC(m, min(blk, n-q*blk), beta, c[q*blkStride:], ldc)
		}
		return
	}
	sgemmBlocked(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, blk, blkStride)
}

// CheckArgs panics when Sgemm's arguments cannot describe valid matrices:
// a negative dimension, a stride below a row's width, or a slice too short
// for its matrix. Other implementations of the same signature (the
// openblas comparison package) use it too, since they would read out of
// bounds.
func CheckArgs(transA, transB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	if m < 0 || n < 0 || k < 0 {
		panic(fmt.Sprintf("gemm: negative dimension m=%d n=%d k=%d", m, n, k))
	}
	ar, ac := m, k
	if transA {
		ar, ac = k, m
	}
	br, bc := k, n
	if transB {
		br, bc = n, k
	}
	checkMat("A", ar, ac, a, lda)
	checkMat("B", br, bc, b, ldb)
	checkMat("C", m, n, c, ldc)
}

func checkMat(name string, rows, cols int, x []float32, ld int) {
	if ld < max(1, cols) {
		panic(fmt.Sprintf("gemm: ld%s=%d < %d columns", name, ld, cols))
	}
	if rows == 0 || cols == 0 {
		return
	}
	if need := (rows-1)*ld + cols; len(x) < need {
		panic(fmt.Sprintf("gemm: len(%s)=%d, need %d for %d×%d with stride %d", name, len(x), need, rows, cols, ld))
	}
}

// scaleC sets C = beta*C, writing zeros without reading C when beta is 0.
func scaleC(m, n int, beta float32, c []float32, ldc int) {
	for i := 0; i < m; i++ {
		row := c[i*ldc : i*ldc+n]
		switch beta {
		case 0:
			clear(row)
		case 1:
		default:
			for j := range row {
				row[j] *= beta
			}
		}
	}
}

// ref is the obviously correct triple loop the fast paths are tested against.
func ref(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float32
			for p := 0; p < k; p++ {
				var av, bv float32
				if transA {
					av = a[p*lda+i]
				} else {
					av = a[i*lda+p]
				}
				if transB {
					bv = b[j*ldb+p]
				} else {
					bv = b[p*ldb+j]
				}
				s += av * bv
			}
			if beta == 0 {
				c[i*ldc+j] = alpha * s
			} else {
				c[i*ldc+j] = alpha*s + beta*c[i*ldc+j]
			}
		}
	}
}
