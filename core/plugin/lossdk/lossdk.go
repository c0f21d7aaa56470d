// Package lossdk turns a loss written as a core/autodiff forward function
// into a plugin.Loss: the author writes the forward pass on a tape, the SDK
// does the rest (wrapping the inputs, Backward, returning the gradients in
// the plugin's output arena, NaN checks, configuration plumbing).
//
// A whole loss plugin is then one file:
//
//	func main() {
//		lossdk.Serve("l2", "0.1.0", &lossdk.Func{
//			LossSpec: plugin.LossSpec{Predictor: true, Target: plugin.TargetStopGrad, Inputs: []string{"p1", "z2"}},
//			Forward: func(tp *autodiff.Tape, in map[string]*autodiff.Var, _ plugin.Step) (*autodiff.Var, map[string]float64, error) {
//				return tp.Mean(tp.Square(tp.Sub(in["p1"], tp.Detach(in["z2"])))), nil, nil
//			},
//		})
//	}
//
// The same *Func runs in process (plugin.Host.InProcess) and in a
// subprocess with the same results bit for bit: the arithmetic is the
// tape's in both cases.
package lossdk

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"

	"github.com/zclconf/go-cty/cty"

	"github.com/sslrun/sslrun/core/autodiff"
	"github.com/sslrun/sslrun/core/plugin"
	"github.com/sslrun/sslrun/core/tensor"
)

// ForwardFunc computes a loss on tp from the named inputs (a Var per
// input: differentiable leaves over the host's tensors, except those listed
// in Func.NoGrad). It returns the loss (one element) and optional extra
// metrics, reported as plugin metrics under their names. It must not write
// into any input's Value: in a subprocess those are read-only mappings.
type ForwardFunc func(tp *autodiff.Tape, in map[string]*autodiff.Var, step plugin.Step) (loss *autodiff.Var, metrics map[string]float64, err error)

// Func is a plugin.Loss (and plugin.Configurer) defined by an autodiff
// forward function. Use it by pointer; it keeps one tape for its whole life,
// so a step allocates nothing on the tape once the shapes repeat. Calls are
// serialised.
type Func struct {
	// LossSpec is what Spec returns: at least Inputs, the tensors Forward
	// reads (in that order). With no Inputs, every tensor the host passes
	// is an input.
	LossSpec plugin.LossSpec
	// SpecFunc, when set, replaces LossSpec, for specs that depend on the
	// configuration.
	SpecFunc func() (plugin.LossSpec, error)
	// Schema declares the configuration attributes (used by Plugin and
	// Serve).
	Schema plugin.Schema
	// Config, when set, receives the decoded configuration (an object with
	// Schema's attributes, defaults filled in). Return plugin.AttrErrorf to
	// point at one attribute.
	Config func(cfg cty.Value) error
	// Forward is the loss.
	Forward ForwardFunc
	// NoGrad lists inputs that only ever reach the loss through a
	// stop-gradient: they are wrapped with Tape.Input instead of Tape.Leaf
	// and get no gradient in the result, which saves zeroing, transferring
	// and backpropagating an all-zero tensor.
	NoGrad []string

	mu      sync.Mutex
	tp      *autodiff.Tape
	names   []string
	vars    map[string]*autodiff.Var
	grads   map[string]*tensor.T
	metrics []plugin.Metric
}

var (
	_ plugin.Loss       = (*Func)(nil)
	_ plugin.Configurer = (*Func)(nil)
)

// Spec returns the loss's declaration.
func (f *Func) Spec(context.Context) (plugin.LossSpec, error) {
	if f.SpecFunc != nil {
		return f.SpecFunc()
	}
	return f.LossSpec, nil
}

// Configure hands the configuration to Config.
func (f *Func) Configure(_ context.Context, cfg cty.Value) error {
	if f.Config == nil {
		return nil
	}
	return f.Config(cfg)
}

// Compute runs Forward on the inputs, backpropagates and returns the loss
// and the gradient on every differentiable input. The gradients are
// allocated with plugin.NewTensor (in the plugin's output arena when the call
// comes through a host, so nothing is copied on the way out) and the tape
// accumulates straight into them. A NaN or infinite loss is returned
// without gradients.
func (f *Func) Compute(ctx context.Context, in plugin.LossInputs) (plugin.LossResult, error) {
	if f.Forward == nil {
		return plugin.LossResult{}, errors.New("lossdk: Func has no Forward")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.tp == nil {
		f.tp = autodiff.NewTape()
		f.vars = map[string]*autodiff.Var{}
		f.grads = map[string]*tensor.T{}
	}
	tp := f.tp
	tp.Reset()
	tp.SetGrad(true)
	clear(f.vars)
	clear(f.grads)
	f.metrics = f.metrics[:0]

	spec, err := f.Spec(ctx)
	if err != nil {
		return plugin.LossResult{}, fmt.Errorf("lossdk: spec: %w", err)
	}
	f.names = f.names[:0]
	if len(spec.Inputs) > 0 {
		f.names = append(f.names, spec.Inputs...)
	} else {
		for n := range in.Tensors {
			f.names = append(f.names, n)
		}
		sort.Strings(f.names) // a fixed order keeps the tape's arena layout stable
	}
	for _, n := range f.names {
		t := in.Tensors[n]
		if t == nil {
			return plugin.LossResult{}, fmt.Errorf("lossdk: missing input %q (have %s)", n, inputNames(in.Tensors))
		}
		if f.noGrad(n) {
			f.vars[n] = tp.Input(t)
			continue
		}
		// Leaf never writes its Value, so a read-only arena view is fine. Its
		// gradient buffer is swapped for one in the output arena: Backward
		// accumulates into a Leaf's Grad, so it only has to start at zero.
		v := tp.Leaf(t)
		g := plugin.NewTensor(ctx, t.Shape...)
		clear(g.Data)
		v.Grad = g
		f.vars[n] = v
	}

	loss, extra, err := f.Forward(tp, f.vars, in.Step)
	if err != nil {
		return plugin.LossResult{}, err
	}
	if loss == nil {
		return plugin.LossResult{}, errors.New("lossdk: Forward returned a nil loss")
	}
	if n := loss.Len(); n != 1 {
		return plugin.LossResult{}, fmt.Errorf("lossdk: Forward returned a loss of shape %v, want one element", loss.Shape())
	}
	value := float64(loss.Item())
	if math.IsNaN(value) || math.IsInf(value, 0) {
		// No gradients: the host sees the value and stops the run with the
		// step and the last finite loss (core/runner does).
		return plugin.LossResult{Loss: value}, nil
	}
	if loss.RequiresGrad() {
		if err := tp.Backward(loss); err != nil {
			return plugin.LossResult{}, fmt.Errorf("lossdk: backward: %w", err)
		}
	}
	for _, n := range f.names {
		if v := f.vars[n]; v.RequiresGrad() {
			f.grads[n] = v.Grad
		}
	}
	if len(extra) > 0 {
		keys := make([]string, 0, len(extra))
		for k := range extra {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			f.metrics = append(f.metrics, plugin.Metric{Name: k, Value: extra[k]})
		}
	}
	return plugin.LossResult{Loss: value, Grads: f.grads, Metrics: f.metrics}, nil
}

func (f *Func) noGrad(name string) bool {
	for _, n := range f.NoGrad {
		if n == name {
			return true
		}
	}
	return false
}

func inputNames(ts map[string]*tensor.T) string {
	names := make([]string, 0, len(ts))
	for n := range ts {
		names = append(names, n)
	}
	sort.Strings(names)
	return fmt.Sprint(names)
}

// Plugin wraps f as a plugin with its schema, for plugin.Serve,
// plugin.Bundled or Host.InProcess.
func (f *Func) Plugin(name, version string) plugin.Plugin {
	return plugin.Plugin{Name: name, Version: version, Schema: f.Schema, Loss: f}
}

// Serve serves f as the plugin name: the whole main of a loss plugin.
func Serve(name, version string, f *Func) {
	plugin.Serve(f.Plugin(name, version))
}

// Float returns the number attribute name of a configuration object (as
// Func.Config receives it); a null or missing attribute is 0.
func Float(cfg cty.Value, name string) float64 {
	v := attr(cfg, name)
	if v.IsNull() || !v.Type().Equals(cty.Number) {
		return 0
	}
	x, _ := v.AsBigFloat().Float64()
	return x
}

// Bool returns the bool attribute name of a configuration object; a null or
// missing attribute is false.
func Bool(cfg cty.Value, name string) bool {
	v := attr(cfg, name)
	if v.IsNull() || !v.Type().Equals(cty.Bool) {
		return false
	}
	return v.True()
}

// String returns the string attribute name of a configuration object; a
// null or missing attribute is "".
func String(cfg cty.Value, name string) string {
	v := attr(cfg, name)
	if v.IsNull() || !v.Type().Equals(cty.String) {
		return ""
	}
	return v.AsString()
}

func attr(cfg cty.Value, name string) cty.Value {
	if cfg.IsNull() || !cfg.IsKnown() || !cfg.Type().IsObjectType() || !cfg.Type().HasAttribute(name) {
		return cty.NullVal(cty.DynamicPseudoType)
	}
	v := cfg.GetAttr(name)
	if !v.IsKnown() {
		return cty.NullVal(cty.DynamicPseudoType)
	}
	return v
}
