package autodiff

import (
	"fmt"

	"github.com/sslrun/sslrun/core/gemm"
)

func matDims(op, name string, x *Var) (r, c int) {
	if len(x.Value.Shape) != 2 {
		panic(fmt.Sprintf("autodiff: %s: %s must be 2-D, have %v", op, name, x.Value.Shape))
	}
	return x.Value.Shape[0], x.Value.Shape[1]
}

func betaOf(overwrite bool) float32 {
	if overwrite {
		return 0
	}
	return 1
}

// MatMul returns op(a)·op(b) where op transposes when transA/transB is set:
// op(a) is [m,k], op(b) is [k,n], the result [m,n]. MatMul(z, z, false,
// true) is the similarity matrix z·zᵀ; the gradients of both operands are
// then summed into z's.
func (tp *Tape) MatMul(a, b *Var, transA, transB bool) *Var {
	ar, ac := matDims("MatMul", "a", a)
	br, bc := matDims("MatMul", "b", b)
	m, k := ar, ac
	if transA {
		m, k = ac, ar
	}
	kb, n := br, bc
	if transB {
		kb, n = bc, br
	}
	if k != kb {
		panic(fmt.Sprintf("autodiff: MatMul: inner dimensions differ: a %v (trans %v), b %v (trans %v)", a.Value.Shape, transA, b.Value.Shape, transB))
	}
	y := tp.out([]int{m, n}, a, b, nil)
	gemm.Sgemm(transA, transB, m, n, k, 1, a.Value.Data, ac, b.Value.Data, bc, 0, y.Value.Data, n)
	if nd := tp.record(opMatMul, y, a, b, nil); nd != nil {
		nd.t0, nd.t1 = transA, transB
		nd.i0, nd.i1, nd.i2 = m, n, k
	}
	return y
}

func (tp *Tape) backwardMatMul(nd *node) {
	a, b := nd.a, nd.b
	transA, transB := nd.t0, nd.t1
	m, n, k := nd.i0, nd.i1, nd.i2
	g := nd.out.Grad.Data
	lda, ldb := a.Value.Shape[1], b.Value.Shape[1]
	if a.requires {
		ga, overwrite := tp.gradOf(a)
		beta := betaOf(overwrite)
		if !transA { // dA [m,k] = dC·op(B)ᵀ
			gemm.Sgemm(false, !transB, m, k, n, 1, g, n, b.Value.Data, ldb, beta, ga, k)
		} else { // A is [k,m]: dA = op(B)·dCᵀ
			gemm.Sgemm(transB, true, k, m, n, 1, b.Value.Data, ldb, g, n, beta, ga, m)
		}
	}
	if b.requires {
		gb, overwrite := tp.gradOf(b)
		beta := betaOf(overwrite)
		if !transB { // dB [k,n] = op(A)ᵀ·dC
			gemm.Sgemm(!transA, false, k, n, m, 1, a.Value.Data, lda, g, n, beta, gb, n)
		} else { // B is [n,k]: dB = dCᵀ·op(A)
			gemm.Sgemm(true, transA, n, k, m, 1, g, n, a.Value.Data, lda, beta, gb, k)
		}
	}
}

// Linear returns x·wᵀ + b for x [N,in], w [out,in] (PyTorch's layout) and
// b [out] or nil: the bias is broadcast into the output first and the
// product accumulated onto it by one GEMM.
func (tp *Tape) Linear(x, w, b *Var) *Var {
	nb, in := matDims("Linear", "x", x)
	out, win := matDims("Linear", "w", w)
	if win != in {
		panic(fmt.Sprintf("autodiff: Linear: x %v does not match w %v", x.Value.Shape, w.Value.Shape))
	}
	if b != nil && (len(b.Value.Shape) != 1 || b.Value.Shape[0] != out) {
		panic(fmt.Sprintf("autodiff: Linear: bias %v, want [%d]", b.Value.Shape, out))
	}
	y := tp.out([]int{nb, out}, x, w, b)
	var beta float32
	if b != nil {
		broadcastRowsInto(y.Value.Data, b.Value.Data, nb, out, 1, false)
		beta = 1
	}
	gemm.Sgemm(false, true, nb, out, in, 1, x.Value.Data, in, w.Value.Data, in, beta, y.Value.Data, out)
	tp.record(opLinear, y, x, w, b)
	return y
}

func (tp *Tape) backwardLinear(nd *node) {
	x, w, b := nd.a, nd.b, nd.c
	nb, in := x.Value.Shape[0], x.Value.Shape[1]
	out := w.Value.Shape[0]
	g := nd.out.Grad.Data
	if w.requires { // dW [out,in] = gᵀ·x
		gw, overwrite := tp.gradOf(w)
		gemm.Sgemm(true, false, out, in, nb, 1, g, out, x.Value.Data, in, betaOf(overwrite), gw, in)
	}
	if b != nil && b.requires {
		gb, overwrite := tp.gradOf(b)
		sumRowsInto(gb, g, nb, out, 1, !overwrite)
	}
	if x.requires { // dX [N,in] = g·W
		gx, overwrite := tp.gradOf(x)
		gemm.Sgemm(false, false, nb, in, out, 1, g, out, w.Value.Data, in, betaOf(overwrite), gx, in)
	}
}
