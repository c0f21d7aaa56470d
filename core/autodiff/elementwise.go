package autodiff

import (
	"fmt"
	"math"

	"github.com/sslrun/sslrun/core/parallel"
	"github.com/sslrun/sslrun/core/tensor"
)

// ewGrain is the number of elements below which an elementwise loop stays on
// the calling goroutine: a hand-off to another worker costs a few
// microseconds, about what 32k simple float operations take.
const ewGrain = 1 << 15

type ewKind uint8

const (
	// forward: dst = f(a, b)
	ewAdd ewKind = iota
	ewSub
	ewMul
	ewScale     // s*a
	ewAddScalar // a+s
	ewExp
	ewLog
	ewSquare
	ewSqrt
	ewReLU
	ewAddReLU // max(a+b, 0)
	// backward: dst (=|+=) contribution, acc selects +=
	ewGScale // s*a
	ewGMul   // s*a*b
	ewGDiv   // s*a/b
	ewGReLU  // a where b > 0
)

// ewTask is one elementwise loop over [0, len(dst)); a Tape owns one and
// hands a pointer to core/parallel, which then needs no allocation.
type ewTask struct {
	kind      ewKind
	acc       bool
	dst, a, b []float32
	s         float32
}

func (t *ewTask) Do(lo, hi int) {
	if hi <= lo {
		return
	}
	dst := t.dst[lo:hi]
	a := t.a[lo:hi]
	var b []float32
	if t.b != nil {
		b = t.b[lo:hi]
		_ = b[len(dst)-1]
	}
	_ = a[len(dst)-1]
	s := t.s
	if n := len(dst) &^ 7; ewAsm && n > 0 {
		// The ReLU loops have AVX2 versions; the remainder runs below.
		switch t.kind {
		case ewReLU:
			reluAVX(&dst[0], &a[0], nil, n)
		case ewAddReLU:
			reluAVX(&dst[0], &a[0], &b[0], n)
		case ewGReLU:
			reluGradAVX(&dst[0], &a[0], &b[0], n, t.acc)
		default:
			n = 0
		}
		if n > 0 {
			dst, a = dst[n:], a[n:]
			if b != nil {
				b = b[n:]
			}
		}
	}
	switch t.kind {
	case ewAdd:
		for i := range dst {
			dst[i] = a[i] + b[i]
		}
	case ewSub:
		for i := range dst {
			dst[i] = a[i] - b[i]
		}
	case ewMul:
		for i := range dst {
			dst[i] = a[i] * b[i]
		}
	case ewScale:
		for i := range dst {
			dst[i] = s * a[i]
		}
	case ewAddScalar:
		for i := range dst {
			dst[i] = a[i] + s
		}
	case ewExp:
		for i := range dst {
			dst[i] = float32(math.Exp(float64(a[i])))
		}
	case ewLog:
		for i := range dst {
			dst[i] = float32(math.Log(float64(a[i])))
		}
	case ewSquare:
		for i := range dst {
			dst[i] = a[i] * a[i]
		}
	case ewSqrt:
		for i := range dst {
			dst[i] = float32(math.Sqrt(float64(a[i])))
		}
	case ewReLU:
		// The builtin max compiles without a data-dependent branch (the
		// signs of activations are random, so a branch would mispredict
		// half the time) and returns NaN for NaN, as PyTorch's ReLU does: a
		// NaN must reach the loss, not be laundered into zeros.
		for i, x := range a {
			dst[i] = max(x, 0)
		}
	case ewAddReLU:
		for i := range dst {
			dst[i] = max(a[i]+b[i], 0)
		}
	case ewGScale:
		if t.acc {
			for i := range dst {
				dst[i] += s * a[i]
			}
		} else if s == 1 {
			copy(dst, a)
		} else {
			for i := range dst {
				dst[i] = s * a[i]
			}
		}
	case ewGMul:
		if t.acc {
			for i := range dst {
				dst[i] += s * a[i] * b[i]
			}
		} else {
			for i := range dst {
				dst[i] = s * a[i] * b[i]
			}
		}
	case ewGDiv:
		if t.acc {
			for i := range dst {
				dst[i] += s * a[i] / b[i]
			}
		} else {
			for i := range dst {
				dst[i] = s * a[i] / b[i]
			}
		}
	case ewGReLU:
		// b is the ReLU output: +0 or positive (or NaN). mask is all ones
		// when b's bits are nonzero, i.e. b > 0, without a branch.
		if t.acc {
			for i := range dst {
				mask := uint32(-int32(math.Float32bits(b[i])) >> 31)
				dst[i] += math.Float32frombits(math.Float32bits(a[i]) & mask)
			}
		} else {
			for i := range dst {
				mask := uint32(-int32(math.Float32bits(b[i])) >> 31)
				dst[i] = math.Float32frombits(math.Float32bits(a[i]) & mask)
			}
		}
	}
}

// ew runs one elementwise loop, in parallel when it is large.
func (tp *Tape) ew(k ewKind, dst, a, b []float32, s float32, acc bool) {
	t := &tp.ewT
	t.kind, t.dst, t.a, t.b, t.s, t.acc = k, dst, a, b, s, acc
	if len(dst) < 2*ewGrain {
		t.Do(0, len(dst))
	} else {
		parallel.RunDynamic(len(dst), ewGrain, t)
	}
	t.dst, t.a, t.b = nil, nil, nil
}

// gradEW adds the contribution of an elementwise backward loop into v's
// gradient: grad(v) (=|+=) kind(a, b, s).
func (tp *Tape) gradEW(v *Var, k ewKind, a, b []float32, s float32) {
	if !v.requires {
		return
	}
	g, overwrite := tp.gradOf(v)
	tp.ew(k, g, a, b, s, !overwrite)
}

func sameShape(op string, a, b *Var) {
	if !tensor.EqualShapes(a.Value.Shape, b.Value.Shape) {
		panic(fmt.Sprintf("autodiff: %s: shapes %v and %v differ", op, a.Value.Shape, b.Value.Shape))
	}
}

// unary is the common forward of one-operand elementwise ops.
func (tp *Tape) unary(op opKind, k ewKind, x *Var, s float32) *Var {
	y := tp.out(x.Value.Shape, x, nil, nil)
	tp.ew(k, y.Value.Data, x.Value.Data, nil, s, false)
	if n := tp.record(op, y, x, nil, nil); n != nil {
		n.f0 = s
	}
	return y
}

// binary is the common forward of two-operand elementwise ops.
func (tp *Tape) binary(op opKind, k ewKind, a, b *Var) *Var {
	y := tp.out(a.Value.Shape, a, b, nil)
	tp.ew(k, y.Value.Data, a.Value.Data, b.Value.Data, 0, false)
	tp.record(op, y, a, b, nil)
	return y
}

// Add returns a+b elementwise; the shapes must be equal.
func (tp *Tape) Add(a, b *Var) *Var { sameShape("Add", a, b); return tp.binary(opAdd, ewAdd, a, b) }

// Sub returns a-b elementwise; the shapes must be equal.
func (tp *Tape) Sub(a, b *Var) *Var { sameShape("Sub", a, b); return tp.binary(opSub, ewSub, a, b) }

// Mul returns a*b elementwise; the shapes must be equal.
func (tp *Tape) Mul(a, b *Var) *Var { sameShape("Mul", a, b); return tp.binary(opMul, ewMul, a, b) }

// Scale returns s*x.
func (tp *Tape) Scale(x *Var, s float32) *Var { return tp.unary(opScale, ewScale, x, s) }

// Neg returns -x.
func (tp *Tape) Neg(x *Var) *Var { return tp.unary(opScale, ewScale, x, -1) }

// AddScalar returns x+s.
func (tp *Tape) AddScalar(x *Var, s float32) *Var { return tp.unary(opAddScalar, ewAddScalar, x, s) }

// Exp returns e^x elementwise.
func (tp *Tape) Exp(x *Var) *Var { return tp.unary(opExp, ewExp, x, 0) }

// Log returns the natural logarithm elementwise (-Inf at 0, NaN below).
func (tp *Tape) Log(x *Var) *Var { return tp.unary(opLog, ewLog, x, 0) }

// Square returns x*x elementwise.
func (tp *Tape) Square(x *Var) *Var { return tp.unary(opSquare, ewSquare, x, 0) }

// Sqrt returns the square root elementwise. Its gradient is infinite at 0,
// as in PyTorch; add a small constant first where x can be 0.
func (tp *Tape) Sqrt(x *Var) *Var { return tp.unary(opSqrt, ewSqrt, x, 0) }

// ReLU returns max(x, 0) elementwise; the gradient at 0 is 0, as in PyTorch.
func (tp *Tape) ReLU(x *Var) *Var { return tp.unary(opReLU, ewReLU, x, 0) }

// AddReLU returns ReLU(Add(a, b)) with the same values and gradients, in
// one pass and without storing the sum (the residual connection of a
// ResNet block); the shapes must be equal.
func (tp *Tape) AddReLU(a, b *Var) *Var {
	sameShape("AddReLU", a, b)
	return tp.binary(opAddReLU, ewAddReLU, a, b)
}

// backwardElementwise handles the ops above.
func (tp *Tape) backwardElementwise(n *node) {
	g := n.out.Grad.Data
	a, b := n.a, n.b
	switch n.op {
	case opAdd:
		tp.gradEW(a, ewGScale, g, nil, 1)
		tp.gradEW(b, ewGScale, g, nil, 1)
	case opSub:
		tp.gradEW(a, ewGScale, g, nil, 1)
		tp.gradEW(b, ewGScale, g, nil, -1)
	case opMul:
		tp.gradEW(a, ewGMul, g, b.Value.Data, 1)
		tp.gradEW(b, ewGMul, g, a.Value.Data, 1)
	case opScale:
		tp.gradEW(a, ewGScale, g, nil, n.f0)
	case opAddScalar:
		tp.gradEW(a, ewGScale, g, nil, 1)
	case opExp:
		tp.gradEW(a, ewGMul, g, n.out.Value.Data, 1)
	case opLog:
		tp.gradEW(a, ewGDiv, g, a.Value.Data, 1)
	case opSquare:
		tp.gradEW(a, ewGMul, g, a.Value.Data, 2)
	case opSqrt:
		tp.gradEW(a, ewGDiv, g, n.out.Value.Data, 0.5)
	case opReLU:
		tp.gradEW(a, ewGReLU, g, n.out.Value.Data, 1)
	case opAddReLU:
		// The ReLU's mask goes straight into both operands' gradients
		// (twice into one operand added to itself).
		tp.gradEW(a, ewGReLU, g, n.out.Value.Data, 1)
		tp.gradEW(b, ewGReLU, g, n.out.Value.Data, 1)
	}
}
