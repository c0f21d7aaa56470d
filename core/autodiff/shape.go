package autodiff

import (
	"fmt"
	"math"

	"github.com/sslrun/sslrun/core/tensor"
)

// view returns a Var whose Value is x's data [off, off+numel(shape)) with
// the given shape. Its gradient is the same window of x's gradient, so a
// view needs no backward op; views of views point at the original base.
func (tp *Tape) view(x *Var, off int, shape []int) *Var {
	base := x
	if x.base != nil {
		base, off = x.base, x.off+off
	}
	n := tensor.Numel(shape)
	v := tp.vars.get()
	v.Value = tp.tensorOf(base.Value.Data[off:off+n:off+n], shape)
	v.requires = x.requires && !tp.noGrad
	if v.requires {
		v.base, v.off = base, off
	}
	return v
}

// Reshape returns a view of x with another shape sharing x's Value and Grad
// memory (no copy in either direction). One dimension may be -1 and is then
// inferred. A wrong element count is a programmer error and panics.
func (tp *Tape) Reshape(x *Var, shape ...int) *Var {
	// The panics format s, not shape, so that the variadic slice does not
	// escape and a Reshape per step allocates nothing.
	s := tp.ints.get(len(shape))
	copy(s, shape)
	infer, known := -1, 1
	for i, d := range s {
		if d == -1 {
			if infer >= 0 {
				panic(fmt.Sprintf("autodiff: Reshape %v: more than one -1", s))
			}
			infer = i
			continue
		}
		known *= d
	}
	n := len(x.Value.Data)
	if infer >= 0 && known > 0 && n%known == 0 {
		s[infer] = n / known
	}
	if tensor.Numel(s) != n {
		panic(fmt.Sprintf("autodiff: cannot reshape %v to %v", x.Value.Shape, s))
	}
	return tp.view(x, 0, s)
}

// SliceRows returns rows [lo, hi) of x [N, ...] as a view sharing x's Value
// and Grad memory (rows of a row-major tensor are contiguous).
func (tp *Tape) SliceRows(x *Var, lo, hi int) *Var {
	rows, d := rowsOf("SliceRows", x)
	if lo < 0 || hi > rows || lo > hi {
		panic(fmt.Sprintf("autodiff: SliceRows [%d,%d) of %v", lo, hi, x.Value.Shape))
	}
	s := tp.ints.get(len(x.Value.Shape))
	copy(s, x.Value.Shape)
	s[0] = hi - lo
	return tp.view(x, lo*d, s)
}

// ConcatRows stacks a [Na, ...] on b [Nb, ...] into [Na+Nb, ...]; the
// trailing dimensions must match. The values are copied.
func (tp *Tape) ConcatRows(a, b *Var) *Var {
	as, bs := a.Value.Shape, b.Value.Shape
	if len(as) < 1 || len(as) != len(bs) || !tensor.EqualShapes(as[1:], bs[1:]) {
		panic(fmt.Sprintf("autodiff: ConcatRows: shapes %v and %v", as, bs))
	}
	s := tp.ints.get(len(as))
	copy(s, as)
	s[0] = as[0] + bs[0]
	y := tp.out(s, a, b, nil)
	na := len(a.Value.Data)
	copy(y.Value.Data, a.Value.Data)
	copy(y.Value.Data[na:], b.Value.Data)
	tp.record(opConcatRows, y, a, b, nil)
	return y
}

// FillDiagonal returns a copy of x [N, M] with the entries (i, i) set to v,
// which may be ±Inf (math.Inf(-1) masks self-similarities before a softmax).
// The overwritten entries pass no gradient to x.
func (tp *Tape) FillDiagonal(x *Var, v float64) *Var {
	rows, cols := matDims("FillDiagonal", "x", x)
	y := tp.out(x.Value.Shape, x, nil, nil)
	copy(y.Value.Data, x.Value.Data)
	fv := float32(v)
	for i := 0; i < min(rows, cols); i++ {
		y.Value.Data[i*cols+i] = fv
	}
	tp.record(opFillDiagonal, y, x, nil, nil)
	return y
}

// NegInf is -Inf as a float64, for FillDiagonal(x, autodiff.NegInf).
var NegInf = math.Inf(-1)

func (tp *Tape) backwardShape(nd *node) {
	g := nd.out.Grad.Data
	a, b := nd.a, nd.b
	switch nd.op {
	case opConcatRows:
		na := len(a.Value.Data)
		if a.requires {
			ga, overwrite := tp.gradOf(a)
			tp.ew(ewGScale, ga, g[:na], nil, 1, !overwrite)
		}
		if b.requires {
			gb, overwrite := tp.gradOf(b)
			tp.ew(ewGScale, gb, g[na:], nil, 1, !overwrite)
		}
	case opFillDiagonal:
		if !a.requires {
			return
		}
		rows, cols := a.Value.Shape[0], a.Value.Shape[1]
		ga, overwrite := tp.gradOf(a)
		if overwrite {
			copy(ga, g)
			for i := 0; i < min(rows, cols); i++ {
				ga[i*cols+i] = 0
			}
			return
		}
		for i := 0; i < rows; i++ {
			src, dst := g[i*cols:i*cols+cols], ga[i*cols:i*cols+cols]
			for j, v := range src {
				if j != i {
					dst[j] += v
				}
			}
		}
	}
}
