package optim

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sslrun/sslrun/core/parallel"
	"github.com/sslrun/sslrun/core/safetensors"
)

// makeParams returns parameters with the given sizes filled from a fixed
// seed: the first and any large one are Weights, the other small ones
// alternate Bias and Norm.
func makeParams(seed uint64, sizes ...int) []*Param {
	r := rand.New(rand.NewPCG(seed, 1))
	var ps []*Param
	for i, n := range sizes {
		p := &Param{Name: "p" + string(rune('a'+i)), Value: make([]float32, n), Grad: make([]float32, n), Shape: []int{n}}
		switch {
		case i == 0 || n > 512:
		case i%2 == 1:
			p.Kind = Bias
		default:
			p.Kind = Norm
		}
		for j := range p.Value {
			p.Value[j] = float32(r.NormFloat64())
		}
		ps = append(ps, p)
	}
	return ps
}

func fillGrads(ps []*Param, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 2))
	for _, p := range ps {
		for j := range p.Grad {
			p.Grad[j] = float32(0.1 * r.NormFloat64())
		}
	}
}

func clone(ps []*Param) []*Param {
	out := make([]*Param, len(ps))
	for i, p := range ps {
		q := *p
		q.Value = append([]float32(nil), p.Value...)
		q.Grad = append([]float32(nil), p.Grad...)
		out[i] = &q
	}
	return out
}

// configs are one representative group per algorithm and momentum mode.
var configs = []struct {
	name string
	alg  Algorithm
	g    Group
}{
	{"sgd", SGD, Group{Momentum: 0.9, WeightDecay: 5e-4}},
	{"sgd-plain", SGD, Group{WeightDecay: 5e-4}},
	{"sgd-nesterov", SGD, Group{Momentum: 0.9, WeightDecay: 5e-4, Nesterov: true}},
	{"lars", LARS, Group{Momentum: 0.9, WeightDecay: 1e-6, Eta: 0.02, Eps: 1e-8, ExcludeBiasNorm: true, NoDecayBiasNorm: true}},
	{"lars-clip", LARS, Group{Momentum: 0.9, WeightDecay: 1e-6, Eta: 0.02, Eps: 1e-8, ClipLR: true}},
	{"adamw", AdamW, Group{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.05}},
}

func newOpt(t testing.TB, alg Algorithm, g Group, ps []*Param) *Optimizer {
	t.Helper()
	g.Params = ps
	o, err := New(alg, []Group{g})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// TestCheckpointResume checks that saving after two steps, loading into a
// fresh optimizer through a safetensors file and taking a third step gives
// bit-identical parameters to three uninterrupted steps.
func TestCheckpointResume(t *testing.T) {
	dir := t.TempDir()
	for _, c := range configs {
		t.Run(c.name, func(t *testing.T) {
			ps := makeParams(1, 40, 8, 8)
			a := newOpt(t, c.alg, c.g, ps)
			for k := 0; k < 2; k++ {
				fillGrads(ps, uint64(k))
				a.Step(0.1)
			}
			f32, i64 := a.Save("optim.")
			path := filepath.Join(dir, c.name+".safetensors")
			if err := safetensors.WriteFileMixed(path, f32, i64, nil); err != nil {
				t.Fatal(err)
			}
			qs := clone(ps)
			b := newOpt(t, c.alg, c.g, qs)
			f, err := safetensors.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Load(f, "optim."); err != nil {
				t.Fatal(err)
			}
			if b.Steps() != 2 {
				t.Fatalf("restored %d steps, want 2", b.Steps())
			}
			fillGrads(ps, 7)
			fillGrads(qs, 7)
			a.Step(0.05)
			b.Step(0.05)
			for i := range ps {
				for j := range ps[i].Value {
					if ps[i].Value[j] != qs[i].Value[j] {
						t.Fatalf("%s[%d]: resumed %v, uninterrupted %v", ps[i].Name, j, qs[i].Value[j], ps[i].Value[j])
					}
				}
			}
		})
	}
}

func TestLoadStateErrors(t *testing.T) {
	ps := makeParams(1, 16, 4)
	o := newOpt(t, AdamW, Defaults(AdamW), ps)
	st := o.State()
	if len(st) != 4 {
		t.Fatalf("AdamW state has %d tensors, want 4", len(st))
	}
	short := o.State()
	delete(short, "pa.exp_avg")
	if err := o.LoadState(short, 1); err == nil || !strings.Contains(err.Error(), "pa.exp_avg") {
		t.Errorf("missing tensor: err = %v", err)
	}
	wrong := o.State()
	wrong["pb.exp_avg_sq"] = wrong["pa.exp_avg_sq"]
	if err := o.LoadState(wrong, 1); err == nil {
		t.Error("wrong size accepted")
	}
	if err := o.LoadState(o.State(), -1); err == nil {
		t.Error("negative steps accepted")
	}
	if o.Steps() != 0 {
		t.Errorf("failed loads changed the step count to %d", o.Steps())
	}
}

func TestNewRejects(t *testing.T) {
	p := func() *Param {
		return &Param{Name: "w", Value: make([]float32, 4), Grad: make([]float32, 4), Shape: []int{2, 2}}
	}
	tests := []struct {
		name   string
		alg    Algorithm
		groups func() []Group
		want   string
	}{
		{"grad size", SGD, func() []Group {
			q := p()
			q.Grad = q.Grad[:3]
			return []Group{{Params: []*Param{q}}}
		}, "gradients"},
		{"shape", SGD, func() []Group {
			q := p()
			q.Shape = []int{3}
			return []Group{{Params: []*Param{q}}}
		}, "shape"},
		{"duplicate name", SGD, func() []Group { return []Group{{Params: []*Param{p()}}, {Params: []*Param{p()}}} }, "two params"},
		{"same param twice", SGD, func() []Group {
			q := p()
			return []Group{{Params: []*Param{q, q}}}
		}, "twice"},
		{"nesterov without momentum", SGD, func() []Group { return []Group{{Params: []*Param{p()}, Nesterov: true}} }, "nesterov"},
		{"negative wd", SGD, func() []Group { return []Group{{Params: []*Param{p()}, WeightDecay: -1}} }, "WeightDecay"},
		{"lars eta", LARS, func() []Group { return []Group{{Params: []*Param{p()}}} }, "Eta"},
		{"adamw beta", AdamW, func() []Group { return []Group{{Params: []*Param{p()}, Beta1: 1}} }, "betas"},
		{"nan lr scale", SGD, func() []Group { return []Group{{Params: []*Param{p()}, LRScale: math.NaN()}} }, "LRScale"},
		{"unknown algorithm", Algorithm(9), func() []Group { return nil }, "algorithm"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.alg, tc.groups())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want mention of %q", err, tc.want)
			}
		})
	}
}

func TestGroupLR(t *testing.T) {
	tests := []struct {
		g    Group
		lr   float64
		want float64
	}{
		{Group{}, 0.3, 0.3},
		{Group{LRScale: 0.1}, 0.3, 0.03},
		{Group{Static: true, FixedLR: 0.06}, 0.3, 0.06},
		{Group{Static: true, FixedLR: 0.06, LRScale: 5}, 0.001, 0.06},
	}
	for _, tc := range tests {
		if got := tc.g.LR(tc.lr); math.Abs(got-tc.want) > 1e-15 {
			t.Errorf("%+v.LR(%v) = %v, want %v", tc.g, tc.lr, got, tc.want)
		}
	}
}

// TestNoDecayBiasNorm checks solo-learn's exclude_bias_n_norm_wd: a bias
// with zero gradient must not move under SGD, a weight must.
func TestNoDecayBiasNorm(t *testing.T) {
	w := &Param{Name: "w", Value: []float32{1, 2}, Grad: make([]float32, 2), Kind: Weight}
	b := &Param{Name: "b", Value: []float32{1, 2}, Grad: make([]float32, 2), Kind: Bias}
	n := &Param{Name: "n", Value: []float32{1, 2}, Grad: make([]float32, 2), Kind: Norm}
	o := newOpt(t, SGD, Group{WeightDecay: 0.1, NoDecayBiasNorm: true}, []*Param{w, b, n})
	o.Step(1)
	if w.Value[0] != 0.9 || b.Value[0] != 1 || n.Value[1] != 2 {
		t.Errorf("after step: w %v b %v n %v; want w decayed only", w.Value, b.Value, n.Value)
	}
}

func TestSetGroup(t *testing.T) {
	ps := makeParams(3, 8)
	o := newOpt(t, SGD, Group{Momentum: 0.9}, ps)
	g := o.Group(0)
	g.Momentum = 0
	if err := o.SetGroup(0, g); err == nil {
		t.Error("switching momentum off accepted")
	}
	g.Momentum, g.WeightDecay = 0.5, 1e-3
	if err := o.SetGroup(0, g); err != nil {
		t.Fatal(err)
	}
	if o.Group(0).WeightDecay != 1e-3 || len(o.Group(0).Params) != 1 {
		t.Errorf("group after SetGroup: %+v", o.Group(0))
	}
}

func TestZeroGrad(t *testing.T) {
	ps := makeParams(3, 8, 3)
	fillGrads(ps, 1)
	o := newOpt(t, SGD, Group{}, ps)
	o.ZeroGrad()
	for _, p := range ps {
		for _, g := range p.Grad {
			if g != 0 {
				t.Fatalf("%s: gradient %v after ZeroGrad", p.Name, p.Grad)
			}
		}
	}
}

// TestThreadsDeterministic checks that a parallel Step (parameters above
// parallelMin) gives the same bits on 1 and 2 threads: the LARS norms are
// summed per fixed chunk, not per worker.
func TestThreadsDeterministic(t *testing.T) {
	defer parallel.SetThreads(parallel.SetThreads(1))
	for _, c := range configs {
		t.Run(c.name, func(t *testing.T) {
			var results [][]*Param
			for _, threads := range []int{1, 2} {
				parallel.SetThreads(threads)
				ps := makeParams(5, 3*chunkSize+17, 300, 300)
				o := newOpt(t, c.alg, c.g, ps)
				o.SetParallel(true)
				for k := 0; k < 3; k++ {
					fillGrads(ps, uint64(k))
					o.Step(0.1)
				}
				results = append(results, ps)
			}
			for i := range results[0] {
				for j, v := range results[0][i].Value {
					if results[1][i].Value[j] != v {
						t.Fatalf("%s[%d]: 1 thread %v, 2 threads %v", results[0][i].Name, j, v, results[1][i].Value[j])
					}
				}
			}
		})
	}
}

// TestStepAllocs requires Step and EMA.Update to be allocation-free, both on
// the serial path and on the parallel one.
func TestStepAllocs(t *testing.T) {
	defer parallel.SetThreads(parallel.SetThreads(2))
	for _, size := range []int{1000, 2 * parallelMin} {
		for _, c := range configs {
			ps := makeParams(9, size, 64, 64)
			fillGrads(ps, 1)
			o := newOpt(t, c.alg, c.g, ps)
			o.SetParallel(true)
			o.Step(0.1) // leave the first-step path
			if n := testing.AllocsPerRun(20, func() { o.Step(0.01) }); n != 0 {
				t.Errorf("%s size %d: Step allocates %v times", c.name, size, n)
			}
		}
		on, tg := makeParams(1, size, 64), makeParams(2, size, 64)
		e, err := NewEMA(on, tg)
		if err != nil {
			t.Fatal(err)
		}
		e.SetParallel(true)
		if n := testing.AllocsPerRun(20, func() { e.Update(0.99) }); n != 0 {
			t.Errorf("size %d: EMA.Update allocates %v times", size, n)
		}
	}
}

func TestLARSZeroNormSkipsAdaptation(t *testing.T) {
	// A zero-initialized weight (||p|| = 0) gets the raw gradient, no decay,
	// exactly as solo-learn's `if p_norm != 0 and g_norm != 0` does.
	w := &Param{Name: "w", Value: []float32{0, 0}, Grad: []float32{1, -2}, Kind: Weight}
	o := newOpt(t, LARS, Group{Eta: 0.02, Eps: 1e-8, WeightDecay: 0.1}, []*Param{w})
	o.Step(0.5)
	if w.Value[0] != -0.5 || w.Value[1] != 1 {
		t.Errorf("zero weight after LARS step: %v, want [-0.5 1]", w.Value)
	}
}

func TestWarmupCosine(t *testing.T) {
	perEpoch, err := NewWarmupCosine(0.5, 0.01, 0.001, 2, 10, 3, false)
	if err != nil {
		t.Fatal(err)
	}
	perStep, err := NewWarmupCosine(0.5, 0.01, 0.001, 2, 10, 3, true)
	if err != nil {
		t.Fatal(err)
	}
	if perStep.Warmup != 6 || perStep.Total != 30 {
		t.Errorf("per-step schedule %+v, want warmup 6 total 30", perStep)
	}
	tests := []struct {
		s    Schedule
		step int
		want float64
	}{
		{perEpoch, 0, 0.01}, {perEpoch, 2, 0.01}, // epoch 0
		{perEpoch, 3, 0.5}, {perEpoch, 5, 0.5}, // epoch 1 = warmup-1
		{perEpoch, 6, 0.5}, // epoch 2 = warmup: cosine starts at base
		{perEpoch, 29, 0.001 + 0.5*(0.499)*(1+math.Cos(math.Pi*7/8))}, // epoch 9
		{perEpoch, 30, 0.001},                                             // past the end: clamped
		{perStep, 1, 0.01 + 0.49/5}, {perStep, 5, 0.5}, {perStep, 6, 0.5}, // warmup by step
		{perStep, 18, 0.001 + 0.5*0.499*(1+math.Cos(math.Pi*12/24))}, // mid cosine
		{Constant(0.06), 123, 0.06},                                  // constant
	}
	for i, tc := range tests {
		if got := tc.s.LR(tc.step); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("case %d: LR(%d) = %v, want %v", i, tc.step, got, tc.want)
		}
	}
	noWarm, err := NewWarmupCosine(0.5, 0.01, 0, 0, 10, 1, true)
	if err != nil {
		t.Fatal(err)
	}
	if got := noWarm.LR(0); got != 0.5 {
		t.Errorf("no warmup: LR(0) = %v, want base 0.5", got)
	}
	if _, err := NewWarmupCosine(0.5, 0, 0, 10, 10, 1, true); err == nil {
		t.Error("warmup == total accepted")
	}
	if got := ScaleLR(0.03, 512); math.Abs(got-0.06) > 1e-15 {
		t.Errorf("ScaleLR(0.03, 512) = %v, want 0.06", got)
	}
}

func TestTau(t *testing.T) {
	tests := []struct {
		step, total int
		want        float64
	}{
		{0, 100, 0.99}, {50, 100, 0.995}, {100, 100, 1}, {150, 100, 1}, {-3, 100, 0.99},
	}
	for _, tc := range tests {
		if got := Tau(0.99, 1, tc.step, tc.total); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("Tau(step %d of %d) = %v, want %v", tc.step, tc.total, got, tc.want)
		}
	}
}

func TestEMA(t *testing.T) {
	on := makeParams(1, 5, 3)
	tg := makeParams(2, 5, 3)
	e, err := NewEMA(on, tg)
	if err != nil {
		t.Fatal(err)
	}
	e.Copy()
	if tg[0].Value[2] != on[0].Value[2] {
		t.Fatal("Copy did not copy")
	}
	on[1].Value[0] += 1
	e.Update(0.75)
	if got, want := tg[1].Value[0], on[1].Value[0]-0.75; math.Abs(float64(got-want)) > 1e-6 {
		t.Errorf("EMA moved target to %v, want %v", got, want)
	}
	if _, err := NewEMA(on, tg[:1]); err == nil {
		t.Error("mismatched lists accepted")
	}
	if _, err := NewEMA(on[:1], tg[1:]); err == nil {
		t.Error("mismatched sizes accepted")
	}
}

// TestNoDecayBiasNormMatchesSplitGroups checks that NoDecayBiasNorm gives
// bit-identical results to solo-learn's remove_bias_and_norm_from_weight_decay
// (the same hyperparameters split into a decay and a no-decay group), with
// LARS where the decay also enters the trust ratio.
func TestNoDecayBiasNormMatchesSplitGroups(t *testing.T) {
	g := Group{Momentum: 0.9, WeightDecay: 0.1, Eta: 0.02, Eps: 1e-8}
	ps := makeParams(4, 50, 6, 6)
	qs := clone(ps)
	one := g
	one.NoDecayBiasNorm, one.Params = true, ps
	a, err := New(LARS, []Group{one})
	if err != nil {
		t.Fatal(err)
	}
	decay, noDecay := g, g
	decay.Params = qs[:1]
	noDecay.Params, noDecay.WeightDecay = qs[1:], 0
	b, err := New(LARS, []Group{decay, noDecay})
	if err != nil {
		t.Fatal(err)
	}
	for k := 0; k < 3; k++ {
		fillGrads(ps, uint64(k))
		fillGrads(qs, uint64(k))
		a.Step(0.3)
		b.Step(0.3)
	}
	for i := range ps {
		for j := range ps[i].Value {
			if ps[i].Value[j] != qs[i].Value[j] {
				t.Fatalf("%s[%d]: flag %v, split groups %v", ps[i].Name, j, ps[i].Value[j], qs[i].Value[j])
			}
		}
	}
}
