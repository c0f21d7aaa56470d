// Package nnencoder is the builtin encoder plugin: a core/nn model (backbone,
// projector, predictor, and for BYOL-style losses an EMA target network)
// with its optimizer, behind the plugin.Encoder interface, so that a host
// can train it in process or in a subprocess with the same results.
//
// # What Build builds
//
// The network comes from plugin.EncoderSpec.Options (strings), in this order
// of precedence:
//
//   - "model": a JSON nn.ModelSpec, the whole network as written; spec.Heads
//     are then ignored.
//   - otherwise a backbone from "workload" (an nn.Workload name such as
//     "mlp-mnist", with its heads), "backbone" (a JSON nn.BackboneSpec) or
//     "arch" ("mlp", "convnet", "resnet18", "resnet34" with the
//     architecture's defaults), whose input size (mlp) or channels
//     (convnet/resnet) is taken from spec.InputShape when not given. Then
//     spec.Heads replace the heads: "projector" (input "backbone") and
//     "predictor" (input "projector"), whose Dims are the layer widths after
//     the input (hidden..., out). The projector ends in
//     BatchNorm1d(affine=False) ("projector_last_bn": "plain", SimSiam's
//     recipe; or "none", "affine"); the predictor ends in a biased Linear.
//     Without a workload, a missing predictor is the identity and a missing
//     projector is an error.
//
// The weights are initialised as PyTorch does from a PCG stream seeded with
// "seed" (default 0), the stream core/runner uses, so the same seed gives
// the same network in process and here.
//
// The optimizer: "optimizer" ("sgd" default, "lars", "adamw"), "momentum"
// (0.9 for sgd/lars), "nesterov", "weight_decay" (sgd/lars 0, adamw 0.01),
// "no_decay_bias_norm", "eta" (lars, 1e-3) and "predictor_lr" (a fixed,
// unscheduled predictor lr, SimSiam's recipe); or "group", a JSON
// optim.Group (without params) holding every setting at once, which is
// what core/runner passes (the other optimizer options must then be
// absent). Groups are "encoder"
// (backbone + projector) and "predictor", as core/train.Groups makes them;
// plugin.Optim.GroupLR["<group>"] fixes a group's lr from the host.
//
// # Outputs and gradients
//
// Forward reads views x1, x2, ... and returns, per view k, zk (projector),
// pk (predictor, when there is one) and tk (target projector, with
// spec.Target == plugin.TargetEMA, computed without gradient). The tape of
// the forward pass is kept until Backward, which takes dLoss/d(output) keyed
// by output name and backpropagates their sum: it records the scalar
// sum_k <out_k, g_k> (g constant) on the same tape and calls Backward on it,
// which puts exactly g_k on out_k. Step applies the optimizer (and the EMA
// update with o.Scalars["tau"]) and zeroes the gradients. One Backward per
// Forward.
//
// # Checkpoints
//
// Save writes one safetensors file: the model's state_dict under
// "backbone.", "projector.", "predictor." (PyTorch names), the target's
// under "target.backbone." and "target.projector.", and the optimizer state
// under "optim." (optim.Optimizer.Save), with the model spec as JSON in the
// metadata. Load restores all of it into an encoder built with the same
// spec.
package nnencoder

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/sslrun/sslrun/core/autodiff"
	"github.com/sslrun/sslrun/core/nn"
	"github.com/sslrun/sslrun/core/optim"
	"github.com/sslrun/sslrun/core/plugin"
	"github.com/sslrun/sslrun/core/safetensors"
	"github.com/sslrun/sslrun/core/tensor"
	"github.com/sslrun/sslrun/core/train"
)

// Name and Version identify the plugin.
const (
	Name    = "encoder"
	Version = "0.1.0"
)

// Plugin returns the encoder plugin, for plugin.Bundled, Host.InProcess or
// plugin.Serve.
func Plugin() plugin.Plugin {
	return plugin.Plugin{Name: Name, Version: Version, Encoder: New()}
}

// seedStream is the PCG stream constant core/runner seeds its model with.
const seedStream = 0x6d6f64656c

// Encoder implements plugin.Encoder. The zero value is not usable; call New.
type Encoder struct {
	mu sync.Mutex

	spec   nn.ModelSpec
	model  *nn.Model
	target *nn.Model
	pred   bool // the model has a real predictor: Forward returns pk
	opt    *optim.Optimizer
	ema    *optim.EMA
	groups []optim.Group // as built, to return to when the host stops fixing an lr
	fixed  []float64     // per group: the host-fixed lr applied (0: none)

	tp, etp   *autodiff.Tape
	outs      map[string]*autodiff.Var // last Forward's outputs on tp
	result    map[string]*tensor.T
	forwarded bool
	views     []string
}

var _ plugin.Encoder = (*Encoder)(nil)

// New returns an encoder awaiting Build.
func New() *Encoder {
	e := &Encoder{tp: autodiff.NewTape(), etp: autodiff.NewTape(),
		outs: map[string]*autodiff.Var{}, result: map[string]*tensor.T{}}
	// Backward needs only the parameters' gradients: recycling the
	// intermediates' buffers roughly halves the step's memory.
	e.tp.SetReuseGrads(true)
	return e
}

// Model returns the online network (nil before Build), for in-process
// hosts and tests.
func (e *Encoder) Model() *nn.Model { return e.model }

// options is a typed view of EncoderSpec.Options.
type options map[string]string

func (o options) float(k string, def float64) (float64, error) {
	s, ok := o[k]
	if !ok || s == "" {
		return def, nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("option %s=%q: not a number", k, s)
	}
	return v, nil
}

// seed reads "seed" as an integer (a run's int64 seed, bit for bit) or,
// for hand-written specs, an integral number.
func (o options) seed() (uint64, error) {
	s := o["seed"]
	if s == "" {
		return 0, nil
	}
	if v, err := strconv.ParseInt(s, 10, 64); err == nil {
		return uint64(v), nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v != float64(int64(v)) {
		return 0, fmt.Errorf("option seed=%q: not an integer", s)
	}
	return uint64(int64(v)), nil
}

// base returns the optimizer's base settings: option "group" when given
// (the separate optimizer options are then rejected), else alg's defaults
// with the separate options applied.
func (o options) base(alg optim.Algorithm) (optim.Group, error) {
	if s := o["group"]; s != "" {
		for _, k := range []string{"momentum", "nesterov", "weight_decay", "no_decay_bias_norm", "eta"} {
			if o[k] != "" {
				return optim.Group{}, fmt.Errorf("option %s: not allowed with option group, which sets it", k)
			}
		}
		var g optim.Group
		dec := json.NewDecoder(strings.NewReader(s))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&g); err != nil {
			return optim.Group{}, fmt.Errorf("option group: %w", err)
		}
		if len(g.Params) > 0 {
			return optim.Group{}, errors.New("option group: must not list params")
		}
		return g, nil
	}
	g := optim.Defaults(alg)
	var err error
	if alg != optim.AdamW {
		if g.Momentum, err = o.float("momentum", 0.9); err != nil {
			return g, err
		}
		if g.Nesterov, err = o.bool("nesterov"); err != nil {
			return g, err
		}
	}
	if g.WeightDecay, err = o.float("weight_decay", g.WeightDecay); err != nil {
		return g, err
	}
	if g.NoDecayBiasNorm, err = o.bool("no_decay_bias_norm"); err != nil {
		return g, err
	}
	if alg == optim.LARS {
		if g.Eta, err = o.float("eta", g.Eta); err != nil {
			return g, err
		}
	}
	return g, nil
}

func (o options) bool(k string) (bool, error) {
	s, ok := o[k]
	if !ok || s == "" {
		return false, nil
	}
	v, err := strconv.ParseBool(s)
	if err != nil {
		return false, fmt.Errorf("option %s=%q: not a bool", k, s)
	}
	return v, nil
}

// known lists the options Build reads; anything else is an error, so that a
// typo does not silently train another network.
var known = []string{"model", "workload", "backbone", "arch", "projector_last_bn", "seed",
	"optimizer", "momentum", "nesterov", "weight_decay", "no_decay_bias_norm", "eta", "predictor_lr", "group"}

// ModelSpec resolves the network an EncoderSpec describes (see the package
// doc), without building it.
func ModelSpec(spec plugin.EncoderSpec) (nn.ModelSpec, error) {
	o := options(spec.Options)
	for k := range o {
		if !contains(known, k) {
			return nn.ModelSpec{}, fmt.Errorf("encoder: unknown option %q (known: %s)", k, strings.Join(known, ", "))
		}
	}
	if s := o["model"]; s != "" {
		var ms nn.ModelSpec
		dec := json.NewDecoder(strings.NewReader(s))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&ms); err != nil {
			return nn.ModelSpec{}, fmt.Errorf("encoder: option model: %w", err)
		}
		return ms, nil
	}
	var ms nn.ModelSpec
	fromWorkload := false
	switch {
	case o["workload"] != "":
		w, err := nn.Workload(o["workload"])
		if err != nil {
			return nn.ModelSpec{}, fmt.Errorf("encoder: %w", err)
		}
		if len(spec.InputShape) > 0 {
			want, _ := nn.WorkloadInputShape(o["workload"])
			if fmt.Sprint(want) != fmt.Sprint(spec.InputShape) {
				return nn.ModelSpec{}, fmt.Errorf("encoder: workload %s takes inputs %v, the spec says %v", o["workload"], want, spec.InputShape)
			}
		}
		ms, fromWorkload = w, true
	case o["backbone"] != "":
		dec := json.NewDecoder(strings.NewReader(o["backbone"]))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&ms.Backbone); err != nil {
			return nn.ModelSpec{}, fmt.Errorf("encoder: option backbone: %w", err)
		}
	case o["arch"] != "":
		ms.Backbone.Arch = o["arch"]
	default:
		return nn.ModelSpec{}, errors.New(`encoder: no network: set option "model", "workload", "backbone" or "arch"`)
	}
	if !fromWorkload && len(spec.InputShape) > 0 {
		switch ms.Backbone.Arch {
		case "mlp":
			if ms.Backbone.InDim == 0 {
				ms.Backbone.InDim = tensor.Numel(spec.InputShape)
			}
		default:
			if ms.Backbone.InChannels == 0 {
				ms.Backbone.InChannels = spec.InputShape[0]
			}
		}
	}
	_, feat, err := nn.BuildBackbone(ms.Backbone, nil)
	if err != nil {
		return nn.ModelSpec{}, fmt.Errorf("encoder: %w", err)
	}
	lastBN := o["projector_last_bn"]
	if lastBN == "" {
		lastBN = nn.LastBNPlain
	}
	var proj, pred *plugin.HeadSpec
	for i := range spec.Heads {
		h := &spec.Heads[i]
		switch h.Name {
		case "projector":
			if h.Input != "" && h.Input != "backbone" {
				return nn.ModelSpec{}, fmt.Errorf("encoder: the projector reads %q; only \"backbone\" is supported", h.Input)
			}
			proj = h
		case "predictor":
			if h.Input != "" && h.Input != "projector" {
				return nn.ModelSpec{}, fmt.Errorf("encoder: the predictor reads %q; only \"projector\" is supported", h.Input)
			}
			pred = h
		default:
			return nn.ModelSpec{}, fmt.Errorf("encoder: unknown head %q (want projector, predictor)", h.Name)
		}
	}
	switch {
	case proj != nil:
		ms.Projector = nn.HeadSpec{Kind: "mlp", Dims: append([]int{feat}, proj.Dims...), LastBN: lastBN}
	case !fromWorkload:
		return nn.ModelSpec{}, errors.New("encoder: no projector head in the spec")
	}
	zdim := feat
	if d := ms.Projector.Dims; len(d) > 0 {
		zdim = d[len(d)-1]
	}
	switch {
	case pred != nil && len(pred.Dims) > 0:
		ms.Predictor = nn.HeadSpec{Kind: "mlp", Dims: append([]int{zdim}, pred.Dims...), LastBias: true}
	case pred != nil || !fromWorkload:
		ms.Predictor = nn.HeadSpec{Kind: "identity"}
	}
	return ms, nil
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// Build builds the network and optimizer spec describes. Building again
// replaces both.
func (e *Encoder) Build(_ context.Context, spec plugin.EncoderSpec) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	ms, err := ModelSpec(spec)
	if err != nil {
		return err
	}
	o := options(spec.Options)
	seed, err := o.seed()
	if err != nil {
		return fmt.Errorf("encoder: %w", err)
	}
	m, err := nn.Build(ms, rand.New(rand.NewPCG(seed, seedStream)))
	if err != nil {
		return fmt.Errorf("encoder: %w", err)
	}
	algName := o["optimizer"]
	if algName == "" {
		algName = "sgd"
	}
	alg, err := optim.ParseAlgorithm(algName)
	if err != nil {
		return fmt.Errorf("encoder: %w", err)
	}
	base, err := o.base(alg)
	if err != nil {
		return fmt.Errorf("encoder: %w", err)
	}
	predLR, err := o.float("predictor_lr", 0)
	if err != nil {
		return fmt.Errorf("encoder: %w", err)
	}
	opt, err := optim.New(alg, train.Groups(m, base, predLR))
	if err != nil {
		return fmt.Errorf("encoder: optimizer: %w", err)
	}
	var target *nn.Model
	var ema *optim.EMA
	switch spec.Target {
	case plugin.TargetEMA:
		target = m.Clone()
		online := train.OptimParams(nn.Params(m.Backbone, "backbone."))
		online = append(online, train.OptimParams(nn.Params(m.Projector, "projector."))...)
		tgt := train.OptimParams(nn.Params(target.Backbone, "target.backbone."))
		tgt = append(tgt, train.OptimParams(nn.Params(target.Projector, "target.projector."))...)
		if ema, err = optim.NewEMA(online, tgt); err != nil {
			return fmt.Errorf("encoder: target network: %w", err)
		}
	case "", plugin.TargetNone, plugin.TargetStopGrad:
	default:
		return fmt.Errorf("encoder: unknown target %q", spec.Target)
	}
	e.spec, e.model, e.target, e.opt, e.ema = ms, m, target, opt, ema
	e.pred = ms.Predictor.Kind != "identity"
	e.fixed = make([]float64, opt.Groups())
	e.groups = make([]optim.Group, opt.Groups())
	for i := range e.groups {
		e.groups[i] = opt.Group(i)
	}
	e.forwarded = false
	e.opt.ZeroGrad()
	return nil
}

// viewNames returns the view suffixes of in ("1", "2", ... for x1, x2, ...)
// in numeric order, reusing buf.
func viewNames(buf []string, ts map[string]*tensor.T) ([]string, error) {
	buf = buf[:0]
	for n := range ts {
		k, ok := strings.CutPrefix(n, "x")
		if !ok || k == "" {
			return nil, fmt.Errorf("encoder: unexpected input %q (want views x1, x2, ...)", n)
		}
		if _, err := strconv.Atoi(k); err != nil {
			return nil, fmt.Errorf("encoder: unexpected input %q (want views x1, x2, ...)", n)
		}
		buf = append(buf, k)
	}
	sort.Slice(buf, func(i, j int) bool {
		a, _ := strconv.Atoi(buf[i])
		b, _ := strconv.Atoi(buf[j])
		return a < b
	})
	return buf, nil
}

func (e *Encoder) built() error {
	if e.model == nil {
		return errors.New("encoder: not built (call Build first)")
	}
	return nil
}

// Forward runs the training forward pass of every view and keeps the tape
// for Backward. Outputs are allocated with plugin.NewTensor.
func (e *Encoder) Forward(ctx context.Context, in plugin.Input) (plugin.Output, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.built(); err != nil {
		return plugin.Output{}, err
	}
	views, err := viewNames(e.views, in.Tensors)
	if err != nil {
		return plugin.Output{}, err
	}
	if len(views) == 0 {
		return plugin.Output{}, errors.New("encoder: no views (want x1, x2, ...)")
	}
	e.views = views
	tp := e.tp
	clear(e.outs)
	clear(e.result)
	if e.target != nil {
		// The target first, on the step's tape (see nn.Model.Project);
		// its projections are copied out to the output arena.
		for _, k := range views {
			v := e.target.Project(tp, in.Tensors["x"+k])
			t := plugin.NewTensor(ctx, v.Shape...)
			copy(t.Data, v.Data)
			e.result["t"+k] = t
		}
	}
	tp.Reset()
	tp.SetGrad(true)
	// As core/train.Step: every view through the online network.
	for _, k := range views {
		x := tp.Input(in.Tensors["x"+k]) // Input never writes: read-only views are fine
		_, z, p := e.model.Forward(tp, x)
		e.outs["z"+k] = z
		if e.pred {
			e.outs["p"+k] = p
		}
	}
	for _, k := range views {
		for _, n := range [...]string{"z" + k, "p" + k} {
			if v, ok := e.outs[n]; ok {
				t := plugin.NewTensor(ctx, v.Shape()...)
				copy(t.Data, v.Value.Data)
				e.result[n] = t
			}
		}
	}
	e.forwarded = true
	return plugin.Output{Tensors: e.result}, nil
}

// Backward backpropagates the gradients on Forward's outputs into the
// parameters' gradients. Gradients on target outputs (tk) are ignored: the
// target is not trained by gradient.
func (e *Encoder) Backward(_ context.Context, grads plugin.Input) ([]plugin.Metric, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.built(); err != nil {
		return nil, err
	}
	if !e.forwarded {
		return nil, errors.New("encoder: Backward without a Forward since the last Backward")
	}
	tp := e.tp
	names := make([]string, 0, len(grads.Tensors))
	for n := range grads.Tensors {
		names = append(names, n)
	}
	sort.Strings(names) // a fixed order makes the accumulation order fixed
	var total *autodiff.Var
	for _, n := range names {
		g := grads.Tensors[n]
		v, ok := e.outs[n]
		if !ok {
			if _, target := e.result[n]; target {
				continue // a target output (tk): not trained by gradient
			}
			return nil, fmt.Errorf("encoder: gradient on %q, which Forward did not return", n)
		}
		if !tensor.EqualShapes(g.Shape, v.Shape()) {
			return nil, fmt.Errorf("encoder: gradient on %q has shape %v, the output %v", n, g.Shape, v.Shape())
		}
		if !v.RequiresGrad() {
			continue
		}
		// sum_ij out_ij * g_ij with g a constant: its gradient on out is g.
		a, b := v, tp.Input(g)
		if len(v.Shape()) != 2 {
			a, b = tp.Reshape(a, 1, v.Len()), tp.Reshape(b, 1, v.Len())
		}
		s := tp.Sum(tp.RowDot(a, b))
		if total == nil {
			total = s
		} else {
			total = tp.Add(total, s)
		}
	}
	e.forwarded = false
	if total == nil {
		return nil, nil
	}
	if err := tp.Backward(total); err != nil {
		return nil, fmt.Errorf("encoder: backward: %w", err)
	}
	return nil, nil
}

// Step applies the optimizer at o.LR (a group named in o.GroupLR at that
// fixed lr; a group not named there as built, e.g. with the "predictor_lr"
// option), then, with a target network, the EMA update with
// o.Scalars["tau"], and zeroes the gradients.
func (e *Encoder) Step(_ context.Context, o plugin.Optim) ([]plugin.Metric, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.built(); err != nil {
		return nil, err
	}
	tau, hasTau := o.Scalars["tau"]
	if e.ema != nil && (!hasTau || tau < 0 || tau > 1) {
		return nil, fmt.Errorf("encoder: the EMA target needs scalar tau in [0, 1], got %v (given: %v)", tau, hasTau)
	}
	for i := range e.fixed {
		lr := o.GroupLR[e.groups[i].Name]
		if lr == e.fixed[i] {
			continue
		}
		g := e.groups[i]
		if lr > 0 {
			g.Static, g.FixedLR = true, lr
		}
		if err := e.opt.SetGroup(i, g); err != nil {
			return nil, fmt.Errorf("encoder: group lr: %w", err)
		}
		e.fixed[i] = lr
	}
	e.opt.Step(o.LR)
	if e.ema != nil {
		e.ema.Update(tau)
	}
	e.opt.ZeroGrad()
	return nil, nil
}

// Embed returns the backbone features of in.Tensors["x"] in eval mode
// (BatchNorm running statistics), without recording gradients; with
// in.Name "z", the projector's output instead.
func (e *Encoder) Embed(ctx context.Context, in plugin.Input) (*tensor.T, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.built(); err != nil {
		return nil, err
	}
	x := in.Tensors["x"]
	if x == nil {
		return nil, errors.New("encoder: Embed needs input x")
	}
	var f *autodiff.Var
	tp := e.etp
	tp.Reset()
	tp.SetGrad(false)
	switch in.Name {
	case "", "backbone":
		e.model.Backbone.SetTrain(false)
		defer e.model.Backbone.SetTrain(true)
		f = e.model.Backbone.Forward(tp, tp.Input(x))
	case "z":
		e.model.SetTrain(false)
		defer e.model.SetTrain(true)
		f = e.model.Projector.Forward(tp, e.model.Backbone.Forward(tp, tp.Input(x)))
	default:
		return nil, fmt.Errorf("encoder: Embed: unknown feature %q (want backbone or z)", in.Name)
	}
	t := plugin.NewTensor(ctx, f.Shape()...)
	copy(t.Data, f.Value.Data)
	return t, nil
}

// parts are the stored modules: the model's and the target's.
func (e *Encoder) parts() []nn.Part {
	ps := e.model.Parts()
	if e.target != nil {
		ps = append(ps, nn.Part{Prefix: "target.backbone.", Module: e.target.Backbone},
			nn.Part{Prefix: "target.projector.", Module: e.target.Projector})
	}
	return ps
}

// format tags checkpoint files.
const format = "sslrun-encoder-1"

// Save writes the model, target and optimizer state to one safetensors
// file (see the package doc).
func (e *Encoder) Save(_ context.Context, path string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.built(); err != nil {
		return err
	}
	f32, i64, err := nn.StateDict(e.parts()...)
	if err != nil {
		return fmt.Errorf("encoder: save %s: %w", path, err)
	}
	ost, oi := e.opt.Save("optim.")
	for k, v := range ost {
		f32[k] = v
	}
	for k, v := range oi {
		i64[k] = v
	}
	spec, err := json.Marshal(e.spec)
	if err != nil {
		return fmt.Errorf("encoder: save %s: %w", path, err)
	}
	md := map[string]string{"format": format, "spec": string(spec), "optimizer": e.opt.Algorithm().String(),
		"target": strconv.FormatBool(e.target != nil)}
	if err := safetensors.WriteFileMixed(path, f32, i64, md); err != nil {
		return fmt.Errorf("encoder: save %s: %w", path, err)
	}
	return nil
}

// Load restores a file written by Save into this encoder, which must have
// been built with the same network, target and optimizer.
func (e *Encoder) Load(_ context.Context, path string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.built(); err != nil {
		return err
	}
	f, err := safetensors.ReadFile(path)
	if err != nil {
		return fmt.Errorf("encoder: load: %w", err)
	}
	spec, _ := json.Marshal(e.spec)
	switch {
	case f.Metadata["format"] != format:
		return fmt.Errorf("encoder: load %s: not an encoder checkpoint (format %q)", path, f.Metadata["format"])
	case f.Metadata["spec"] != string(spec):
		return fmt.Errorf("encoder: load %s: saved network %s, this encoder is %s", path, f.Metadata["spec"], spec)
	case f.Metadata["target"] != strconv.FormatBool(e.target != nil) || f.Metadata["optimizer"] != e.opt.Algorithm().String():
		return fmt.Errorf("encoder: load %s: saved target=%s optimizer=%s, this encoder target=%v optimizer=%s", path,
			f.Metadata["target"], f.Metadata["optimizer"], e.target != nil, e.opt.Algorithm())
	}
	// Check every entry before copying any, so a failed load changes nothing.
	var entries []nn.Entry
	for _, p := range e.parts() {
		entries = append(entries, nn.Entries(p.Module, p.Prefix)...)
	}
	for pass := 0; pass < 2; pass++ {
		if pass == 1 {
			// The optimizer checks its state before copying any of it.
			if err := e.opt.Load(f, "optim."); err != nil {
				return fmt.Errorf("encoder: load %s: %w", path, err)
			}
		}
		for _, en := range entries {
			if en.Count != nil {
				v, _, err := f.Int64s(en.Name)
				if err != nil || len(v) != 1 {
					return fmt.Errorf("encoder: load %s: %s: %v", path, en.Name, err)
				}
				if pass == 1 {
					*en.Count = v[0]
				}
				continue
			}
			t, err := f.Tensor(en.Name)
			if err != nil {
				return fmt.Errorf("encoder: load %s: %w", path, err)
			}
			dst := en.Tensor()
			if !tensor.EqualShapes(t.Shape, dst.Shape) {
				return fmt.Errorf("encoder: load %s: %s has shape %v, want %v", path, en.Name, t.Shape, dst.Shape)
			}
			if pass == 1 {
				copy(dst.Data, t.Data)
			}
		}
	}
	e.opt.ZeroGrad()
	e.forwarded = false
	return nil
}
