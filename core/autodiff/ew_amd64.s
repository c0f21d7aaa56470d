//go:build amd64 && !purego

#include "textflag.h"

// AVX2 loops of the ReLU ops in elementwise.go. n is a positive multiple
// of 8. The values are those of the Go loops bit for bit.

// func reluAVX(dst, a, b *float32, n int)
//
// dst = max(a (+ b), 0) like Go's max: NaN stays NaN, -0 becomes +0. b
// may be nil (plain ReLU).
TEXT ·reluAVX(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DX
	MOVQ n+24(FP), CX
	VXORPS Y15, Y15, Y15
	TESTQ DX, DX
	JZ relu8

addrelu8:
	VMOVUPS (SI), Y0
	VADDPS (DX), Y0, Y0
	// max(0, x) returns x (the second source) when x is NaN or ±0;
	// adding +0 then turns -0 into +0 and changes nothing else.
	VMAXPS Y0, Y15, Y0
	VADDPS Y15, Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ $32, SI
	ADDQ $32, DX
	ADDQ $32, DI
	SUBQ $8, CX
	JNZ addrelu8
	VZEROUPPER
	RET

relu8:
	VMOVUPS (SI), Y0
	VMAXPS Y0, Y15, Y0
	VADDPS Y15, Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	SUBQ $8, CX
	JNZ relu8
	VZEROUPPER
	RET

// func reluGradAVX(dst, grad, y *float32, n int, acc bool)
//
// dst (=|+=) grad where the bits of the ReLU output y are nonzero (y > 0 or
// NaN; a ReLU output is never -0), 0 elsewhere.
TEXT ·reluGradAVX(SB), NOSPLIT, $0-33
	MOVQ dst+0(FP), DI
	MOVQ grad+8(FP), SI
	MOVQ y+16(FP), DX
	MOVQ n+24(FP), CX
	MOVBQZX acc+32(FP), AX
	VPXOR Y15, Y15, Y15
	TESTQ AX, AX
	JNZ gacc8

g8:
	VPCMPEQD (DX), Y15, Y1 // all ones where y's bits are zero
	VANDNPS (SI), Y1, Y0   // g where they are not
	VMOVUPS Y0, (DI)
	ADDQ $32, SI
	ADDQ $32, DX
	ADDQ $32, DI
	SUBQ $8, CX
	JNZ g8
	VZEROUPPER
	RET

gacc8:
	VPCMPEQD (DX), Y15, Y1
	VANDNPS (SI), Y1, Y0
	VADDPS (DI), Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ $32, SI
	ADDQ $32, DX
	ADDQ $32, DI
	SUBQ $8, CX
	JNZ gacc8
	VZEROUPPER
	RET
