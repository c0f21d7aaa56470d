package autodiff

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/sslrun/sslrun/core/parallel"
	"github.com/sslrun/sslrun/core/tensor"
	"github.com/sslrun/sslrun/internal/testenv"
)

// testLayer is Linear (-> BatchNorm) (-> ReLU) built from raw tape ops, the
// way core/nn composes them.
type testLayer struct {
	w, b        *Var
	gamma, beta *Var
	st          *BNState
	bn, relu    bool
}

type testMLP struct{ layers []testLayer }

// spec: dims, and per layer whether it has BN, BN affine, ReLU and a bias.
type layerSpec struct {
	in, out                int
	bn, affine, relu, bias bool
}

func newTestMLP(rng *rand.Rand, specs []layerSpec) *testMLP {
	m := &testMLP{}
	for i, s := range specs {
		w := randT(rng, s.out, s.in)
		sc := float32(1 / math.Sqrt(float64(s.in)))
		for j := range w.Data {
			w.Data[j] *= sc
		}
		l := testLayer{w: NewParam(fmt.Sprintf("l%d.w", i), w), bn: s.bn, relu: s.relu}
		if s.bias {
			l.b = NewParam(fmt.Sprintf("l%d.b", i), tensor.New(s.out))
		}
		if s.bn {
			l.st = NewBNState(s.out)
			if s.affine {
				g := tensor.New(s.out)
				g.Fill(1)
				l.gamma = NewParam(fmt.Sprintf("l%d.gamma", i), g)
				l.beta = NewParam(fmt.Sprintf("l%d.beta", i), tensor.New(s.out))
			}
		}
		m.layers = append(m.layers, l)
	}
	return m
}

func (m *testMLP) forward(tp *Tape, x *Var) *Var {
	for i := range m.layers {
		l := &m.layers[i]
		x = tp.Linear(x, l.w, l.b)
		if l.bn {
			x = tp.BatchNorm(x, l.gamma, l.beta, l.st, true)
		}
		if l.relu {
			x = tp.ReLU(x)
		}
	}
	return x
}

func (m *testMLP) params() []*Var {
	var ps []*Var
	for _, l := range m.layers {
		for _, p := range []*Var{l.w, l.b, l.gamma, l.beta} {
			if p != nil {
				ps = append(ps, p)
			}
		}
	}
	return ps
}

// simSiamNet is the W1 network of torch_baseline.py scaled by its
// arguments: backbone in->h->h (BN, ReLU), projector h->p->p (last BN no
// affine), predictor p->q->p (BN, ReLU, then Linear with bias).
type simSiamNet struct {
	f, h   *testMLP
	params []*Var
	x1, x2 *tensor.T
}

func newSimSiamNet(seed uint64, batch, in, hid, proj, pred int) *simSiamNet {
	rng := rand.New(rand.NewPCG(seed, 11))
	f := newTestMLP(rng, []layerSpec{
		{in, hid, true, true, true, false},
		{hid, hid, true, true, true, false},
		{hid, proj, true, true, true, false},
		{proj, proj, true, false, false, false},
	})
	h := newTestMLP(rng, []layerSpec{
		{proj, pred, true, true, true, false},
		{pred, proj, false, false, false, true},
	})
	return &simSiamNet{f: f, h: h, params: append(f.params(), h.params()...),
		x1: randT(rng, batch, in), x2: randT(rng, batch, in)}
}

// step runs one SimSiam forward + backward on the tape.
func (n *simSiamNet) step(tp *Tape) (*Var, error) {
	tp.Reset()
	z1 := n.f.forward(tp, tp.Input(n.x1))
	z2 := n.f.forward(tp, tp.Input(n.x2))
	p1 := n.h.forward(tp, z1)
	p2 := n.h.forward(tp, z2)
	c1 := tp.Mean(tp.CosineSimilarity(p1, tp.Detach(z2)))
	c2 := tp.Mean(tp.CosineSimilarity(p2, tp.Detach(z1)))
	loss := tp.Scale(tp.Add(c1, c2), -0.5)
	return loss, tp.Backward(loss)
}

func (n *simSiamNet) zeroGrad() {
	for _, p := range n.params {
		p.Grad.Zero()
	}
}

func TestZeroAllocsSteadyState(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race")
	}
	cases := []struct {
		name                       string
		batch, in, hid, proj, pred int
	}{
		{"small", 16, 20, 32, 24, 8},
		{"parallel", 256, 64, 256, 128, 32}, // large enough for the parallel paths
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			net := newSimSiamNet(1, c.batch, c.in, c.hid, c.proj, c.pred)
			tp := NewTape()
			for i := 0; i < 3; i++ { // warm-up: arena, slabs, node slice grow
				if _, err := net.step(tp); err != nil {
					t.Fatal(err)
				}
			}
			allocs := testing.AllocsPerRun(20, func() {
				if _, err := net.step(tp); err != nil {
					t.Fatal(err)
				}
				net.zeroGrad()
			})
			if allocs != 0 {
				t.Errorf("steady-state step allocates %.1f times, want 0", allocs)
			}
		})
	}
}

// TestZeroAllocsConvNet covers the core/kernel wrappers: conv (stride 1
// and 2) -> BN2d -> ReLU -> max pool -> conv -> avg pool -> global average
// pool -> cosine loss against a detached second view.
func TestZeroAllocsConvNet(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race")
	}
	rng := rand.New(rand.NewPCG(8, 8))
	x1, x2 := randT(rng, 4, 3, 12, 12), randT(rng, 4, 3, 12, 12)
	w1 := NewParam("w1", randT(rng, 8, 3, 3, 3))
	w2 := NewParam("w2", randT(rng, 16, 8, 3, 3))
	gamma, beta := NewParam("g", randT(rng, 8)), NewParam("b", randT(rng, 8))
	bias := NewParam("bias", randT(rng, 16))
	st := NewBNState(8)
	tp := NewTape()
	f := func(x *Var) *Var {
		h := tp.Conv2d(x, w1, 1, 1, 1, 1)
		h = tp.ReLU(tp.BatchNorm(h, gamma, beta, st, true))
		h = tp.MaxPool2d(h, 2, 2, 0)
		h = tp.AddBias(tp.Conv2d(h, w2, 2, 2, 1, 1), bias)
		h = tp.AvgPool2d(h, 3, 1, 1)
		return tp.GlobalAvgPool2d(h)
	}
	step := func() {
		tp.Reset()
		z1, z2 := f(tp.Input(x1)), f(tp.Input(x2))
		loss := tp.Neg(tp.Mean(tp.CosineSimilarity(z1, tp.Detach(z2))))
		if err := tp.Backward(loss); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 3; i++ {
		step()
	}
	if a := testing.AllocsPerRun(20, step); a != 0 {
		t.Errorf("conv step allocates %.1f times, want 0", a)
	}
}

func TestNoGradEvalAllocsAndRecordsNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race")
	}
	net := newSimSiamNet(2, 8, 10, 16, 12, 4)
	tp := NewTape()
	run := func() {
		tp.Reset()
		prev := tp.SetGrad(false)
		z := net.f.forward(tp, tp.Input(net.x1))
		_ = tp.L2Normalize(z)
		tp.SetGrad(prev)
	}
	run()
	if tp.Len() != 0 {
		t.Fatalf("no-grad forward recorded %d ops", tp.Len())
	}
	if a := testing.AllocsPerRun(10, run); a != 0 {
		t.Errorf("no-grad forward allocates %.1f times", a)
	}
}

// TestSimSiamLearns is an end-to-end sanity check: plain SGD on the tape's
// gradients lowers the SimSiam loss on a fixed pair of views.
func TestSimSiamLearns(t *testing.T) {
	net := newSimSiamNet(3, 32, 16, 32, 16, 8)
	tp := NewTape()
	var first, last float32
	for it := 0; it < 30; it++ {
		net.zeroGrad()
		loss, err := net.step(tp)
		if err != nil {
			t.Fatal(err)
		}
		if it == 0 {
			first = loss.Item()
		}
		last = loss.Item()
		for _, p := range net.params {
			for i, g := range p.Grad.Data {
				p.Value.Data[i] -= 0.1 * g
			}
		}
	}
	if !(last < first-0.05) {
		t.Fatalf("loss did not decrease: %.4f -> %.4f", first, last)
	}
	t.Logf("SimSiam loss %.4f -> %.4f", first, last)
}

// BenchmarkW1SimSiam is the W1 "mlp-mnist" SimSiam step of
// torch_baseline.py without the optimizer: batch 512 per view, two views,
// backbone 784->1024->1024, projector 1024->512->512 (last BN no affine),
// predictor 512->128->512, forward + backward through the tape.
func BenchmarkW1SimSiam(b *testing.B) {
	for _, threads := range []int{1, 2} {
		b.Run(fmt.Sprintf("threads=%d", threads), func(b *testing.B) {
			prev := parallel.SetThreads(threads)
			defer parallel.SetThreads(prev)
			net := newSimSiamNet(1, 512, 784, 1024, 512, 128)
			tp := NewTape()
			for i := 0; i < 2; i++ {
				if _, err := net.step(tp); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			start, cpu0 := time.Now(), testenv.ProcessCPU()
			for i := 0; i < b.N; i++ {
				net.zeroGrad()
				if _, err := net.step(tp); err != nil {
					b.Fatal(err)
				}
			}
			el, cpu := time.Since(start), testenv.ProcessCPU()-cpu0
			b.ReportMetric(el.Seconds()*1e3/float64(b.N), "ms/step")
			b.ReportMetric(cpu.Seconds()*1e3/float64(b.N), "cpu-ms/step")
			b.ReportMetric(512*float64(b.N)/el.Seconds(), "img/s")
		})
	}
}

// BenchmarkW1GradZeroing compares the tape's first-writer-overwrites
// gradient buffers with zeroing every intermediate gradient buffer when it
// is taken from the arena (one thread, W1 SimSiam step).
func BenchmarkW1GradZeroing(b *testing.B) {
	for _, zero := range []bool{false, true} {
		b.Run(fmt.Sprintf("clear=%v", zero), func(b *testing.B) {
			prev := parallel.SetThreads(1)
			defer parallel.SetThreads(prev)
			clearGrads = zero
			defer func() { clearGrads = false }()
			net := newSimSiamNet(1, 512, 784, 1024, 512, 128)
			tp := NewTape()
			for i := 0; i < 2; i++ {
				if _, err := net.step(tp); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			cpu0 := testenv.ProcessCPU()
			for i := 0; i < b.N; i++ {
				net.zeroGrad()
				if _, err := net.step(tp); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric((testenv.ProcessCPU()-cpu0).Seconds()*1e3/float64(b.N), "cpu-ms/step")
		})
	}
}

// BenchmarkNTXentW1 is the SimCLR loss of the W1 workload on its own:
// z1, z2 [512, 512] -> normalize(cat) -> 1024x1024 similarities / 0.5 ->
// masked diagonal -> cross-entropy, forward and backward.
func BenchmarkNTXentW1(b *testing.B) {
	const n, d = 512, 512
	rng := rand.New(rand.NewPCG(4, 4))
	z1, z2 := NewParam("z1", randT(rng, n, d)), NewParam("z2", randT(rng, n, d))
	target := make([]int, 2*n)
	for i := range target {
		target[i] = (i + n) % (2 * n)
	}
	tp := NewTape()
	step := func() {
		tp.Reset()
		z := tp.L2Normalize(tp.ConcatRows(z1, z2))
		s := tp.FillDiagonal(tp.Scale(tp.MatMul(z, z, false, true), 2), NegInf)
		if err := tp.Backward(tp.CrossEntropy(s, target)); err != nil {
			b.Fatal(err)
		}
	}
	step()
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := testenv.ProcessCPU()
	for i := 0; i < b.N; i++ {
		step()
	}
	b.ReportMetric((testenv.ProcessCPU()-cpu0).Seconds()*1e3/float64(b.N), "cpu-ms/op")
}
