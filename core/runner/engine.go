package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/sslrun/sslrun/core/optim"
	"github.com/sslrun/sslrun/core/pipeline"
	"github.com/sslrun/sslrun/core/plugin"
	"github.com/sslrun/sslrun/core/tensor"
	"github.com/sslrun/sslrun/core/train"
)

// EncoderPlugin is the name of the encoder plugin the runner trains: the
// binary registers it in plugin.Bundled (cmd/sslrun bundles
// plugins/encoder).
const EncoderPlugin = "encoder"

// engine is one run's plugins: the host with its arena, the encoder, the
// loss and the analyzers, and the buffers a step reuses. A training step
// is Encoder.Forward, Loss.Compute, when due Analyzer.Observe, and
// Encoder.Backward carrying the optimizer step (plugin.BackwardStep): two
// encoder RPCs, one loss RPC and one per due analyzer. The batch is copied
// into the host arena once, and every other tensor is a view of a plugin's
// output arena (the transport copies it into the host arena when it is
// passed on).
type engine struct {
	host      *plugin.Host
	encC      *plugin.Client
	enc       plugin.Encoder
	lossC     *plugin.Client
	loss      plugin.Loss
	spec      plugin.LossSpec
	inputs    []string
	analyzers []analyzerEntry
	predLR    float64 // the fixed predictor lr, 0 for none

	views, lin, grads, obs map[string]*tensor.T
	optim                  plugin.Optim

	// plugins is what the run records about its plugins.
	plugins []PluginRecord
}

type analyzerEntry struct {
	name  string
	every int
	c     *plugin.Client
	a     plugin.Analyzer
}

// startEngine starts the run's plugins and builds the encoder. On error
// everything started is closed again.
func startEngine(ctx context.Context, env *pluginEnv, cfg *pipeline.Config, inputShape []int, withAnalyzers bool) (_ *engine, err error) {
	h, err := plugin.NewHost(plugin.HostOptions{Logger: &env.log})
	if err != nil {
		return nil, err
	}
	e := &engine{host: h, views: map[string]*tensor.T{}, lin: map[string]*tensor.T{}, grads: map[string]*tensor.T{},
		obs: map[string]*tensor.T{}, optim: plugin.Optim{GroupLR: map[string]float64{}, Scalars: map[string]float64{}}}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	if e.lossC, err = env.start(ctx, h, cfg.Loss.Name, plugin.KindLoss); err != nil {
		return nil, err
	}
	if err := e.lossC.Configure(ctx, cfg.Loss.Config); err != nil {
		return nil, configErr(fmt.Errorf("loss %q: %w", cfg.Loss.Name, err))
	}
	e.record(env, "loss", cfg.Loss.Name, e.lossC)
	e.loss = e.lossC.Loss()
	if e.spec, err = e.loss.Spec(ctx); err != nil {
		return nil, err
	}
	switch e.spec.Target {
	case plugin.TargetEMA:
		if s := e.spec.TauSchedule; s != "" && s != "cosine" {
			return nil, &ConfigError{Err: fmt.Errorf("loss %q: tau schedule %q is not supported (cosine only)", cfg.Loss.Name, s)}
		}
	case plugin.TargetNone, plugin.TargetStopGrad, "":
	default:
		return nil, &ConfigError{Err: fmt.Errorf("loss %q: unknown target %q", cfg.Loss.Name, e.spec.Target)}
	}
	if e.spec.Predictor && cfg.Encoder.Predictor.Kind == "identity" {
		return nil, &ConfigError{Err: fmt.Errorf("loss %q needs a predictor; add `predictor { dims = [...] }` to the encoder block", cfg.Loss.Name)}
	}
	e.inputs = e.spec.Inputs
	if len(e.inputs) == 0 {
		e.inputs = []string{"z1", "z2"}
		if e.spec.Predictor {
			e.inputs = append(e.inputs, "p1", "p2")
		}
		if e.spec.Target == plugin.TargetEMA {
			e.inputs = append(e.inputs, "t1", "t2")
		}
	}

	if e.encC, err = env.start(ctx, h, EncoderPlugin, plugin.KindEncoder); err != nil {
		return nil, err
	}
	e.record(env, "encoder", EncoderPlugin, e.encC)
	e.enc = e.encC.Encoder()
	es, err := encoderSpec(cfg, inputShape, e.spec.Target)
	if err != nil {
		return nil, err
	}
	if err := e.enc.Build(ctx, es); err != nil {
		return nil, configErr(fmt.Errorf("encoder: %w", err))
	}
	if cfg.Optimizer.PredictorFixedLR {
		e.predLR = cfg.Optimizer.LR
	}

	if withAnalyzers {
		for _, a := range cfg.Analyzers {
			c, err := env.start(ctx, h, a.Name, plugin.KindAnalyzer)
			if err != nil {
				return nil, err
			}
			if err := c.Configure(ctx, a.Config); err != nil {
				return nil, configErr(fmt.Errorf("analyzer %q: %w", a.Name, err))
			}
			e.record(env, "analyzer", a.Name, c)
			e.analyzers = append(e.analyzers, analyzerEntry{name: a.Name, every: max(1, a.Every), c: c, a: c.Analyzer()})
		}
	}
	return e, nil
}

// record notes a started plugin's identity for the run's record.
func (e *engine) record(env *pluginEnv, role, name string, c *plugin.Client) {
	e.plugins = append(e.plugins, PluginRecord{Role: role, Name: name, Version: c.Info().Version, SHA256: env.checksum(name)})
}

// provenance lists the run's plugins in the order they started: the
// loss, the encoder, the analyzers (nil before the engine started).
func (e *engine) provenance() []PluginRecord {
	if e == nil {
		return nil
	}
	return e.plugins
}

// configErr makes a plugin's rejection of its configuration a ConfigError
// (the user's to fix); other errors pass through.
func configErr(err error) error {
	var ce *plugin.ConfigError
	var ae *plugin.AttrError
	var call *plugin.CallError
	if errors.As(err, &ce) || errors.As(err, &ae) || (errors.As(err, &call) && errors.Is(call.Cause, plugin.ErrFailed)) {
		return &ConfigError{Err: err}
	}
	return err
}

// encoderSpec is what the encoder plugin builds: the pipeline's network
// as written (the "model" option, heads included), initialised from the
// run seed, with the pipeline's optimizer settings.
func encoderSpec(cfg *pipeline.Config, inputShape []int, target plugin.Target) (plugin.EncoderSpec, error) {
	model, err := json.Marshal(cfg.Encoder.ModelSpec())
	if err != nil {
		return plugin.EncoderSpec{}, fmt.Errorf("encoder spec: %w", err)
	}
	group, err := json.Marshal(cfg.Optimizer.Group("encoder"))
	if err != nil {
		return plugin.EncoderSpec{}, fmt.Errorf("encoder spec: %w", err)
	}
	alg := cfg.Optimizer.Name
	if alg == "" {
		alg = optim.SGD.String()
	}
	return plugin.EncoderSpec{InputShape: inputShape, Target: target, Options: map[string]string{
		"model": string(model), "seed": strconv.FormatInt(cfg.Seed, 10), "optimizer": alg, "group": string(group),
	}}, nil
}

// close closes every plugin (killing those that do not exit) and unmaps
// the arena.
func (e *engine) close() error {
	if e == nil || e.host == nil {
		return nil
	}
	return e.host.Close()
}

// stage copies x into the host arena as name, reshaped to shape.
func (e *engine) stage(name string, x *tensor.T, shape []int) error {
	v, err := e.host.NewTensor(shape...)
	if err != nil {
		return err
	}
	copy(v.Data, x.Data)
	e.views[name] = v
	return nil
}

// observation is what the analyzers due at a step returned.
type observation struct {
	name    string
	metrics []plugin.Metric
	arrays  []Array
}

// step trains one step on the two views x1, x2 (already shaped for the
// backbone): forward, loss, backward and optimizer step, with the
// analyzers due at st.Step observing the step's tensors before the
// backward pass (their inputs are the forward outputs and the loss's
// gradients, which later calls invalidate). A NaN or Inf loss leaves the
// parameters unchanged and returns a *train.NonFiniteLossError.
func (e *engine) step(ctx context.Context, st plugin.Step, x1, x2 *tensor.T, lr, tau float64, obs []observation) (float32, []observation, error) {
	if err := e.host.Reset(); err != nil {
		return 0, obs, err
	}
	if err := e.stage("x1", x1, x1.Shape); err != nil {
		return 0, obs, err
	}
	if err := e.stage("x2", x2, x2.Shape); err != nil {
		return 0, obs, err
	}
	out, err := e.enc.Forward(ctx, plugin.Input{Step: st, Tensors: e.views})
	if err != nil {
		return 0, obs, err
	}
	clear(e.lin)
	for _, n := range e.inputs {
		t := out.Tensors[n]
		if t == nil {
			return 0, obs, fmt.Errorf("loss input %q is not an encoder output (no predictor or target network?)", n)
		}
		e.lin[n] = t
	}
	res, err := e.loss.Compute(ctx, plugin.LossInputs{Step: st, Tensors: e.lin})
	if err != nil {
		return 0, obs, err
	}
	loss := float32(res.Loss)
	if math.IsNaN(res.Loss) || math.IsInf(res.Loss, 0) || math.IsInf(float64(loss), 0) {
		return loss, obs, &train.NonFiniteLossError{Loss: loss}
	}
	clear(e.grads)
	for n, g := range res.Grads {
		if _, ok := out.Tensors[n]; ok {
			e.grads[n] = g
		}
	}
	if len(e.grads) == 0 {
		return loss, obs, fmt.Errorf("the loss returned no gradient on any encoder output (inputs %v)", e.inputs)
	}
	if obs, err = e.observe(ctx, st, out, res, obs); err != nil {
		return loss, obs, err
	}
	o := &e.optim
	o.Step, o.LR = st, lr
	clear(o.GroupLR)
	clear(o.Scalars)
	if e.predLR > 0 {
		o.GroupLR["predictor"] = e.predLR
	}
	if e.spec.Target == plugin.TargetEMA {
		o.Scalars["tau"] = tau
	}
	// One call (one RPC) for the backward pass and the optimizer step.
	if _, err := plugin.BackwardStep(ctx, e.enc, plugin.Input{Step: st, Tensors: e.grads}, *o); err != nil {
		return loss, obs, err
	}
	return loss, obs, nil
}

// observe calls the analyzers due at st.Step with the step's tensors: the
// encoder outputs by name and the loss's gradients as "grad/<name>".
// Arrays are copied out (the plugin's views die with its next call).
func (e *engine) observe(ctx context.Context, st plugin.Step, out plugin.Output, res plugin.LossResult, obs []observation) ([]observation, error) {
	obs = obs[:0]
	for _, a := range e.analyzers {
		if st.Step%int64(a.every) != 0 {
			continue
		}
		if len(e.obs) == 0 {
			for n, t := range out.Tensors {
				e.obs[n] = t
			}
			for n, g := range res.Grads {
				e.obs["grad/"+n] = g
			}
		}
		ms, arrays, err := a.a.Observe(ctx, plugin.StepTensors{Step: st, Tensors: e.obs})
		if err != nil {
			clear(e.obs)
			return obs, err
		}
		obs = append(obs, observation{name: a.name, metrics: ms, arrays: copyArrays(a.name, arrays)})
	}
	clear(e.obs)
	return obs, nil
}

// copyArrays converts a plugin's arrays into recorder arrays keyed
// "<analyzer>/<name>".
func copyArrays(prefix string, arrays []plugin.Array) []Array {
	out := make([]Array, 0, len(arrays))
	for _, a := range arrays {
		d := make([]float64, len(a.T.Data))
		for i, v := range a.T.Data {
			d[i] = float64(v)
		}
		out = append(out, Array{Key: prefix + "/" + a.Name, Shape: append([]int(nil), a.T.Shape...), Data: d, Context: a.Context})
	}
	return out
}

// analyzerMetrics converts an analyzer's metrics into recorder metrics
// keyed "<analyzer>/<name>" and returns its collapse verdict: the
// plugin.MetricCollapsed metric, which is not recorded (with
// Options.StopOnCollapse it stops the run).
func analyzerMetrics(prefix string, ms []plugin.Metric) (out []Metric, collapsed bool, reason string) {
	out = make([]Metric, 0, len(ms))
	for _, m := range ms {
		if m.Name == plugin.MetricCollapsed {
			if m.Value > 0 {
				collapsed, reason = true, m.Context["reason"]
			}
			continue
		}
		out = append(out, Metric{Key: prefix + "/" + m.Name, Value: m.Value, Context: m.Context})
	}
	return out, collapsed, reason
}
