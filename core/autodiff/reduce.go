package autodiff

import (
	"fmt"
)

// scalarShape is the shape of the 1-element results of Sum and Mean. It is
// [1] rather than PyTorch's 0-d [] so that Rows/Dim(0) work on it.
var scalarShape = []int{1}

// Sum returns the sum of all elements of x as a 1-element Var of shape [1].
// The sum is accumulated in float64.
func (tp *Tape) Sum(x *Var) *Var {
	y := tp.out(scalarShape, x, nil, nil)
	y.Value.Data[0] = float32(sum64(x.Value.Data))
	if n := tp.record(opSum, y, x, nil, nil); n != nil {
		n.f0 = 1
	}
	return y
}

// Mean returns the mean of all elements of x as a 1-element Var of shape [1].
func (tp *Tape) Mean(x *Var) *Var {
	y := tp.out(scalarShape, x, nil, nil)
	inv := 1 / float64(len(x.Value.Data))
	y.Value.Data[0] = float32(sum64(x.Value.Data) * inv)
	if n := tp.record(opMean, y, x, nil, nil); n != nil {
		n.f0 = float32(inv)
	}
	return y
}

func sum64(x []float32) float64 {
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(x); i += 4 {
		s0 += float64(x[i])
		s1 += float64(x[i+1])
		s2 += float64(x[i+2])
		s3 += float64(x[i+3])
	}
	for ; i < len(x); i++ {
		s0 += float64(x[i])
	}
	return (s0 + s1) + (s2 + s3)
}

// rowsOf splits x's shape into its first dimension and the product of the
// rest, panicking for 0-d Vars.
func rowsOf(op string, x *Var) (n, d int) {
	if len(x.Value.Shape) < 1 {
		panic(fmt.Sprintf("autodiff: %s needs at least 1 dimension, have %v", op, x.Value.Shape))
	}
	n = x.Value.Shape[0]
	if n == 0 {
		return 0, 0
	}
	return n, len(x.Value.Data) / n
}

// SumRows returns the sum over the first dimension: x [N, ...] -> [...].
func (tp *Tape) SumRows(x *Var) *Var { return tp.reduceRows(opSumRows, x, 1) }

// MeanRows returns the mean over the first dimension (the batch mean, e.g.
// the centre vector o of the paper): x [N, ...] -> [...].
func (tp *Tape) MeanRows(x *Var) *Var {
	n, _ := rowsOf("MeanRows", x)
	return tp.reduceRows(opMeanRows, x, 1/float32(n))
}

func (tp *Tape) reduceRows(op opKind, x *Var, s float32) *Var {
	n, d := rowsOf("SumRows/MeanRows", x)
	y := tp.out(x.Value.Shape[1:], x, nil, nil)
	sumRowsInto(y.Value.Data, x.Value.Data, n, d, s, false)
	if nd := tp.record(op, y, x, nil, nil); nd != nil {
		nd.f0 = s
	}
	return y
}

// sumRowsInto sets (or, with acc, adds to) dst[j] s*sum_i x[i*d+j].
func sumRowsInto(dst, x []float32, n, d int, s float32, acc bool) {
	if !acc {
		clear(dst)
	}
	if s == 1 || !acc {
		for i := 0; i < n; i++ {
			row := x[i*d : i*d+d]
			for j, v := range row {
				dst[j] += v
			}
		}
		if s != 1 {
			for j := range dst {
				dst[j] *= s
			}
		}
		return
	}
	for i := 0; i < n; i++ {
		row := x[i*d : i*d+d]
		for j, v := range row {
			dst[j] += s * v
		}
	}
}

// broadcastRowsInto sets (or adds to) every row of dst [n, d] s*v.
func broadcastRowsInto(dst, v []float32, n, d int, s float32, acc bool) {
	for i := 0; i < n; i++ {
		row := dst[i*d : i*d+d]
		switch {
		case acc:
			for j := range row {
				row[j] += s * v[j]
			}
		case s == 1:
			copy(row, v)
		default:
			for j := range row {
				row[j] = s * v[j]
			}
		}
	}
}

// BroadcastRows repeats v n times along a new first dimension: v [...] ->
// [n, ...], e.g. to subtract the centre vector o from every row.
func (tp *Tape) BroadcastRows(v *Var, n int) *Var {
	shape := tp.ints.get(len(v.Value.Shape) + 1)
	shape[0] = n
	copy(shape[1:], v.Value.Shape)
	y := tp.out(shape, v, nil, nil)
	broadcastRowsInto(y.Value.Data, v.Value.Data, n, len(v.Value.Data), 1, false)
	tp.record(opBroadcastRows, y, v, nil, nil)
	return y
}

// RowDot returns the dot product of matching rows: a, b [N, D] -> [N].
func (tp *Tape) RowDot(a, b *Var) *Var {
	sameShape("RowDot", a, b)
	n, d := rowsOf("RowDot", a)
	y := tp.out(a.Value.Shape[:1], a, b, nil)
	av, bv := a.Value.Data, b.Value.Data
	for i := 0; i < n; i++ {
		y.Value.Data[i] = dot(av[i*d:i*d+d], bv[i*d:i*d+d])
	}
	tp.record(opRowDot, y, a, b, nil)
	return y
}

// dot is a float32 dot product with four partial sums (better rounding and
// more instruction-level parallelism than one running sum).
func dot(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// AddBias adds a per-feature bias: x [N, D] + b [D], or a per-channel bias:
// x [N, C, ...] + b [C] (each channel's spatial block gets b[c]).
func (tp *Tape) AddBias(x, b *Var) *Var {
	n, c, s := biasDims("AddBias", x, b)
	y := tp.out(x.Value.Shape, x, b, nil)
	xv, yv, bv := x.Value.Data, y.Value.Data, b.Value.Data
	for i := 0; i < n; i++ {
		for ch := 0; ch < c; ch++ {
			off := (i*c + ch) * s
			bb := bv[ch]
			src, dst := xv[off:off+s], yv[off:off+s]
			for j, v := range src {
				dst[j] = v + bb
			}
		}
	}
	tp.record(opAddBias, y, x, b, nil)
	return y
}

// biasDims checks AddBias's shapes and returns batch, channels and the
// spatial size per channel.
func biasDims(op string, x, b *Var) (n, c, s int) {
	xs := x.Value.Shape
	if len(xs) < 2 || len(b.Value.Shape) != 1 || b.Value.Shape[0] != xs[1] {
		panic(fmt.Sprintf("autodiff: %s: bias %v does not match x %v (want [%s])", op, b.Value.Shape, xs, "x.Shape[1]"))
	}
	n, c = xs[0], xs[1]
	if n*c == 0 {
		return n, c, 0
	}
	return n, c, len(x.Value.Data) / (n * c)
}

func (tp *Tape) backwardReduce(n *node) {
	g := n.out.Grad.Data
	a, b := n.a, n.b
	switch n.op {
	case opSum, opMean:
		if !a.requires {
			return
		}
		ga, overwrite := tp.gradOf(a)
		v := g[0] * n.f0
		if overwrite {
			for i := range ga {
				ga[i] = v
			}
		} else {
			for i := range ga {
				ga[i] += v
			}
		}
	case opSumRows, opMeanRows:
		if !a.requires {
			return
		}
		rows, d := rowsOf("SumRows", a)
		ga, overwrite := tp.gradOf(a)
		broadcastRowsInto(ga, g, rows, d, n.f0, !overwrite)
	case opBroadcastRows:
		if !a.requires {
			return
		}
		rows, d := rowsOf("BroadcastRows", n.out)
		ga, overwrite := tp.gradOf(a)
		sumRowsInto(ga, g, rows, d, 1, !overwrite)
	case opRowDot:
		rows, d := rowsOf("RowDot", a)
		for k, v := range [2]*Var{a, b} {
			if !v.requires {
				continue
			}
			other := b.Value.Data
			if k == 1 {
				other = a.Value.Data
			}
			gv, overwrite := tp.gradOf(v)
			for i := 0; i < rows; i++ {
				gi := g[i]
				src, dst := other[i*d:i*d+d], gv[i*d:i*d+d]
				if overwrite {
					for j, o := range src {
						dst[j] = gi * o
					}
				} else {
					for j, o := range src {
						dst[j] += gi * o
					}
				}
			}
		}
	case opAddBias:
		if a.requires {
			ga, overwrite := tp.gradOf(a)
			tp.ew(ewGScale, ga, g, nil, 1, !overwrite)
		}
		if b.requires {
			rows, c, s := biasDims("AddBias", a, b)
			gb, overwrite := tp.gradOf(b)
			if s == 1 {
				sumRowsInto(gb, g, rows, c, 1, !overwrite)
				return
			}
			if overwrite {
				clear(gb)
			}
			for i := 0; i < rows; i++ {
				for ch := 0; ch < c; ch++ {
					off := (i*c + ch) * s
					gb[ch] += float32(sum64(g[off : off+s]))
				}
			}
		}
	}
}
