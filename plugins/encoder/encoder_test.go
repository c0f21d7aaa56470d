package encoder_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sslrun/sslrun/core/autodiff"
	"github.com/sslrun/sslrun/core/nn"
	"github.com/sslrun/sslrun/core/optim"
	"github.com/sslrun/sslrun/core/plugin"
	"github.com/sslrun/sslrun/core/plugin/lossdk"
	"github.com/sslrun/sslrun/core/tensor"
	"github.com/sslrun/sslrun/core/train"
	"github.com/sslrun/sslrun/internal/tensortest"
	"github.com/sslrun/sslrun/plugins/encoder"
	"github.com/sslrun/sslrun/plugins/simsiam"
)

// simsiamLoss is plugins/simsiam.Loss through the loss SDK. z1, z2 reach
// the loss only under a stop-gradient.
func simsiamLoss() *lossdk.Func {
	return &lossdk.Func{
		LossSpec: plugin.LossSpec{Predictor: true, Target: plugin.TargetStopGrad, Inputs: []string{"z1", "z2", "p1", "p2"}},
		NoGrad:   []string{"z1", "z2"},
		Forward: func(tp *autodiff.Tape, in map[string]*autodiff.Var, _ plugin.Step) (*autodiff.Var, map[string]float64, error) {
			l, err := simsiam.Loss(tp, in["z1"], in["z2"], in["p1"], in["p2"], simsiam.Default())
			return l, nil, err
		},
	}
}

// emaCos is a BYOL-like loss on the target outputs: -cos(p1, t2) - cos(p2, t1).
func emaCos(tp *autodiff.Tape, p1, p2, t1, t2 *autodiff.Var) *autodiff.Var {
	return tp.Neg(tp.Add(tp.Mean(tp.CosineSimilarity(p1, tp.Detach(t2))), tp.Mean(tp.CosineSimilarity(p2, tp.Detach(t1)))))
}

func emaLoss() *lossdk.Func {
	return &lossdk.Func{
		LossSpec: plugin.LossSpec{Predictor: true, Target: plugin.TargetEMA, Inputs: []string{"p1", "p2", "t1", "t2"}},
		NoGrad:   []string{"t1", "t2"},
		Forward: func(tp *autodiff.Tape, in map[string]*autodiff.Var, _ plugin.Step) (*autodiff.Var, map[string]float64, error) {
			return emaCos(tp, in["p1"], in["p2"], in["t1"], in["t2"]), nil, nil
		},
	}
}

var fixtures = map[string]func() plugin.Plugin{
	"encoder":     encoder.Plugin,
	"simsiam-sdk": func() plugin.Plugin { return simsiamLoss().Plugin("simsiam-sdk", "0.1.0") },
	"ema-cos":     func() plugin.Plugin { return emaLoss().Plugin("ema-cos", "0.1.0") },
	// The timed variants report each call's own duration inside the plugin
	// as the metric compute_ns, so that a benchmark can tell the transport
	// (host wall time minus that) from the work.
	"encoder-timed": func() plugin.Plugin {
		return plugin.Plugin{Name: "encoder-timed", Version: "0.1.0", Encoder: timedEncoder{encoder.New()}}
	},
	"simsiam-timed": func() plugin.Plugin {
		return plugin.Plugin{Name: "simsiam-timed", Version: "0.1.0", Loss: timedLoss{simsiamLoss()}}
	},
}

const computeMetric = "compute_ns"

func since(t0 time.Time) plugin.Metric {
	return plugin.Metric{Name: computeMetric, Value: float64(time.Since(t0))}
}

type timedEncoder struct{ plugin.Encoder }

func (e timedEncoder) Forward(ctx context.Context, in plugin.Input) (plugin.Output, error) {
	t0 := time.Now()
	out, err := e.Encoder.Forward(ctx, in)
	out.Metrics = append(out.Metrics, since(t0))
	return out, err
}

func (e timedEncoder) Backward(ctx context.Context, in plugin.Input) ([]plugin.Metric, error) {
	t0 := time.Now()
	ms, err := e.Encoder.Backward(ctx, in)
	return append(ms, since(t0)), err
}

func (e timedEncoder) Step(ctx context.Context, o plugin.Optim) ([]plugin.Metric, error) {
	t0 := time.Now()
	ms, err := e.Encoder.Step(ctx, o)
	return append(ms, since(t0)), err
}

type timedLoss struct{ plugin.Loss }

func (l timedLoss) Compute(ctx context.Context, in plugin.LossInputs) (plugin.LossResult, error) {
	t0 := time.Now()
	r, err := l.Loss.Compute(ctx, in)
	r.Metrics = append(r.Metrics, since(t0))
	return r, err
}

// The test binary doubles as the plugin binary, as sslrun does.
func TestMain(m *testing.M) {
	for n, f := range fixtures {
		plugin.Bundled[n] = f
	}
	plugin.ServeIfBundled()
	os.Exit(m.Run())
}

// tinySpec is a small SimSiam-shaped network: mlp backbone 20 -> 32 -> 32,
// projector 32 -> 16 -> 16 (last BN plain), predictor 16 -> 4 -> 16.
func tinySpec(target plugin.Target, opts map[string]string) plugin.EncoderSpec {
	o := map[string]string{"backbone": `{"arch":"mlp","widths":[32,32]}`, "seed": "3", "momentum": "0.9", "weight_decay": "5e-4"}
	for k, v := range opts {
		o[k] = v
	}
	return plugin.EncoderSpec{InputShape: []int{20}, Target: target, Options: o, Heads: []plugin.HeadSpec{
		{Name: "projector", Input: "backbone", Dims: []int{16, 16}},
		{Name: "predictor", Input: "projector", Dims: []int{4, 16}},
	}}
}

func TestModelSpec(t *testing.T) {
	w1, _ := nn.Workload("mlp-mnist")
	tests := []struct {
		name string
		spec plugin.EncoderSpec
		want nn.ModelSpec
		err  string
	}{
		{"workload", plugin.EncoderSpec{InputShape: []int{784}, Options: map[string]string{"workload": "mlp-mnist"}}, w1, ""},
		{"tiny", tinySpec("", nil), nn.ModelSpec{
			Backbone:  nn.BackboneSpec{Arch: "mlp", InDim: 20, Widths: []int{32, 32}},
			Projector: nn.HeadSpec{Kind: "mlp", Dims: []int{32, 16, 16}, LastBN: "plain"},
			Predictor: nn.HeadSpec{Kind: "mlp", Dims: []int{16, 4, 16}, LastBias: true}}, ""},
		{"arch without predictor", plugin.EncoderSpec{InputShape: []int{3, 8, 8},
			Options: map[string]string{"arch": "convnet", "projector_last_bn": "none"},
			Heads:   []plugin.HeadSpec{{Name: "projector", Dims: []int{8}}}}, nn.ModelSpec{
			Backbone:  nn.BackboneSpec{Arch: "convnet", InChannels: 3},
			Projector: nn.HeadSpec{Kind: "mlp", Dims: []int{512, 8}, LastBN: "none"},
			Predictor: nn.HeadSpec{Kind: "identity"}}, ""},
		{"model json", plugin.EncoderSpec{Options: map[string]string{"model": `{"backbone":{"arch":"mlp","in_dim":4,"widths":[8]},"projector":{"dims":[8,2]},"predictor":{"kind":"identity"}}`}},
			nn.ModelSpec{Backbone: nn.BackboneSpec{Arch: "mlp", InDim: 4, Widths: []int{8}}, Projector: nn.HeadSpec{Dims: []int{8, 2}},
				Predictor: nn.HeadSpec{Kind: "identity"}}, ""},
		{"no network", plugin.EncoderSpec{}, nn.ModelSpec{}, "no network"},
		{"typo", plugin.EncoderSpec{Options: map[string]string{"arhc": "mlp"}}, nn.ModelSpec{}, `unknown option "arhc"`},
		{"bad arch", plugin.EncoderSpec{Options: map[string]string{"arch": "vgg"}}, nn.ModelSpec{}, "unknown backbone"},
		{"no projector", plugin.EncoderSpec{Options: map[string]string{"arch": "mlp"}}, nn.ModelSpec{}, "no projector"},
		{"workload shape", plugin.EncoderSpec{InputShape: []int{3, 32, 32}, Options: map[string]string{"workload": "mlp-mnist"}}, nn.ModelSpec{}, "takes inputs [784]"},
		{"bad json", plugin.EncoderSpec{Options: map[string]string{"model": `{"backbone":{"arch":"mlp","depth":3}}`}}, nn.ModelSpec{}, "unknown field"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := encoder.ModelSpec(tc.spec)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", tc.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func newHost(t testing.TB) *plugin.Host {
	t.Helper()
	h, err := plugin.NewHost(plugin.HostOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Errorf("host close: %v", err)
		}
	})
	return h
}

func launch(t testing.TB, h *plugin.Host, name, mode string) *plugin.Client {
	t.Helper()
	var c *plugin.Client
	var err error
	if mode == "in-process" {
		c, err = h.InProcess(fixtures[name]())
	} else {
		c, err = h.Launch(context.Background(), plugin.LaunchSpec{Bundled: name})
	}
	if err != nil {
		t.Fatalf("launch %s %s: %v", name, mode, err)
	}
	return c
}

// pipe is a host's training step with the encoder and the loss as plugins:
// views into the host arena, encoder outputs to the loss, gradients back.
type pipe struct {
	h          *plugin.Host
	enc, loss  *plugin.Client
	inputs     []string
	views, lin map[string]*tensor.T
	optim      plugin.Optim
	// wall and compute are the last step's host-side duration of each call
	// (Forward, Compute, Backward carrying the Step) and the plugins' own
	// compute_ns metrics for them (timed fixtures only).
	wall, compute [3]time.Duration
}

// timed runs call i, recording its wall time and the compute_ns metric it
// returned.
func (p *pipe) timed(i int, f func() ([]plugin.Metric, error)) error {
	t0 := time.Now()
	ms, err := f()
	p.wall[i], p.compute[i] = time.Since(t0), 0
	for _, m := range ms {
		if m.Name == computeMetric {
			p.compute[i] += time.Duration(m.Value)
		}
	}
	return err
}

func newPipe(h *plugin.Host, enc, loss *plugin.Client, inputs []string) *pipe {
	return &pipe{h: h, enc: enc, loss: loss, inputs: inputs, views: map[string]*tensor.T{}, lin: map[string]*tensor.T{},
		optim: plugin.Optim{Scalars: map[string]float64{}}}
}

func (p *pipe) step(ctx context.Context, step int64, x1, x2 *tensor.T, lr, tau float64) (float64, error) {
	if err := p.h.Reset(); err != nil {
		return 0, err
	}
	for n, x := range map[string]*tensor.T{"x1": x1, "x2": x2} {
		v, err := p.h.NewTensor(x.Shape...)
		if err != nil {
			return 0, err
		}
		copy(v.Data, x.Data)
		p.views[n] = v
	}
	st := plugin.Step{Step: step, Train: true}
	var out plugin.Output
	if err := p.timed(0, func() (ms []plugin.Metric, err error) {
		out, err = p.enc.Encoder().Forward(ctx, plugin.Input{Step: st, Tensors: p.views})
		return out.Metrics, err
	}); err != nil {
		return 0, err
	}
	for _, n := range p.inputs {
		p.lin[n] = out.Tensors[n]
	}
	var res plugin.LossResult
	if err := p.timed(1, func() (ms []plugin.Metric, err error) {
		res, err = p.loss.Loss().Compute(ctx, plugin.LossInputs{Step: st, Tensors: p.lin})
		return res.Metrics, err
	}); err != nil {
		return 0, err
	}
	p.optim.Step, p.optim.LR, p.optim.Scalars["tau"] = st, lr, tau
	if err := p.timed(2, func() ([]plugin.Metric, error) {
		return plugin.BackwardStep(ctx, p.enc.Encoder(), plugin.Input{Step: st, Tensors: res.Grads}, p.optim)
	}); err != nil {
		return 0, err
	}
	return res.Loss, nil
}

// reference is the same training in process with core/train.Step.
func reference(t *testing.T, spec plugin.EncoderSpec, loss train.LossFunc) *train.Step {
	t.Helper()
	ms, err := encoder.ModelSpec(spec)
	if err != nil {
		t.Fatal(err)
	}
	m, err := nn.Build(ms, rand.New(rand.NewPCG(3, 0x6d6f64656c)))
	if err != nil {
		t.Fatal(err)
	}
	s, err := train.NewStep(train.Config{Model: m, Loss: loss, EMATarget: spec.Target == plugin.TargetEMA,
		Optimizer: optim.SGD, Base: optim.Group{Momentum: 0.9, WeightDecay: 5e-4}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func close32(a, b float64) bool { return math.Abs(a-b) <= 1e-6*(1+math.Abs(b)) }

// TestTrainsLikeCoreTrain trains the tiny network for a few steps with the
// encoder plugin and a loss plugin, in process and as subprocesses, and
// requires core/train.Step's losses and final embeddings.
func TestTrainsLikeCoreTrain(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name, loss string
		target     plugin.Target
		inputs     []string
		ref        train.LossFunc
	}{
		{"simsiam", "simsiam-sdk", plugin.TargetStopGrad, []string{"z1", "z2", "p1", "p2"},
			func(tp *autodiff.Tape, o *train.Outputs) (*autodiff.Var, error) {
				return simsiam.Loss(tp, o.Z1, o.Z2, o.P1, o.P2, simsiam.Default())
			}},
		{"ema", "ema-cos", plugin.TargetEMA, []string{"p1", "p2", "t1", "t2"},
			func(tp *autodiff.Tape, o *train.Outputs) (*autodiff.Var, error) {
				return emaCos(tp, o.P1, o.P2, o.T1, o.T2), nil
			}},
	}
	for _, tc := range cases {
		for _, mode := range []string{"in-process", "subprocess"} {
			t.Run(tc.name+"/"+mode, func(t *testing.T) {
				spec := tinySpec(tc.target, nil)
				ref := reference(t, spec, tc.ref)
				h := newHost(t)
				enc := launch(t, h, "encoder", mode)
				if err := enc.Encoder().Build(ctx, spec); err != nil {
					t.Fatal(err)
				}
				p := newPipe(h, enc, launch(t, h, tc.loss, mode), tc.inputs)
				rng := rand.New(rand.NewPCG(11, 12))
				exact := true
				for step := int64(0); step < 4; step++ {
					x1, x2 := tensortest.Randn(rng, 16, 20), tensortest.Randn(rng, 16, 20)
					want, err := ref.Run(x1, x2, 0.05, 0.9)
					if err != nil {
						t.Fatal(err)
					}
					got, err := p.step(ctx, step, x1, x2, 0.05, 0.9)
					if err != nil {
						t.Fatal(err)
					}
					exact = exact && got == float64(want)
					// In process the arithmetic is the same code in the same
					// order: bit-identical. A subprocess should be too.
					if mode == "in-process" && got != float64(want) || !close32(got, float64(want)) {
						t.Fatalf("step %d: loss %v, core/train %v", step, got, want)
					}
				}
				t.Logf("losses bit-identical to core/train: %v", exact)
				x := tensortest.Randn(rng, 8, 20)
				hx, _ := h.NewTensor(8, 20)
				copy(hx.Data, x.Data)
				emb, err := enc.Encoder().Embed(ctx, plugin.Input{Tensors: map[string]*tensor.T{"x": hx}})
				if err != nil {
					t.Fatal(err)
				}
				ref.Model.SetTrain(false)
				tp := autodiff.NewTape()
				tp.SetGrad(false)
				want := ref.Model.Backbone.Forward(tp, tp.Input(x))
				if !tensor.EqualShapes(emb.Shape, want.Shape()) {
					t.Fatalf("embedding shape %v, want %v", emb.Shape, want.Shape())
				}
				for i := range want.Value.Data {
					if !close32(float64(emb.Data[i]), float64(want.Value.Data[i])) {
						t.Fatalf("embedding[%d] = %v, want %v", i, emb.Data[i], want.Value.Data[i])
					}
				}
			})
		}
	}
}

// TestSaveLoad saves a trained encoder (through a client, both modes),
// loads it into a fresh one and requires the same next step.
func TestSaveLoad(t *testing.T) {
	ctx := context.Background()
	for _, mode := range []string{"in-process", "subprocess"} {
		t.Run(mode, func(t *testing.T) {
			spec := tinySpec(plugin.TargetEMA, nil)
			h := newHost(t)
			enc := launch(t, h, "encoder", mode)
			if err := enc.Encoder().Build(ctx, spec); err != nil {
				t.Fatal(err)
			}
			p := newPipe(h, enc, launch(t, h, "ema-cos", mode), []string{"p1", "p2", "t1", "t2"})
			rng := rand.New(rand.NewPCG(5, 6))
			for step := int64(0); step < 2; step++ {
				if _, err := p.step(ctx, step, tensortest.Randn(rng, 16, 20), tensortest.Randn(rng, 16, 20), 0.1, 0.9); err != nil {
					t.Fatal(err)
				}
			}
			path := filepath.Join(t.TempDir(), "enc.safetensors")
			if err := enc.Encoder().Save(ctx, path); err != nil {
				t.Fatal(err)
			}
			fresh, err := h.InProcess(encoder.Plugin())
			if err != nil {
				t.Fatal(err)
			}
			other := tinySpec(plugin.TargetEMA, map[string]string{"seed": "99"}) // different init, same shapes
			if err := fresh.Encoder().Build(ctx, other); err != nil {
				t.Fatal(err)
			}
			if err := fresh.Encoder().Load(ctx, path); err != nil {
				t.Fatal(err)
			}
			q := newPipe(h, fresh, launch(t, h, "ema-cos", "in-process"), p.inputs)
			x1, x2 := tensortest.Randn(rng, 16, 20), tensortest.Randn(rng, 16, 20)
			for step := int64(2); step < 4; step++ {
				want, err := p.step(ctx, step, x1, x2, 0.1, 0.9)
				if err != nil {
					t.Fatal(err)
				}
				got, err := q.step(ctx, step, x1, x2, 0.1, 0.9)
				if err != nil {
					t.Fatal(err)
				}
				if got != want {
					t.Fatalf("step %d after load: loss %v, original %v", step, got, want)
				}
			}
			// A checkpoint of another network is refused.
			wrong, _ := h.InProcess(encoder.Plugin())
			if err := wrong.Encoder().Build(ctx, tinySpec(plugin.TargetEMA, map[string]string{"backbone": `{"arch":"mlp","widths":[8]}`})); err != nil {
				t.Fatal(err)
			}
			if err := wrong.Encoder().Load(ctx, path); err == nil || !strings.Contains(err.Error(), "saved network") {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	ctx := context.Background()
	e := encoder.New()
	if _, err := e.Forward(ctx, plugin.Input{}); err == nil || !strings.Contains(err.Error(), "not built") {
		t.Fatalf("err = %v", err)
	}
	if err := e.Build(ctx, tinySpec(plugin.TargetEMA, nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Backward(ctx, plugin.Input{}); err == nil || !strings.Contains(err.Error(), "without a Forward") {
		t.Fatalf("err = %v", err)
	}
	x := tensortest.Randn(rand.New(rand.NewPCG(1, 1)), 4, 20)
	if _, err := e.Forward(ctx, plugin.Input{Tensors: map[string]*tensor.T{"x1": x, "y": x}}); err == nil || !strings.Contains(err.Error(), `unexpected input "y"`) {
		t.Fatalf("err = %v", err)
	}
	out, err := e.Forward(ctx, plugin.Input{Tensors: map[string]*tensor.T{"x1": x, "x2": x}})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Tensors) != 6 {
		t.Fatalf("outputs %v", len(out.Tensors))
	}
	if _, err := e.Backward(ctx, plugin.Input{Tensors: map[string]*tensor.T{"q1": x}}); err == nil || !strings.Contains(err.Error(), `"q1"`) {
		t.Fatalf("err = %v", err)
	}
	if _, err := e.Step(ctx, plugin.Optim{LR: 0.1}); err == nil || !strings.Contains(err.Error(), "tau") {
		t.Fatalf("err = %v", err)
	}
}

// TestGroupLR checks that a host-fixed predictor lr reaches the optimizer:
// with lr 0 for the encoder group only the predictor moves.
func TestGroupLR(t *testing.T) {
	ctx := context.Background()
	e := encoder.New()
	if err := e.Build(ctx, tinySpec(plugin.TargetStopGrad, nil)); err != nil {
		t.Fatal(err)
	}
	f := simsiamLoss()
	rng := rand.New(rand.NewPCG(2, 2))
	before := map[string][]float32{}
	for _, p := range e.Model().Params() {
		before[p.Name] = append([]float32(nil), p.Var.Value.Data...)
	}
	out, err := e.Forward(ctx, plugin.Input{Tensors: map[string]*tensor.T{"x1": tensortest.Randn(rng, 16, 20), "x2": tensortest.Randn(rng, 16, 20)}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := f.Compute(ctx, plugin.LossInputs{Tensors: out.Tensors})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Backward(ctx, plugin.Input{Tensors: res.Grads}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Step(ctx, plugin.Optim{LR: 0, GroupLR: map[string]float64{"predictor": 0.5}}); err != nil {
		t.Fatal(err)
	}
	for _, p := range e.Model().Params() {
		moved := fmt.Sprint(before[p.Name]) != fmt.Sprint(p.Var.Value.Data)
		if pred := strings.HasPrefix(p.Name, "predictor."); moved != pred {
			t.Errorf("%s: moved %v", p.Name, moved)
		}
	}
}
