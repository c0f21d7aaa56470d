// Package plugin is sslrun's plugin SDK and host: losses, analyzers and
// encoders are plain Go interfaces that run either in the host process
// (InProcess, for tests and benchmarks) or in a hashicorp/go-plugin
// subprocess over gRPC (Launch), with the same behaviour.
//
// Tensor data never crosses gRPC. The host owns a shared-memory arena
// (package shm) that every plugin maps read-only; each plugin owns an output
// arena that the host maps. Messages carry only Refs (segment, offset,
// shape, dtype) and scalars, one call per plugin per step; the per-step
// calls of a plugin the host started travel over a call channel (two
// socketpairs, calls.go) rather than gRPC, which costs a third as much.
// See docs/plugin-protocol.md for the wire protocol.
//
// Authoring a plugin is a one-file main:
//
//	func main() {
//		plugin.Serve(plugin.Plugin{Name: "mse", Version: "0.1.0", Loss: &mse{}})
//	}
package plugin

import (
	"context"
	"reflect"

	"github.com/zclconf/go-cty/cty"

	"github.com/sslrun/sslrun/core/tensor"
)

// ProtocolVersion is the plugin protocol this package serves. A later
// version can be served next to it through go-plugin's VersionedPlugins.
// Version 2 added the optimizer step riding on Encoder.Backward
// (CallRequest.optim); a version 1 plugin would ignore that field and
// silently skip the step, so hosts still accept version 1 and send it the
// step as an Encoder.Step call of its own. Version 3 added the call channel
// (EnvCallFD): a socketpair for the per-step calls beside gRPC; hosts send
// older plugins those calls over gRPC.
const ProtocolVersion = 3

// Kind is a role a plugin can play.
type Kind string

// Plugin kinds.
const (
	KindLoss     Kind = "loss"
	KindAnalyzer Kind = "analyzer"
	KindEncoder  Kind = "encoder"
)

// Info identifies a plugin.
type Info struct {
	Name    string
	Version string
	Kinds   []Kind
	// Protocol is the plugin protocol version the plugin speaks.
	Protocol int
}

// Step says where in the run a call happens. Errors name Step.Step.
type Step struct {
	Step       int64
	Epoch      int64
	TotalSteps int64
	Train      bool
}

// Input is what the host hands a plugin call: named tensors and named
// scalars. Tensors are views; in a subprocess they are mapped read-only and
// a write makes the call fail. They are valid only during the call.
type Input struct {
	Step Step
	// Name qualifies the call where a kind needs it (the evaluation set's
	// name for Analyzer.Evaluate); empty otherwise.
	Name    string
	Tensors map[string]*tensor.T
	Scalars map[string]float64
}

// LossInputs are a loss's inputs: by convention z1, z2 (projections),
// p1, p2 (predictions, when the spec asks for a predictor), t1, t2 (target
// network outputs, when the spec asks for one), plus whatever else the
// loss declared in LossSpec.Inputs.
type LossInputs = Input

// StepTensors are what an analyzer observes after a training step: by
// convention the encoder outputs (z1, p1, ...) and the gradients the loss
// returned, as "grad/<name>".
type StepTensors = Input

// EvalSet is an evaluation set at evaluation time: by convention
// "embeddings" (n x d) and, when labelled, "labels" (n, class index as
// float32); Name is the set's name.
type EvalSet = Input

// Metric is one scalar measurement. Context distinguishes the same metric
// measured on different things (e.g. {"tensor": "z1"}).
type Metric struct {
	Name    string
	Value   float64
	Context map[string]string
}

// MetricCollapsed is the metric by which an analyzer reports that the
// embeddings collapsed: a value above 0 is the verdict, with the reason in
// its context under "reason". Hosts act on it (core/runner stops a run
// with stop_on_collapse) rather than record it.
const MetricCollapsed = "collapsed"

// Array is a named tensor a plugin returns for the host to store (e.g. a
// spectrum).
type Array struct {
	Name    string
	T       *tensor.T
	Context map[string]string
}

// Output is what an encoder call returns: named tensors (views the host may
// read until its next call to the same plugin), scalars and metrics.
type Output struct {
	Tensors map[string]*tensor.T
	Scalars map[string]float64
	Metrics []Metric
}

// Target is how a loss wants the target branch computed.
type Target string

// Target modes.
const (
	TargetNone     Target = "none"
	TargetStopGrad Target = "stop-grad"
	TargetEMA      Target = "ema"
)

// LossSpec is what a loss declares it needs. The host asks for it after
// Configure, so it may depend on the plugin's configuration.
type LossSpec struct {
	// Predictor asks for a predictor head on top of the projector.
	Predictor bool
	// Target selects the target branch; for TargetEMA the host schedules
	// tau from TauBase to TauFinal with TauSchedule ("cosine" or "const").
	Target      Target
	TauBase     float64
	TauFinal    float64
	TauSchedule string
	// ProjectorDims and PredictorDims are default head sizes (hidden...,
	// out); the pipeline may override them.
	ProjectorDims []int
	PredictorDims []int
	// Inputs names the tensors Compute reads (e.g. z1, z2, p1, p2).
	Inputs []string
	// Options are free-form declarations for the host (e.g. "normalize").
	Options map[string]string
}

// LossResult is a loss's output.
type LossResult struct {
	Loss float64
	// Grads holds dLoss/dInput keyed by the input's name, each with the
	// input's shape. Allocate them with NewTensor to avoid a copy.
	Grads   map[string]*tensor.T
	Metrics []Metric
}

// Loss computes a self-supervised loss and its gradients on its inputs.
type Loss interface {
	Spec(ctx context.Context) (LossSpec, error)
	Compute(ctx context.Context, in LossInputs) (LossResult, error)
}

// Analyzer observes training steps and evaluation sets and returns
// metrics.
type Analyzer interface {
	// Observe measures a training step; arrays (e.g. spectra) are
	// recorded by the host next to the metrics.
	Observe(ctx context.Context, in StepTensors) ([]Metric, []Array, error)
	Evaluate(ctx context.Context, in EvalSet) ([]Metric, []Array, error)
}

// HeadSpec is one head of an encoder: an MLP reading Input ("backbone" or
// another head's name) with layer widths Dims.
type HeadSpec struct {
	Name  string
	Input string
	Dims  []int
}

// EncoderSpec is what the host asks an encoder to build: the backbone comes
// from the encoder's own configuration; heads and target come from the
// loss's LossSpec merged with the pipeline.
type EncoderSpec struct {
	// InputShape is one sample's shape, e.g. [3 32 32].
	InputShape []int
	Heads      []HeadSpec
	Target     Target
	Options    map[string]string
}

// Optim is one optimizer step's host-given parameters.
type Optim struct {
	Step Step
	LR   float64
	// GroupLR overrides LR per parameter group (e.g. "predictor").
	GroupLR map[string]float64
	// Scalars carries the rest, e.g. "tau" for the EMA target update.
	Scalars map[string]float64
}

// Encoder is a trainable network: backbone and heads.
type Encoder interface {
	Build(ctx context.Context, spec EncoderSpec) error
	// Forward runs a training forward pass on the views in in.Tensors (x1,
	// x2, ...) and returns the heads' outputs per view (z1, p1, t1, ...).
	Forward(ctx context.Context, in Input) (Output, error)
	// Backward takes gradients keyed by Forward's output names and
	// accumulates parameter gradients.
	Backward(ctx context.Context, grads Input) ([]Metric, error)
	// Step applies the optimizer (and the EMA target update) and clears
	// the gradients.
	Step(ctx context.Context, o Optim) ([]Metric, error)
	// Embed returns the backbone's embedding of in.Tensors["x"] in eval
	// mode.
	Embed(ctx context.Context, in Input) (*tensor.T, error)
	Save(ctx context.Context, path string) error
	Load(ctx context.Context, path string) error
}

// BackwardStep runs enc.Backward with grads and then, if it succeeded,
// enc.Step with o, and returns the metrics of both. Forward and Backward
// straddle the loss, so a training step needs at least two encoder calls;
// for an Encoder from Client.Encoder this makes it exactly two: the
// optimizer parameters ride on the Backward call (one RPC in a
// subprocess) and the plugin applies the step right after the backward
// pass. Encoder implementations need nothing for it. Other Encoders get
// the two calls.
func BackwardStep(ctx context.Context, enc Encoder, grads Input, o Optim) ([]Metric, error) {
	if bs, ok := enc.(interface {
		backwardStep(context.Context, Input, Optim) ([]Metric, error)
		oneCallStep() bool
	}); ok && bs.oneCallStep() {
		return bs.backwardStep(ctx, grads, o)
	}
	ms, err := enc.Backward(ctx, grads)
	if err != nil {
		return ms, err
	}
	sms, err := enc.Step(ctx, o)
	return append(ms, sms...), err
}

// Configurer is implemented by plugin components that take configuration.
// cfg is an object value of Plugin.Schema's implied type, defaults filled
// in. Return an *AttrError (see AttrErrorf) to point the user at one
// attribute.
type Configurer interface {
	Configure(ctx context.Context, cfg cty.Value) error
}

// Closer is implemented by plugin components that hold resources.
type Closer interface {
	Close(ctx context.Context) error
}

// Plugin is what a plugin binary serves: its identity, its configuration
// schema and an implementation of one or more kinds. Components that
// implement Configurer or Closer are configured and closed.
type Plugin struct {
	Name     string
	Version  string
	Schema   Schema
	Loss     Loss
	Analyzer Analyzer
	Encoder  Encoder
}

// Info returns the plugin's identity and the kinds it implements.
func (p *Plugin) Info() Info {
	info := Info{Name: p.Name, Version: p.Version, Protocol: serveProtocol}
	if p.Loss != nil {
		info.Kinds = append(info.Kinds, KindLoss)
	}
	if p.Analyzer != nil {
		info.Kinds = append(info.Kinds, KindAnalyzer)
	}
	if p.Encoder != nil {
		info.Kinds = append(info.Kinds, KindEncoder)
	}
	return info
}

// components lists the distinct non-nil components, for Configure and
// Close: one value implementing several kinds is configured once.
func (p *Plugin) components() []any {
	var out []any
	for _, c := range []any{p.Loss, p.Analyzer, p.Encoder} {
		if c == nil {
			continue
		}
		dup := false
		for _, o := range out {
			if reflect.TypeOf(o).Comparable() && reflect.TypeOf(c) == reflect.TypeOf(o) && o == c {
				dup = true
			}
		}
		if !dup {
			out = append(out, c)
		}
	}
	return out
}
