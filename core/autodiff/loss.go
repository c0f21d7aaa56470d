package autodiff

import (
	"fmt"
	"math"

	"github.com/sslrun/sslrun/core/parallel"
)

// Default epsilons of the PyTorch functions these ops reproduce.
const (
	// NormalizeEps is F.normalize's default eps.
	NormalizeEps = 1e-12
	// CosineEps is F.cosine_similarity's default eps.
	CosineEps = 1e-8
)

// rowGrain is the minimum number of elements per parallel chunk of a row-wise
// op.
const rowGrain = 1 << 14

type rowKind uint8

const (
	rtNormFwd rowKind = iota
	rtNormBwd
	rtCosFwd
	rtCosBwd
	rtLSMFwd
	rtLSMBwd
	rtCEFwd
	rtCEBwd
)

// rowTask runs a row-wise op over rows [lo, hi) of [N, d] matrices; a Tape
// owns one so that core/parallel needs no allocation.
type rowTask struct {
	kind       rowKind
	d          int
	x, y, a, b []float32 // inputs / outputs of the forward pass
	g, ga, gb  []float32 // output gradient, operand gradients (nil: not wanted)
	accA, accB bool      // add into ga / gb instead of storing
	s0, s1     []float32 // saved per-row state
	eps, scale float32
	targets    []int
}

func (tp *Tape) runRows(rows int) {
	t := &tp.row
	grain := max(1, rowGrain/max(1, t.d))
	if rows < 2*grain {
		t.Do(0, rows)
	} else {
		parallel.Run(rows, grain, t)
	}
	*t = rowTask{}
}

func (t *rowTask) Do(lo, hi int) {
	d := t.d
	for i := lo; i < hi; i++ {
		r := i * d
		switch t.kind {
		case rtNormFwd:
			x, y := t.x[r:r+d], t.y[r:r+d]
			n := float32(math.Sqrt(float64(dot(x, x))))
			t.s0[i] = n
			inv := 1 / max(n, t.eps)
			for j, v := range x {
				y[j] = v * inv
			}
		case rtNormBwd:
			y, g, gx := t.y[r:r+d], t.g[r:r+d], t.ga[r:r+d]
			n := t.s0[i]
			c := max(n, t.eps)
			inv := 1 / c
			var proj float32
			if n >= t.eps { // clamp_min passes gradient only where n >= eps
				proj = dot(y, g)
			}
			if t.accA {
				for j := range gx {
					gx[j] += (g[j] - y[j]*proj) * inv
				}
			} else {
				for j := range gx {
					gx[j] = (g[j] - y[j]*proj) * inv
				}
			}
		case rtCosFwd:
			a, b := t.a[r:r+d], t.b[r:r+d]
			c1 := max(float32(math.Sqrt(float64(dot(a, a)))), t.eps)
			c2 := max(float32(math.Sqrt(float64(dot(b, b)))), t.eps)
			t.s0[i], t.s1[i] = c1, c2
			t.y[i] = dot(a, b) / c1 / c2
		case rtCosBwd:
			a, b := t.a[r:r+d], t.b[r:r+d]
			c1, c2, cos, g := t.s0[i], t.s1[i], t.y[i], t.g[i]
			// cos = (a/c1)·(b/c2); PyTorch 1.13 lets the gradient flow
			// through the (clamped) norms as if unclamped, which gives
			// d/da = (b/c2 - cos·a/c1)/c1 in all cases.
			if t.ga != nil {
				ga := t.ga[r : r+d]
				p, q := g/(c1*c2), g*cos/(c1*c1)
				if t.accA {
					for j := range ga {
						ga[j] += p*b[j] - q*a[j]
					}
				} else {
					for j := range ga {
						ga[j] = p*b[j] - q*a[j]
					}
				}
			}
			if t.gb != nil {
				gb := t.gb[r : r+d]
				p, q := g/(c1*c2), g*cos/(c2*c2)
				if t.accB {
					for j := range gb {
						gb[j] += p*a[j] - q*b[j]
					}
				} else {
					for j := range gb {
						gb[j] = p*a[j] - q*b[j]
					}
				}
			}
		case rtLSMFwd:
			x, y := t.x[r:r+d], t.y[r:r+d]
			m, s := maxExpSum(x)
			lse := m + float32(math.Log(float64(s)))
			for j, v := range x {
				y[j] = v - lse
			}
		case rtLSMBwd:
			y, g, gx := t.y[r:r+d], t.g[r:r+d], t.ga[r:r+d]
			var sg float32
			for _, v := range g {
				sg += v
			}
			if t.accA {
				for j, v := range y {
					gx[j] += g[j] - expf(v)*sg
				}
			} else {
				for j, v := range y {
					gx[j] = g[j] - expf(v)*sg
				}
			}
		case rtCEFwd:
			x, p := t.x[r:r+d], t.s0[r:r+d]
			m := float32(math.Inf(-1))
			for _, v := range x {
				m = max(m, v)
			}
			var s float32
			for j, v := range x { // one exp per logit: store, then scale
				e := expf(v - m)
				p[j] = e
				s += e
			}
			inv := 1 / s
			for j := range p {
				p[j] *= inv
			}
			tg := t.targets[i]
			t.s1[i] = -(x[tg] - m - float32(math.Log(float64(s))))
		case rtCEBwd:
			p, gx := t.s0[r:r+d], t.ga[r:r+d]
			sc := t.scale
			if t.accA {
				for j, v := range p {
					gx[j] += sc * v
				}
			} else {
				for j, v := range p {
					gx[j] = sc * v
				}
			}
			gx[t.targets[i]] -= sc
		}
	}
}

// maxExpSum returns the row maximum m and sum_j exp(x_j - m). -Inf entries
// contribute exp(-Inf) = 0; a row that is all -Inf gives m = -Inf and a NaN
// downstream, as in PyTorch.
func maxExpSum(x []float32) (m, s float32) {
	m = float32(math.Inf(-1))
	for _, v := range x {
		if v > m {
			m = v
		}
	}
	for _, v := range x {
		s += expf(v - m)
	}
	return m, s
}

func expf(x float32) float32 { return float32(math.Exp(float64(x))) }

func checkMatrix(op string, x *Var) (n, d int) {
	if len(x.Value.Shape) != 2 {
		panic(fmt.Sprintf("autodiff: %s needs a 2-D [N, D] input, have %v", op, x.Value.Shape))
	}
	return x.Value.Shape[0], x.Value.Shape[1]
}

// L2Normalize divides each row of x [N, D] by max(‖row‖₂, 1e-12), matching
// torch.nn.functional.normalize(x, dim=1).
func (tp *Tape) L2Normalize(x *Var) *Var { return tp.L2NormalizeEps(x, NormalizeEps) }

// L2NormalizeEps is L2Normalize with an explicit eps. As in PyTorch, rows
// whose norm is below eps are divided by eps and pass gradient g/eps.
func (tp *Tape) L2NormalizeEps(x *Var, eps float32) *Var {
	n, d := checkMatrix("L2Normalize", x)
	y := tp.out(x.Value.Shape, x, nil, nil)
	norms := tp.scratch(n)
	t := &tp.row
	t.kind, t.d, t.x, t.y, t.s0, t.eps = rtNormFwd, d, x.Value.Data, y.Value.Data, norms, eps
	tp.runRows(n)
	if nd := tp.record(opL2Normalize, y, x, nil, nil); nd != nil {
		nd.s0, nd.f0 = norms, eps
	}
	return y
}

// CosineSimilarity returns the cosine similarity of matching rows, a, b
// [N, D] -> [N], matching torch.nn.functional.cosine_similarity(a, b,
// dim=-1, eps=1e-8) of PyTorch 1.13: (a/max(‖a‖,eps))·(b/max(‖b‖,eps)).
func (tp *Tape) CosineSimilarity(a, b *Var) *Var { return tp.CosineSimilarityEps(a, b, CosineEps) }

// CosineSimilarityEps is CosineSimilarity with an explicit eps.
func (tp *Tape) CosineSimilarityEps(a, b *Var, eps float32) *Var {
	sameShape("CosineSimilarity", a, b)
	n, d := checkMatrix("CosineSimilarity", a)
	y := tp.out(a.Value.Shape[:1], a, b, nil)
	c1, c2 := tp.scratch(n), tp.scratch(n)
	t := &tp.row
	t.kind, t.d, t.a, t.b, t.y, t.s0, t.s1, t.eps = rtCosFwd, d, a.Value.Data, b.Value.Data, y.Value.Data, c1, c2, eps
	tp.runRows(n)
	if nd := tp.record(opCosine, y, a, b, nil); nd != nil {
		nd.s0, nd.s1 = c1, c2
	}
	return y
}

// LogSoftmax returns the log-softmax of each row of x [N, C]. -Inf entries
// (masked logits) give -Inf outputs and receive zero gradient through the
// softmax term; a row that is entirely -Inf gives NaN, as in PyTorch.
func (tp *Tape) LogSoftmax(x *Var) *Var {
	n, d := checkMatrix("LogSoftmax", x)
	y := tp.out(x.Value.Shape, x, nil, nil)
	t := &tp.row
	t.kind, t.d, t.x, t.y = rtLSMFwd, d, x.Value.Data, y.Value.Data
	tp.runRows(n)
	tp.record(opLogSoftmax, y, x, nil, nil)
	return y
}

// CrossEntropy returns the mean over rows of -log softmax(logits)[i,
// target[i]] for logits [N, C], like F.cross_entropy(logits, target) with
// the default mean reduction. Logits may contain -Inf (masked entries get
// probability 0 and zero gradient). target is copied. A target outside [0,
// C) is a programmer error and panics.
func (tp *Tape) CrossEntropy(logits *Var, target []int) *Var {
	n, d := checkMatrix("CrossEntropy", logits)
	if len(target) != n {
		panic(fmt.Sprintf("autodiff: CrossEntropy: %d targets for %d rows", len(target), n))
	}
	tg := tp.ints.get(n)
	for i, c := range target {
		if c < 0 || c >= d {
			panic(fmt.Sprintf("autodiff: CrossEntropy: target[%d] = %d outside [0, %d)", i, c, d))
		}
		tg[i] = c
	}
	y := tp.out(scalarShape, logits, nil, nil)
	probs, losses := tp.scratch(n*d), tp.scratch(n)
	t := &tp.row
	t.kind, t.d, t.x, t.s0, t.s1, t.targets = rtCEFwd, d, logits.Value.Data, probs, losses, tg
	tp.runRows(n)
	y.Value.Data[0] = float32(sum64(losses) / float64(n))
	if nd := tp.record(opCrossEntropy, y, logits, nil, nil); nd != nil {
		nd.s0, nd.ints = probs, tg
	}
	return y
}

func (tp *Tape) backwardLoss(nd *node) {
	x := nd.a
	g := nd.out.Grad.Data
	t := &tp.row
	switch nd.op {
	case opL2Normalize:
		if !x.requires {
			return
		}
		n, d := x.Value.Shape[0], x.Value.Shape[1]
		gx, overwrite := tp.gradOf(x)
		t.kind, t.d, t.y, t.g, t.ga, t.accA, t.s0, t.eps = rtNormBwd, d, nd.out.Value.Data, g, gx, !overwrite, nd.s0, nd.f0
		tp.runRows(n)
	case opCosine:
		a, b := nd.a, nd.b
		n, d := a.Value.Shape[0], a.Value.Shape[1]
		t.kind, t.d, t.a, t.b, t.y, t.g, t.s0, t.s1 = rtCosBwd, d, a.Value.Data, b.Value.Data, nd.out.Value.Data, g, nd.s0, nd.s1
		if a.requires {
			var overwrite bool
			t.ga, overwrite = tp.gradOf(a)
			t.accA = !overwrite
		}
		if b.requires {
			var overwrite bool
			t.gb, overwrite = tp.gradOf(b)
			t.accB = !overwrite
		}
		tp.runRows(n)
	case opLogSoftmax:
		if !x.requires {
			return
		}
		n, d := x.Value.Shape[0], x.Value.Shape[1]
		gx, overwrite := tp.gradOf(x)
		t.kind, t.d, t.y, t.g, t.ga, t.accA = rtLSMBwd, d, nd.out.Value.Data, g, gx, !overwrite
		tp.runRows(n)
	case opCrossEntropy:
		if !x.requires {
			return
		}
		n, d := x.Value.Shape[0], x.Value.Shape[1]
		gx, overwrite := tp.gradOf(x)
		t.kind, t.d, t.s0, t.ga, t.accA, t.targets, t.scale = rtCEBwd, d, nd.s0, gx, !overwrite, nd.ints, g[0]/float32(n)
		tp.runRows(n)
	}
}
