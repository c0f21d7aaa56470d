package train

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/sslrun/sslrun/core/autodiff"
	"github.com/sslrun/sslrun/core/nn"
	"github.com/sslrun/sslrun/core/optim"
	"github.com/sslrun/sslrun/internal/tensortest"
	"github.com/sslrun/sslrun/internal/testenv"
)

// cosineLoss is SimSiam's loss written inline: core may not import
// plugins/simsiam, and the step only needs some loss on p and sg(z).
func cosineLoss(tp *autodiff.Tape, o *Outputs) (*autodiff.Var, error) {
	a := tp.Mean(tp.CosineSimilarity(o.P1, tp.Detach(o.Z2)))
	b := tp.Mean(tp.CosineSimilarity(o.P2, tp.Detach(o.Z1)))
	return tp.Scale(tp.Add(a, b), -0.5), nil
}

// byolLoss regresses the target projections.
func byolLoss(tp *autodiff.Tape, o *Outputs) (*autodiff.Var, error) {
	a := tp.Mean(tp.CosineSimilarity(o.P1, tp.Detach(o.T2)))
	b := tp.Mean(tp.CosineSimilarity(o.P2, tp.Detach(o.T1)))
	return tp.AddScalar(tp.Scale(tp.Add(a, b), -2), 4), nil
}

func newStep(tb testing.TB, workload string, loss LossFunc, ema bool, spec *nn.ModelSpec) *Step {
	tb.Helper()
	s, err := nn.Workload(workload)
	if err != nil {
		tb.Fatal(err)
	}
	if spec != nil {
		s = *spec
	}
	m, err := nn.Build(s, rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		tb.Fatal(err)
	}
	base := optim.Defaults(optim.SGD)
	base.Momentum, base.WeightDecay = 0.9, 5e-4
	st, err := NewStep(Config{Model: m, Loss: loss, EMATarget: ema, Optimizer: optim.SGD, Base: base, PredictorLR: 0.05})
	if err != nil {
		tb.Fatal(err)
	}
	return st
}

func smallSpec() *nn.ModelSpec {
	return &nn.ModelSpec{
		Backbone:  nn.BackboneSpec{Arch: "mlp", InDim: 12, Widths: []int{16}},
		Projector: nn.HeadSpec{Dims: []int{16, 8}, LastBN: nn.LastBNPlain},
		Predictor: nn.HeadSpec{Dims: []int{8, 4, 8}, LastBias: true},
	}
}

// TestStepAllocatesNothing runs whole training steps (forward, loss,
// backward, SGD, EMA) and requires zero allocations once warm.
func TestStepAllocatesNothing(t *testing.T) {
	for _, c := range []struct {
		name string
		loss LossFunc
		ema  bool
	}{{"simsiam", cosineLoss, false}, {"byol", byolLoss, true}} {
		t.Run(c.name, func(t *testing.T) {
			st := newStep(t, "mlp-mnist", c.loss, c.ema, smallSpec())
			rng := rand.New(rand.NewPCG(3, 4))
			x1, x2 := tensortest.Randn(rng, 32, 12), tensortest.Randn(rng, 32, 12)
			run := func() {
				if _, err := st.Run(x1, x2, 0.05, 0.99); err != nil {
					t.Fatal(err)
				}
			}
			run()
			run()
			if n := testing.AllocsPerRun(10, run); n != 0 {
				t.Fatalf("a training step allocates %v times", n)
			}
		})
	}
}

// TestStepLearnsAndRejectsNaN checks that steps lower the loss on a fixed
// batch and that a non-finite loss stops before the parameters change.
func TestStepLearnsAndRejectsNaN(t *testing.T) {
	st := newStep(t, "mlp-mnist", cosineLoss, false, smallSpec())
	rng := rand.New(rand.NewPCG(5, 6))
	x1, x2 := tensortest.Randn(rng, 32, 12), tensortest.Randn(rng, 32, 12)
	first, err := st.Run(x1, x2, 0.05, 0)
	if err != nil {
		t.Fatal(err)
	}
	var last float32
	for i := 0; i < 30; i++ {
		if last, err = st.Run(x1, x2, 0.05, 0); err != nil {
			t.Fatal(err)
		}
	}
	if last >= first-0.1 {
		t.Fatalf("loss %v -> %v: not learning", first, last)
	}
	x1.Data[0] = float32(nanValue())
	w := st.Model.Params()[0].Var.Value.Clone()
	_, err = st.Run(x1, x2, 0.05, 0)
	if _, ok := err.(*NonFiniteLossError); !ok {
		t.Fatalf("NaN input: err = %v, want NonFiniteLossError", err)
	}
	for i, v := range st.Model.Params()[0].Var.Value.Data {
		if v != w.Data[i] {
			t.Fatal("parameters changed by a step with a NaN loss")
		}
	}
}

func nanValue() float64 { z := 0.0; return z / z }

// BenchmarkStep times whole SimSiam/BYOL training steps of the benchmark
// workloads (../shared/bench W1-W3: two views, forward, loss, backward, SGD
// with momentum and weight decay, EMA for BYOL) and reports allocations,
// which must be 0 once warm, and the process's CPU seconds per step
// (cpu-s/op: all threads, waiting ones included), which on a shared machine
// varies much less than the wall time.
func BenchmarkStep(b *testing.B) {
	for _, c := range []struct {
		name, workload string
		batch          int
		in             []int
		loss           LossFunc
		ema            bool
	}{
		{"W1/simsiam", "mlp-mnist", 512, []int{784}, cosineLoss, false},
		{"W1/byol", "mlp-mnist", 512, []int{784}, byolLoss, true},
		{"W2/simsiam", "convnet-cifar", 256, []int{3, 32, 32}, cosineLoss, false},
		{"W2/byol", "convnet-cifar", 256, []int{3, 32, 32}, byolLoss, true},
		{"W3/simsiam", "resnet18-cifar", 128, []int{3, 32, 32}, cosineLoss, false},
	} {
		b.Run(c.name, func(b *testing.B) {
			st := newStep(b, c.workload, c.loss, c.ema, nil)
			rng := rand.New(rand.NewPCG(7, 8))
			shape := append([]int{c.batch}, c.in...)
			x1, x2 := tensortest.Randn(rng, shape...), tensortest.Randn(rng, shape...)
			for i := 0; i < 2; i++ {
				if _, err := st.Run(x1, x2, 0.05, 0.99); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := testenv.ProcessCPU()
			for i := 0; i < b.N; i++ {
				if _, err := st.Run(x1, x2, 0.05, 0.99); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(c.batch)*float64(b.N)/b.Elapsed().Seconds(), "img/s")
			if cpu := testenv.ProcessCPU() - cpu0; cpu > 0 {
				b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
			}
		})
	}
}

func TestStepRejectsBadBatchesAndLosses(t *testing.T) {
	st := newStep(t, "mlp-mnist", cosineLoss, false, smallSpec())
	rng := rand.New(rand.NewPCG(9, 10))
	if _, err := st.Run(tensortest.Randn(rng, 1, 12), tensortest.Randn(rng, 1, 12), 0.05, 0); err == nil {
		t.Error("a batch of one was accepted (BatchNorm cannot train on it)")
	}
	if _, err := st.Run(tensortest.Randn(rng, 4, 12), tensortest.Randn(rng, 3, 12), 0.05, 0); err == nil {
		t.Error("views of different batch sizes were accepted")
	}
	vector := newStep(t, "mlp-mnist", func(tp *autodiff.Tape, o *Outputs) (*autodiff.Var, error) {
		return tp.CosineSimilarity(o.P1, o.Z2), nil
	}, false, smallSpec())
	if _, err := vector.Run(tensortest.Randn(rng, 4, 12), tensortest.Randn(rng, 4, 12), 0.05, 0); err == nil {
		t.Error("a loss of several values was accepted")
	}
}

// TestStepReuseGradsBitIdentical checks that the step's gradient-buffer
// reuse (on by default) trains exactly as the tape's default mode, on a
// conv net and a ResNet (residual sums, projection shortcuts) with a
// target network.
func TestStepReuseGradsBitIdentical(t *testing.T) {
	for _, b := range []nn.BackboneSpec{
		{Arch: "convnet", Widths: []int{4, 8}, Strides: []int{1, 2}},
		{Arch: "resnet18", Widths: []int{4, 8}, Strides: []int{1, 2}, Blocks: []int{1, 2}},
	} {
		t.Run(b.Arch, func(t *testing.T) { testStepReuseGrads(t, b) })
	}
}

func testStepReuseGrads(t *testing.T, b nn.BackboneSpec) {
	spec := &nn.ModelSpec{
		Backbone:  b,
		Projector: nn.HeadSpec{Dims: []int{8, 16, 8}, LastBN: nn.LastBNPlain},
		Predictor: nn.HeadSpec{Dims: []int{8, 4, 8}, LastBias: true},
	}
	run := func(reuse bool) []*nn.Param {
		st := newStep(t, "convnet-cifar", byolLoss, true, spec)
		st.Tape.SetReuseGrads(reuse)
		rng := rand.New(rand.NewPCG(11, 12))
		x1, x2 := tensortest.Randn(rng, 6, 3, 8, 8), tensortest.Randn(rng, 6, 3, 8, 8)
		for i := 0; i < 3; i++ {
			if _, err := st.Run(x1, x2, 0.05, 0.99); err != nil {
				t.Fatal(err)
			}
		}
		ps := st.Model.Params()
		out := make([]*nn.Param, len(ps))
		for i := range ps {
			out[i] = &ps[i]
		}
		return out
	}
	want, got := run(false), run(true)
	for i, p := range want {
		for j, v := range p.Var.Value.Data {
			if g := got[i].Var.Value.Data[j]; math.Float32bits(g) != math.Float32bits(v) {
				t.Fatalf("%s[%d] = %v with reused gradients, %v without", p.Name, j, g, v)
			}
		}
	}
}
