//go:build amd64 && !purego

#include "textflag.h"

// Packing routines for full panels (see driver.go for the layouts).

// func packAN(kb8 int, src *float32, lda int, dst *float32, alpha float32)
//
// Packs 6 rows of A (row stride lda floats) by 8*kb8 columns, scaled by
// alpha, as groups of 6: dst[p*6+r] = alpha*src[r*lda+p]. Each step
// transposes a 6×8 block with unpack/shuffle and stores the 8 columns of
// 6 as a 16-byte and an 8-byte store each.
TEXT ·packAN(SB), NOSPLIT, $0-36
	MOVQ kb8+0(FP), CX
	MOVQ src+8(FP), SI
	MOVQ lda+16(FP), BX
	SHLQ $2, BX
	MOVQ dst+24(FP), DI
	VBROADCASTSS alpha+32(FP), Y15
	LEAQ (BX)(BX*2), DX

loopAN:
	LEAQ (SI)(BX*4), R8
	VMULPS (SI), Y15, Y0
	VMULPS (SI)(BX*1), Y15, Y1
	VMULPS (SI)(BX*2), Y15, Y2
	VMULPS (SI)(DX*1), Y15, Y3
	VMULPS (R8), Y15, Y4
	VMULPS (R8)(BX*1), Y15, Y5
	VUNPCKLPS Y1, Y0, Y6
	VUNPCKHPS Y1, Y0, Y7
	VUNPCKLPS Y3, Y2, Y8
	VUNPCKHPS Y3, Y2, Y9
	VUNPCKLPS Y5, Y4, Y10
	VUNPCKHPS Y5, Y4, Y11
	VSHUFPS $0x44, Y8, Y6, Y0
	VSHUFPS $0xEE, Y8, Y6, Y1
	VSHUFPS $0x44, Y9, Y7, Y2
	VSHUFPS $0xEE, Y9, Y7, Y3
	VMOVUPS X0, 0(DI)
	VMOVLPS X10, 16(DI)
	VMOVUPS X1, 24(DI)
	VMOVHPS X10, 40(DI)
	VMOVUPS X2, 48(DI)
	VMOVLPS X11, 64(DI)
	VMOVUPS X3, 72(DI)
	VMOVHPS X11, 88(DI)
	VEXTRACTF128 $1, Y0, X0
	VEXTRACTF128 $1, Y1, X1
	VEXTRACTF128 $1, Y2, X2
	VEXTRACTF128 $1, Y3, X3
	VEXTRACTF128 $1, Y10, X10
	VEXTRACTF128 $1, Y11, X11
	VMOVUPS X0, 96(DI)
	VMOVLPS X10, 112(DI)
	VMOVUPS X1, 120(DI)
	VMOVHPS X10, 136(DI)
	VMOVUPS X2, 144(DI)
	VMOVLPS X11, 160(DI)
	VMOVUPS X3, 168(DI)
	VMOVHPS X11, 184(DI)
	ADDQ $32, SI
	ADDQ $192, DI
	DECQ CX
	JNZ loopAN
	VZEROUPPER
	RET

// func packBT(kb8 int, src *float32, ldb int, dst *float32)
//
// Packs a 16-column panel of op(B) = B^T from 16 rows of B (row stride ldb
// floats) by 8*kb8 depth: dst[p*16+q] = src[q*ldb+p], as two 8×8
// transposes per 8 depth steps.
TEXT ·packBT(SB), NOSPLIT, $0-32
	MOVQ kb8+0(FP), CX
	MOVQ src+8(FP), SI
	MOVQ ldb+16(FP), BX
	SHLQ $2, BX
	MOVQ dst+24(FP), DI
	LEAQ (BX)(BX*2), DX

loopBT:
	MOVQ SI, R8
	LEAQ (R8)(BX*4), R9
	VMOVUPS (R8), Y0
	VMOVUPS (R8)(BX*1), Y1
	VMOVUPS (R8)(BX*2), Y2
	VMOVUPS (R8)(DX*1), Y3
	VMOVUPS (R9), Y4
	VMOVUPS (R9)(BX*1), Y5
	VMOVUPS (R9)(BX*2), Y6
	VMOVUPS (R9)(DX*1), Y7
	VUNPCKLPS Y1, Y0, Y8
	VUNPCKHPS Y1, Y0, Y9
	VUNPCKLPS Y3, Y2, Y10
	VUNPCKHPS Y3, Y2, Y11
	VUNPCKLPS Y5, Y4, Y12
	VUNPCKHPS Y5, Y4, Y13
	VUNPCKLPS Y7, Y6, Y14
	VUNPCKHPS Y7, Y6, Y15
	VSHUFPS $0x44, Y10, Y8, Y0
	VSHUFPS $0xEE, Y10, Y8, Y1
	VSHUFPS $0x44, Y11, Y9, Y2
	VSHUFPS $0xEE, Y11, Y9, Y3
	VSHUFPS $0x44, Y14, Y12, Y4
	VSHUFPS $0xEE, Y14, Y12, Y5
	VSHUFPS $0x44, Y15, Y13, Y6
	VSHUFPS $0xEE, Y15, Y13, Y7
	VPERM2F128 $0x20, Y4, Y0, Y8
	VPERM2F128 $0x31, Y4, Y0, Y12
	VPERM2F128 $0x20, Y5, Y1, Y9
	VPERM2F128 $0x31, Y5, Y1, Y13
	VPERM2F128 $0x20, Y6, Y2, Y10
	VPERM2F128 $0x31, Y6, Y2, Y14
	VPERM2F128 $0x20, Y7, Y3, Y11
	VPERM2F128 $0x31, Y7, Y3, Y15
	VMOVUPS Y8, (DI)
	VMOVUPS Y9, 64(DI)
	VMOVUPS Y10, 128(DI)
	VMOVUPS Y11, 192(DI)
	VMOVUPS Y12, 256(DI)
	VMOVUPS Y13, 320(DI)
	VMOVUPS Y14, 384(DI)
	VMOVUPS Y15, 448(DI)
	LEAQ (R9)(BX*4), R8
	LEAQ (R8)(BX*4), R9
	VMOVUPS (R8), Y0
	VMOVUPS (R8)(BX*1), Y1
	VMOVUPS (R8)(BX*2), Y2
	VMOVUPS (R8)(DX*1), Y3
	VMOVUPS (R9), Y4
	VMOVUPS (R9)(BX*1), Y5
	VMOVUPS (R9)(BX*2), Y6
	VMOVUPS (R9)(DX*1), Y7
	VUNPCKLPS Y1, Y0, Y8
	VUNPCKHPS Y1, Y0, Y9
	VUNPCKLPS Y3, Y2, Y10
	VUNPCKHPS Y3, Y2, Y11
	VUNPCKLPS Y5, Y4, Y12
	VUNPCKHPS Y5, Y4, Y13
	VUNPCKLPS Y7, Y6, Y14
	VUNPCKHPS Y7, Y6, Y15
	VSHUFPS $0x44, Y10, Y8, Y0
	VSHUFPS $0xEE, Y10, Y8, Y1
	VSHUFPS $0x44, Y11, Y9, Y2
	VSHUFPS $0xEE, Y11, Y9, Y3
	VSHUFPS $0x44, Y14, Y12, Y4
	VSHUFPS $0xEE, Y14, Y12, Y5
	VSHUFPS $0x44, Y15, Y13, Y6
	VSHUFPS $0xEE, Y15, Y13, Y7
	VPERM2F128 $0x20, Y4, Y0, Y8
	VPERM2F128 $0x31, Y4, Y0, Y12
	VPERM2F128 $0x20, Y5, Y1, Y9
	VPERM2F128 $0x31, Y5, Y1, Y13
	VPERM2F128 $0x20, Y6, Y2, Y10
	VPERM2F128 $0x31, Y6, Y2, Y14
	VPERM2F128 $0x20, Y7, Y3, Y11
	VPERM2F128 $0x31, Y7, Y3, Y15
	VMOVUPS Y8, 32(DI)
	VMOVUPS Y9, 96(DI)
	VMOVUPS Y10, 160(DI)
	VMOVUPS Y11, 224(DI)
	VMOVUPS Y12, 288(DI)
	VMOVUPS Y13, 352(DI)
	VMOVUPS Y14, 416(DI)
	VMOVUPS Y15, 480(DI)
	ADDQ $32, SI
	ADDQ $512, DI
	DECQ CX
	JNZ loopBT
	VZEROUPPER
	RET

// func packAT(kb int, src *float32, lda int, dst *float32, npan, pstride int, alpha float32)
//
// Packs npan consecutive 6-row panels of op(A) = A^T, scaled by alpha:
// panel c gets dst[c*pstride + p*6 + r] = alpha*src[p*lda + c*6 + r] (pstride
// in floats). Rows of A are walked in order and each is copied into all the
// panels at once, so every cache line of A is read once even when lda is a
// multiple of the page size.
TEXT ·packAT(SB), NOSPLIT, $0-52
	MOVQ kb+0(FP), CX
	MOVQ src+8(FP), SI
	MOVQ lda+16(FP), BX
	SHLQ $2, BX
	MOVQ dst+24(FP), DI
	MOVQ npan+32(FP), R12
	MOVQ pstride+40(FP), R13
	SHLQ $2, R13
	VBROADCASTSS alpha+48(FP), X15

rowAT:
	MOVQ SI, R10
	MOVQ DI, R11
	MOVQ R12, DX

panAT:
	VMULPS (R10), X15, X0
	VMOVSD 16(R10), X1
	VMULPS X1, X15, X1
	VMOVUPS X0, (R11)
	VMOVSD X1, 16(R11)
	ADDQ $24, R10
	ADDQ R13, R11
	DECQ DX
	JNZ panAT

	ADDQ BX, SI
	ADDQ $24, DI
	DECQ CX
	JNZ rowAT
	RET

// func packBN(kb int, src *float32, ldb int, dst *float32)
//
// Packs 16 columns of B by kb rows: dst[p*16+q] = src[p*ldb+q].
TEXT ·packBN(SB), NOSPLIT, $0-32
	MOVQ kb+0(FP), CX
	MOVQ src+8(FP), SI
	MOVQ ldb+16(FP), BX
	SHLQ $2, BX
	MOVQ dst+24(FP), DI

loopBN:
	VMOVUPS (SI), Y0
	VMOVUPS 32(SI), Y1
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	ADDQ BX, SI
	ADDQ $64, DI
	DECQ CX
	JNZ loopBN
	VZEROUPPER
	RET
