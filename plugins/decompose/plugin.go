package decompose

import (
	"context"
	"fmt"
	"sync"

	"github.com/zclconf/go-cty/cty"

	"github.com/sslrun/sslrun/core/plugin"
	"github.com/sslrun/sslrun/core/tensor"
)

// Version is the analyzer plugin's version, reported in Info.
const Version = "0.2.0"

// Schema declares the `analyzer "decompose" {}` block (the host's `every`
// is not part of it).
var Schema = plugin.Schema{Attributes: []plugin.Attribute{
	{Name: "tensors", Type: cty.List(cty.String), Default: cty.ListVal([]cty.Value{cty.StringVal("z")}),
		Description: `training tensors measured each observed step: "z" (projections, with the split of the loss's gradient on z) and "p" (predictions, with the split of the gradient on p and the extra gradient)`},
}}

// Plugin returns decompose as an analyzer plugin. Observe reads the
// tensors the host names by convention: z1, z2, p1, p2, t1, t2 and the
// loss's gradients grad/z1, grad/p1 (an all-zero gradient, the loss's
// answer on a stop-gradient input, counts as none). Evaluate measures an
// evaluation set's "embeddings" (scope "eval", tensor "feature"). Observe
// reports the geometric verdict of Collapsed on z (on p when z is not
// measured) as plugin.MetricCollapsed; Evaluate never reports one (see
// its comment).
func Plugin() plugin.Plugin {
	return plugin.Plugin{Name: "decompose", Version: Version, Schema: Schema, Analyzer: &analyzerPlugin{s: NewStepAnalyzer(StepConfig{Tensors: []string{"z"}})}}
}

// analyzerPlugin implements plugin.Analyzer and plugin.Configurer.
type analyzerPlugin struct {
	mu sync.Mutex
	s  *StepAnalyzer
	ev *Analyzer
}

// Configure implements plugin.Configurer.
func (a *analyzerPlugin) Configure(_ context.Context, v cty.Value) error {
	c, err := ParseStepConfig(v)
	if err != nil {
		return plugin.AttrErrorf("tensors", "%v", err)
	}
	a.mu.Lock()
	a.s = NewStepAnalyzer(c)
	a.mu.Unlock()
	return nil
}

// nonZero returns t unless it is nil or all zero.
func nonZero(t *tensor.T) *tensor.T {
	if t == nil {
		return nil
	}
	for _, v := range t.Data {
		if v != 0 {
			return t
		}
	}
	return nil
}

// Observe implements plugin.Analyzer.
func (a *analyzerPlugin) Observe(ctx context.Context, in plugin.StepTensors) ([]plugin.Metric, []plugin.Array, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	ts := in.Tensors
	if ts["z1"] == nil || ts["z2"] == nil {
		return nil, nil, fmt.Errorf("decompose: the step has no z1 and z2")
	}
	r, err := a.s.Step(StepInput{Z1: ts["z1"], Z2: ts["z2"], GradZ1: nonZero(ts["grad/z1"]),
		P1: ts["p1"], P2: ts["p2"], GradP1: nonZero(ts["grad/p1"]), T1: ts["t1"], T2: ts["t2"]})
	if err != nil {
		return nil, nil, err
	}
	ms := toMetrics(r.Metrics)
	if r.Collapsed {
		ms = append(ms, plugin.Metric{Name: plugin.MetricCollapsed, Value: 1, Context: map[string]string{"reason": r.Reason}})
	}
	return ms, toArrays(ctx, r.Arrays), nil
}

// Evaluate implements plugin.Analyzer: the embedding metrics and spectra
// of an evaluation set's embeddings, without a collapse verdict. The host
// does not say which tensor the embeddings are, and by default they are
// the backbone's features: post-ReLU, so non-negative, with an m_o far
// above CollapseMO by construction (0.96 at random initialization on
// Fashion-MNIST), which would report every run collapsed at step 0 and
// stop it under --stop-on-collapse. Even an evaluation set's z passes the
// projector's BatchNorm in eval mode, whose running statistics are not
// yet estimated at step 0 (m_o 0.96 there too, against 0.1 on the
// training batch). Paper.md's rule is about z and p on training batches,
// which Observe judges.
func (a *analyzerPlugin) Evaluate(ctx context.Context, in plugin.EvalSet) ([]plugin.Metric, []plugin.Array, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	x := in.Tensors["embeddings"]
	if x == nil {
		return nil, nil, fmt.Errorf("decompose: the evaluation set %q has no embeddings", in.Name)
	}
	if a.ev == nil {
		a.ev = New()
	}
	st, err := a.ev.Embeddings(x, Options{Tensor: "feature", Scope: "eval"})
	if err != nil {
		return nil, nil, err
	}
	return toMetrics(st.Metrics()), toArrays(ctx, st.Arrays()), nil
}

func toMetrics(in []Metric) []plugin.Metric {
	out := make([]plugin.Metric, len(in))
	for i, m := range in {
		out[i] = plugin.Metric{Name: m.Key, Value: m.Value, Context: m.Context}
	}
	return out
}

// toArrays returns the arrays as float32 tensors in the plugin's output
// arena.
func toArrays(ctx context.Context, in []Array) []plugin.Array {
	out := make([]plugin.Array, len(in))
	for i, a := range in {
		t := plugin.NewTensor(ctx, a.Shape...)
		for j, v := range a.Data {
			t.Data[j] = float32(v)
		}
		out[i] = plugin.Array{Name: a.Key, T: t, Context: a.Context}
	}
	return out
}
