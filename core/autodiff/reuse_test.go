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
