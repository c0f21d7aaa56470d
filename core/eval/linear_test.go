package eval

import (
	"encoding/json"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/sslrun/sslrun/core/parallel"
	"github.com/sslrun/sslrun/core/safetensors"
	"github.com/sslrun/sslrun/internal/testenv"
)

// TestLinearGolden replays full-batch SGD against
// tools/golden/gen_eval.py (nn.Linear, F.cross_entropy, torch.optim.SGD).
func TestLinearGolden(t *testing.T) {
	f, err := safetensors.ReadFile(filepath.Join("testdata", "linear.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	x, err := f.Tensor("x")
	if err != nil {
		t.Fatal(err)
	}
	y, _, err := f.Int64s("y")
	if err != nil {
		t.Fatal(err)
	}
	train, err := SetFromTensor("x", x, toInt32(y))
	if err != nil {
		t.Fatal(err)
	}
	w0, err := f.Tensor("init.w")
	if err != nil {
		t.Fatal(err)
	}
	b0, err := f.Tensor("init.b")
	if err != nil {
		t.Fatal(err)
	}
	classes := w0.Shape[0]
	init := &Linear{W: w0.Data, B: b0.Data}
	for _, name := range []string{"cos_wd", "const_std"} {
		t.Run(name, func(t *testing.T) {
			var c struct {
				LR, Momentum float64
				WeightDecay  float64 `json:"weight_decay"`
				Schedule     string
				Standardize  bool
				Steps        int
			}
			if err := json.Unmarshal([]byte(f.Metadata[name]), &c); err != nil {
				t.Fatal(err)
			}
			for _, steps := range []int{1, c.Steps} {
				cfg := LinearConfig{Epochs: steps, BatchSize: 0, LR: c.LR, Momentum: c.Momentum,
					WeightDecay: c.WeightDecay, Schedule: c.Schedule, Standardize: c.Standardize}
				if steps == 1 && c.Schedule == ScheduleCosine {
					// The fixture's cosine spans Steps steps; after the
					// first step only the step-0 lr (the peak) was used.
					cfg.Schedule = ScheduleConstant
				}
				if err := cfg.validate(); err != nil {
					t.Fatal(err)
				}
				m, _ := trainLinear(train, cfg, classes, init)
				for _, p := range []struct {
					suffix string
					got    []float32
				}{{"w", m.W}, {"b", m.B}} {
					want, err := f.Tensor(fmtName(steps, name, p.suffix))
					if err != nil {
						t.Fatal(err)
					}
					if msg := testenv.Mismatch(p.got, want.Data, 1e-4, 1e-5); msg != "" {
						t.Errorf("step %d %s: %s", steps, p.suffix, msg)
					}
				}
			}
		})
	}
}

func fmtName(step int, c, p string) string {
	return "step" + itoa(step) + "." + c + "." + p
}

// separable draws a linearly separable problem: labels are the argmax of
// a random linear map of the features.
func separable(rng *rand.Rand, name string, n, dim, classes int, proj []float32) Set {
	s := Set{Name: name, X: make([]float32, n*dim), Dim: dim, Labels: make([]int32, n)}
	for i := range n {
		x := s.X[i*dim : (i+1)*dim]
		for j := range x {
			x[j] = float32(rng.NormFloat64())
		}
		best, bv := 0, float32(-1e30)
		for c := range classes {
			var v float32
			for j := range dim {
				v += proj[c*dim+j] * x[j]
			}
			if v > bv {
				best, bv = c, v
			}
		}
		s.Labels[i] = int32(best)
	}
	return s
}

func TestLinearProbe(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const dim, classes = 32, 5
	proj := randomCenters(rng, classes, dim)
	train := separable(rng, "sep/train", 4000, dim, classes, proj)
	test := separable(rng, "sep/test", 1000, dim, classes, proj)
	cfg := DefaultLinear()
	cfg.Epochs = 30
	cfg.Seed = 7
	res, err := LinearProbe(train, test, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("separable: train %.4f test %.4f top5 %.4f loss %.4f", res.TrainTop1, res.Top1, res.Top5, res.TrainLoss)
	if res.TrainTop1 < 0.97 || res.Top1 < 0.95 || res.Top5 != 1 {
		t.Errorf("separable: train %.4f test %.4f top5 %v, want >= 0.97, >= 0.95, 1", res.TrainTop1, res.Top1, res.Top5)
	}
	for _, k := range []string{"epochs", "batch_size", "lr", "momentum", "weight_decay", "lr_schedule", "selection", "seed", "feature_norm", "n_train", "n_test"} {
		if res.Protocol[k] == "" {
			t.Errorf("protocol lacks %q: %v", k, res.Protocol)
		}
	}

	// Predict agrees with the reported top-1.
	correct := 0
	for i, p := range res.Model.Predict(test) {
		if p == test.Labels[i] {
			correct++
		}
	}
	if got := float64(correct) / float64(test.N()); got != res.Top1 {
		t.Errorf("Predict accuracy %v, reported %v", got, res.Top1)
	}

	// Same seed, other thread count: bit-identical weights.
	prev := parallel.SetThreads(1)
	res1, err := LinearProbe(train, test, cfg)
	parallel.SetThreads(prev)
	if err != nil {
		t.Fatal(err)
	}
	for i := range res.Model.W {
		if res.Model.W[i] != res1.Model.W[i] {
			t.Fatalf("weights differ between 1 and %d threads at %d", prev, i)
		}
	}

	// Standardized features of very different scales train as well.
	scaled := Set{Name: "scaled", X: make([]float32, len(train.X)), Dim: dim, Labels: train.Labels}
	scaledTest := Set{Name: "scaled_test", X: make([]float32, len(test.X)), Dim: dim, Labels: test.Labels}
	for i, v := range train.X {
		scaled.X[i] = v*float32(1+i%dim*10) + 5
	}
	for i, v := range test.X {
		scaledTest.X[i] = v*float32(1+i%dim*10) + 5
	}
	cfg.Standardize = true
	res, err = LinearProbe(scaled, scaledTest, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Top1 < 0.95 {
		t.Errorf("standardized: test %.4f, want >= 0.95", res.Top1)
	}

	// Random labels: memorization is limited and the test is at chance.
	for i := range train.Labels {
		train.Labels[i] = int32(rng.IntN(classes))
	}
	for i := range test.Labels {
		test.Labels[i] = int32(rng.IntN(classes))
	}
	cfg.Standardize = false
	res, err = LinearProbe(train, test, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("random labels: train %.4f test %.4f", res.TrainTop1, res.Top1)
	if res.Top1 > 0.26 || res.Top1 < 0.14 {
		t.Errorf("random labels: test %.4f, want chance 0.2 +- 0.06", res.Top1)
	}
}

func TestLinearFewClassesAndErrors(t *testing.T) {
	train := Set{Name: "a", Dim: 1, X: []float32{-2, -1, 1, 2}, Labels: []int32{0, 0, 1, 1}}
	res, err := LinearProbe(train, train, DefaultLinear())
	if err != nil {
		t.Fatal(err)
	}
	if res.Top1 != 1 || res.Top5 != 1 || res.TrainTop1 != 1 {
		t.Errorf("two points per side: %+v", res)
	}
	bad := []LinearConfig{
		{Epochs: 0, LR: 0.1, Schedule: ScheduleCosine},
		{Epochs: 1, LR: 0, Schedule: ScheduleCosine},
		{Epochs: 1, LR: 0.1, Momentum: 1, Schedule: ScheduleCosine},
		{Epochs: 1, LR: 0.1, WeightDecay: -1, Schedule: ScheduleCosine},
		{Epochs: 1, LR: 0.1, Schedule: "step"},
	}
	for _, c := range bad {
		if _, err := LinearProbe(train, train, c); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
	if _, err := LinearProbe(train, Set{Name: "b", Dim: 2, X: []float32{1, 2}, Labels: []int32{0}}, DefaultLinear()); err == nil {
		t.Error("dim mismatch: no error")
	}
}
