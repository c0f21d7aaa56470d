package autodiff

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/sslrun/sslrun/core/tensor"
)

// reuseNet is a small two-view conv net with the shapes of ops a training
// step uses: conv, fused BN+ReLU, pooling, views (Reshape, SliceRows),
// ConcatRows, Linear, normalization, cosine and cross-entropy losses, and a
// Leaf input whose gradient must survive.
type reuseNet struct {
	w1, w2, fc, fb, g1, b1 *Var
	st                     *BNState
	x1, x2                 []float32
	xs                     []int
}

func newReuseNet() *reuseNet {
	rng := rand.New(rand.NewPCG(41, 42))
	n := &reuseNet{
		w1: NewParam("w1", randT(rng, 6, 3, 3, 3)),
		w2: NewParam("w2", randT(rng, 8, 6, 3, 3)),
		fc: NewParam("fc", randT(rng, 5, 8)),
		fb: NewParam("fb", randT(rng, 5)),
		g1: NewParam("g1", randT(rng, 6)),
		b1: NewParam("b1", randT(rng, 6)),
		st: NewBNState(6),
		xs: []int{4, 3, 8, 8},
	}
	n.x1 = randT(rng, n.xs...).Data
	n.x2 = randT(rng, n.xs...).Data
	return n
}

func (n *reuseNet) params() []*Var { return []*Var{n.w1, n.w2, n.fc, n.fb, n.g1, n.b1} }

// step records the net on both views and backpropagates; it returns the
// loss, the Leaf view and an intermediate.
func (n *reuseNet) step(t testing.TB, tp *Tape, x1, x2 *Var) (loss, mid *Var) {
	enc := func(x *Var) *Var {
		h := tp.BatchNormReLU(tp.Conv2d(x, n.w1, 1, 1, 1, 1), n.g1, n.b1, n.st, true)
		h = tp.MaxPool2d(h, 2, 2, 0)
		h = tp.ReLU(tp.Conv2d(h, n.w2, 2, 2, 1, 1))
		h = tp.GlobalAvgPool2d(h)
		return tp.Linear(h, n.fc, n.fb)
	}
	z1, z2 := enc(x1), enc(x2)
	mid = z1
	z := tp.ConcatRows(tp.L2Normalize(z1), tp.L2Normalize(z2))
	a, b := tp.SliceRows(z, 0, 4), tp.SliceRows(z, 4, 8)
	cos := tp.Mean(tp.CosineSimilarity(a, b))
	ce := tp.CrossEntropy(tp.Reshape(z, 8, 5), []int{0, 1, 2, 3, 4, 0, 1, 2})
	loss = tp.Sub(ce, cos)
	if err := tp.Backward(loss); err != nil {
		t.Fatal(err)
	}
	return loss, mid
}

// TestReuseGradsBitIdentical checks that recycling gradient buffers gives
// the parameters' and Leaf gradients of the default mode bit for bit, over
// repeated steps on one tape, that it clears the intermediates' Grads, and
// that its steady-state steps allocate nothing.
func TestReuseGradsBitIdentical(t *testing.T) {
	run := func(reuse bool) (grads [][]float32, tp *Tape, net *reuseNet, mid *Var) {
		net = newReuseNet()
		tp = NewTape()
		tp.SetReuseGrads(reuse)
		for it := 0; it < 3; it++ {
			tp.Reset()
			for _, p := range net.params() {
				clear(p.Grad.Data)
			}
			x1 := tp.Leaf(tensorFrom(net.xs, net.x1))
			x2 := tp.Input(tensorFrom(net.xs, net.x2))
			_, mid = net.step(t, tp, x1, x2)
			for _, p := range net.params() {
				grads = append(grads, append([]float32(nil), p.Grad.Data...))
			}
			grads = append(grads, append([]float32(nil), x1.Grad.Data...))
		}
		return grads, tp, net, mid
	}
	want, _, _, mid := run(false)
	if mid.Grad == nil {
		t.Fatal("default mode: an intermediate has no gradient after Backward")
	}
	got, tp, net, mid := run(true)
	if mid.Grad != nil {
		t.Error("reuse mode: an intermediate kept its Grad after Backward")
	}
	for i := range want {
		for j := range want[i] {
			if math.Float32bits(want[i][j]) != math.Float32bits(got[i][j]) {
				t.Fatalf("gradient %d[%d] = %v with reuse, %v without", i, j, got[i][j], want[i][j])
			}
		}
	}
	x1t, x2t := tensorFrom(net.xs, net.x1), tensorFrom(net.xs, net.x2)
	allocs := testing.AllocsPerRun(5, func() {
		tp.Reset()
		net.step(t, tp, tp.Leaf(x1t), tp.Input(x2t))
	})
	if allocs != 0 {
		t.Errorf("a warm step with reused gradients allocates %v times", allocs)
	}
	// The pool must hold less than one buffer per op.
	var pooled, perOp int
	for _, b := range tp.grads.all {
		pooled += cap(b)
	}
	for i := range tp.nodes {
		perOp += tp.nodes[i].out.Len()
	}
	if pooled >= perOp {
		t.Errorf("reuse mode holds %d gradient floats, no fewer than one per op (%d)", pooled, perOp)
	}
}

func tensorFrom(shape []int, data []float32) *tensor.T {
	return &tensor.T{Data: data, Shape: shape}
}

// TestReuseGradsPlan checks the size of the gradient pool on two views of
// a conv-BN-ReLU chain whose feature maps shrink layer by layer (the shape
// of the W2 ConvNet), with a BN head: the batch norm's backward writes its input's
// gradient over its output's (passGrad), and the plan reuses one view's
// buffers for the other's, so the pool holds the two largest gradients
// alive at once, the first two layers', plus small ones; the gradients are
// those of the default mode bit for bit, and a warm step allocates
// nothing.
func TestReuseGradsPlan(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	chans := []int{3, 4, 6, 8}
	var ws, gs, bs []*Var
	var sts []*BNState
	for i := 1; i < len(chans); i++ {
		ws = append(ws, NewParam("w", randT(rng, chans[i], chans[i-1], 3, 3)))
		gs = append(gs, NewParam("g", randT(rng, chans[i])))
		bs = append(bs, NewParam("b", randT(rng, chans[i])))
		sts = append(sts, NewBNState(chans[i]))
	}
	fc := NewParam("fc", randT(rng, 8, 8))
	fg, fb := NewParam("fg", randT(rng, 8)), NewParam("fb", randT(rng, 8))
	fst, hst := NewBNState(8), NewBNState(8)
	xs := []int{4, 3, 16, 16}
	x1, x2 := randT(rng, xs...), randT(rng, xs...)
	params := append(append(append([]*Var(nil), ws...), gs...), bs...)
	params = append(params, fc, fg, fb)
	step := func(tp *Tape) {
		tp.Reset()
		for _, p := range params {
			clear(p.Grad.Data)
		}
		var loss *Var
		for _, x := range []*tensor.T{x1, x2} {
			h := tp.Input(x)
			for i := range ws {
				h = tp.BatchNormReLU(tp.Conv2d(h, ws[i], 2, 2, 1, 1), gs[i], bs[i], sts[i], true)
			}
			// A head on [N, C] rows: the batch norms' row-wise kernels
			// (fused with a ReLU and plain) also take the in-place path.
			h = tp.BatchNormReLU(tp.Linear(tp.GlobalAvgPool2d(h), fc, nil), fg, fb, fst, true)
			h = tp.BatchNorm(h, nil, nil, hst, true)
			s := tp.Sum(tp.Mul(h, h))
			if loss == nil {
				loss = s
			} else {
				loss = tp.Add(loss, s)
			}
		}
		if err := tp.Backward(loss); err != nil {
			t.Fatal(err)
		}
	}
	run := func(reuse bool) ([][]float32, *Tape) {
		tp := NewTape()
		tp.SetReuseGrads(reuse)
		var grads [][]float32
		for it := 0; it < 2; it++ {
			step(tp)
			for _, p := range params {
				grads = append(grads, append([]float32(nil), p.Grad.Data...))
			}
		}
		return grads, tp
	}
	want, _ := run(false)
	got, tp := run(true)
	for i := range want {
		for j := range want[i] {
			if math.Float32bits(want[i][j]) != math.Float32bits(got[i][j]) {
				t.Fatalf("gradient %d[%d] = %v with reuse, %v without", i, j, got[i][j], want[i][j])
			}
		}
	}
	var sizes []int
	pooled := 0
	for _, b := range tp.grads.all {
		sizes = append(sizes, cap(b))
		pooled += cap(b)
	}
	// Layer 1 outputs 4x4x8x8 = 1024 floats, layer 2 4x6x4x4 = 384, the
	// head 4x8 = 32. A pool sized by replaying best-fit choices held
	// three buffers of layer 1's size.
	if most := 1024 + 384 + 32 + 1; pooled > most {
		t.Errorf("gradient pool holds %d floats %v, want at most %d", pooled, sizes, most)
	}
	if allocs := testing.AllocsPerRun(3, func() { step(tp) }); allocs != 0 {
		t.Errorf("a warm step with reused gradients allocates %v times", allocs)
	}
}

// BenchmarkPlanGrads times the gradient plan Backward makes with reuse on,
// for a tape of the size of a two-view ResNet-18 step (~500 ops).
func BenchmarkPlanGrads(b *testing.B) {
	rng := rand.New(rand.NewPCG(9, 10))
	w := NewParam("w", randT(rng, 2, 2, 3, 3))
	g, be := NewParam("g", randT(rng, 2)), NewParam("b", randT(rng, 2))
	st := NewBNState(2)
	x := randT(rng, 2, 2, 4, 4)
	tp := NewTape()
	tp.SetReuseGrads(true)
	var loss *Var
	for v := 0; v < 2; v++ {
		h := tp.Input(x)
		for i := 0; i < 40; i++ {
			r := h
			h = tp.BatchNormReLU(tp.Conv2d(h, w, 1, 1, 1, 1), g, be, st, true)
			h = tp.BatchNorm(tp.Conv2d(h, w, 1, 1, 1, 1), g, be, st, true)
			h = tp.ReLU(tp.Add(h, r))
		}
		s := tp.Sum(h)
		if loss == nil {
			loss = s
		} else {
			loss = tp.Add(loss, s)
		}
	}
	b.ReportMetric(float64(tp.Len()), "ops")
	b.ReportAllocs()
	for b.Loop() {
		tp.planGrads(loss)
	}
}
