//go:build amd64 && !purego

#include "textflag.h"

// AVX2 inner loops of the batch-norm kernels (batchnorm.go). Every routine
// takes a count n that is a positive multiple of 8 and handles n elements;
// the Go callers do the remainder. Float32 arithmetic is done in the same
// order as the Go loops, with separate multiplies and adds (no FMA), so
// that the values match the portable code bit for bit; float64 sums use
// FMA and their own order, which only moves their last bits.
//
// A bnMap (a, b, hi, lo float32) describes the normalization
// z = ((x-hi)-lo)*a + b; the masked variants keep the gradient where the
// ReLU of z passed it, i.e. where !(z <= 0) (z > 0 or NaN).

// MAPZ computes z of x (in X) into Z with hi Y12, lo Y13, a Y14, b Y15.
#define MAPZ(X, Z) \
	VSUBPS Y12, X, Z; \
	VSUBPS Y13, Z, Z; \
	VMULPS Y14, Z, Z; \
	VADDPS Y15, Z, Z

// LOADMAP broadcasts the bnMap at R into Y12..Y15 and zeroes Y11.
#define LOADMAP(R) \
	VBROADCASTSS 0(R), Y14; \
	VBROADCASTSS 4(R), Y15; \
	VBROADCASTSS 8(R), Y12; \
	VBROADCASTSS 12(R), Y13; \
	VXORPS Y11, Y11, Y11

// HSUM adds the four float64 lanes of Y (X is its low half) into X's low
// lane, using X1 as scratch.
#define HSUM(Y, X) \
	VEXTRACTF128 $1, Y, X1; \
	VADDPD X1, X, X; \
	VPERMILPD $1, X, X1; \
	VADDSD X1, X, X

// func bnSumsAVX(x *float32, n int, shift float64) (s1, s2 float64)
//
// s1 = sum(x - shift), s2 = sum((x - shift)^2) in float64.
TEXT ·bnSumsAVX(SB), NOSPLIT, $0-40
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	VBROADCASTSD shift+16(FP), Y15
	VXORPD Y4, Y4, Y4
	VXORPD Y5, Y5, Y5
	VXORPD Y6, Y6, Y6
	VXORPD Y7, Y7, Y7

sums8:
	VCVTPS2PD (SI), Y0
	VCVTPS2PD 16(SI), Y2
	VSUBPD Y15, Y0, Y0
	VSUBPD Y15, Y2, Y2
	VADDPD Y0, Y4, Y4
	VADDPD Y2, Y5, Y5
	VFMADD231PD Y0, Y0, Y6
	VFMADD231PD Y2, Y2, Y7
	ADDQ $32, SI
	SUBQ $8, CX
	JNZ sums8

	VADDPD Y5, Y4, Y4
	VADDPD Y7, Y6, Y6
	HSUM(Y4, X4)
	HSUM(Y6, X6)
	MOVSD X4, s1+24(FP)
	MOVSD X6, s2+32(FP)
	VZEROUPPER
	RET

// func bnNormAVX(x, y *float32, n int, m *bnMap, relu bool)
//
// y = z(x), or max(z(x), 0) with relu (NaN stays NaN and -0 becomes +0,
// as Go's max does).
TEXT ·bnNormAVX(SB), NOSPLIT, $0-33
	MOVQ x+0(FP), SI
	MOVQ y+8(FP), DI
	MOVQ n+16(FP), CX
	MOVQ m+24(FP), AX
	LOADMAP(AX)
	MOVBQZX relu+32(FP), BX
	TESTQ BX, BX
	JNZ relu8

norm8:
	VMOVUPS (SI), Y0
	MAPZ(Y0, Y0)
	VMOVUPS Y0, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	SUBQ $8, CX
	JNZ norm8
	VZEROUPPER
	RET

relu8:
	VMOVUPS (SI), Y0
	MAPZ(Y0, Y0)
	// max(0, z) returns z (the second source) when z is NaN or ±0; adding
	// +0 then turns -0 into +0 and leaves everything else unchanged.
	VMAXPS Y0, Y11, Y0
	VADDPS Y11, Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	SUBQ $8, CX
	JNZ relu8
	VZEROUPPER
	RET

// GRADACC adds dy (Y1, float32) to Y4/Y5, dy*(x-mean) to Y6/Y7 and x-mean
// to Y8/Y9 in float64, with x in Y0 and mean in Y10; it clobbers Y0..Y3.
#define GRADACC \
	VCVTPS2PD X0, Y2; \
	VEXTRACTF128 $1, Y0, X0; \
	VCVTPS2PD X0, Y0; \
	VCVTPS2PD X1, Y3; \
	VEXTRACTF128 $1, Y1, X1; \
	VCVTPS2PD X1, Y1; \
	VSUBPD Y10, Y2, Y2; \
	VSUBPD Y10, Y0, Y0; \
	VADDPD Y3, Y4, Y4; \
	VADDPD Y1, Y5, Y5; \
	VFMADD231PD Y3, Y2, Y6; \
	VFMADD231PD Y1, Y0, Y7; \
	VADDPD Y2, Y8, Y8; \
	VADDPD Y0, Y9, Y9

// func bnGradSumsAVX(dy, x *float32, n int, mean float64, m *bnMap) (s1, s2, s3 float64)
//
// s1 = sum(g), s2 = sum(g*(x - mean)), s3 = sum(x - mean) in float64,
// where g is dy, or with m != nil dy masked by the ReLU of z(x).
TEXT ·bnGradSumsAVX(SB), NOSPLIT, $0-64
	MOVQ dy+0(FP), SI
	MOVQ x+8(FP), DI
	MOVQ n+16(FP), CX
	VBROADCASTSD mean+24(FP), Y10
	MOVQ m+32(FP), AX
	VXORPD Y4, Y4, Y4
	VXORPD Y5, Y5, Y5
	VXORPD Y6, Y6, Y6
	VXORPD Y7, Y7, Y7
	VXORPD Y8, Y8, Y8
	VXORPD Y9, Y9, Y9
	TESTQ AX, AX
	JZ grad8
	LOADMAP(AX)

masked8:
	VMOVUPS (DI), Y0
	VMOVUPS (SI), Y1
	MAPZ(Y0, Y2)
	VCMPPS $6, Y11, Y2, Y2 // !(z <= 0)
	VANDPS Y2, Y1, Y1
	GRADACC
	ADDQ $32, SI
	ADDQ $32, DI
	SUBQ $8, CX
	JNZ masked8
	JMP gradsum

grad8:
	VMOVUPS (DI), Y0
	VMOVUPS (SI), Y1
	GRADACC
	ADDQ $32, SI
	ADDQ $32, DI
	SUBQ $8, CX
	JNZ grad8

gradsum:
	VADDPD Y5, Y4, Y4
	VADDPD Y7, Y6, Y6
	VADDPD Y9, Y8, Y8
	HSUM(Y4, X4)
	HSUM(Y6, X6)
	HSUM(Y8, X8)
	MOVSD X4, s1+40(FP)
	MOVSD X6, s2+48(FP)
	MOVSD X8, s3+56(FP)
	VZEROUPPER
	RET

// func bnDxAVX(dx, dy, x *float32, n int, k *bnDx, m *bnMap, acc bool)
//
// dx (=|+=) k.a*g + k.b*((x-k.hi)-k.lo) + k.c, with g as in bnGradSumsAVX.
TEXT ·bnDxAVX(SB), NOSPLIT, $0-49
	MOVQ dx+0(FP), DI
	MOVQ dy+8(FP), SI
	MOVQ x+16(FP), DX
	MOVQ n+24(FP), CX
	MOVQ k+32(FP), BX
	MOVQ m+40(FP), AX
	MOVBQZX acc+48(FP), R8
	VBROADCASTSS 0(BX), Y5
	VBROADCASTSS 4(BX), Y6
	VBROADCASTSS 8(BX), Y7
	VBROADCASTSS 12(BX), Y8
	VBROADCASTSS 16(BX), Y9
	TESTQ AX, AX
	JZ dx8
	LOADMAP(AX)

dx8:
	VMOVUPS (DX), Y0
	VMOVUPS (SI), Y1
	TESTQ AX, AX
	JZ nomask
	MAPZ(Y0, Y2)
	VCMPPS $6, Y11, Y2, Y2
	VANDPS Y2, Y1, Y1

nomask:
	VMULPS Y5, Y1, Y1
	VSUBPS Y8, Y0, Y3
	VSUBPS Y9, Y3, Y3
	VMULPS Y6, Y3, Y3
	VADDPS Y3, Y1, Y1
	VADDPS Y7, Y1, Y1
	TESTQ R8, R8
	JZ store
	VADDPS (DI), Y1, Y1

store:
	VMOVUPS Y1, (DI)
	ADDQ $32, DI
	ADDQ $32, SI
	ADDQ $32, DX
	SUBQ $8, CX
	JNZ dx8
	VZEROUPPER
	RET
