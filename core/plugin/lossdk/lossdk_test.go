package lossdk_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"

	"github.com/sslrun/sslrun/core/autodiff"
	"github.com/sslrun/sslrun/core/plugin"
	"github.com/sslrun/sslrun/core/plugin/lossdk"
	"github.com/sslrun/sslrun/core/tensor"
	"github.com/sslrun/sslrun/internal/tensortest"
	"github.com/sslrun/sslrun/plugins/simsiam"
)

// simsiamFunc is the SimSiam loss as an SDK plugin: the forward is
// plugins/simsiam.Loss itself, the option a schema attribute.
func simsiamFunc() *lossdk.Func {
	opts := simsiam.Default()
	return &lossdk.Func{
		LossSpec: plugin.LossSpec{Predictor: true, Target: plugin.TargetStopGrad, Inputs: []string{"z1", "z2", "p1", "p2"}},
		Schema: plugin.Schema{Attributes: []plugin.Attribute{
			{Name: "stop_gradient", Type: cty.Bool, Default: cty.True, Description: "sg() on the target"},
		}},
		Config: func(cfg cty.Value) error {
			opts.StopGradient = lossdk.Bool(cfg, "stop_gradient")
			return nil
		},
		Forward: func(tp *autodiff.Tape, in map[string]*autodiff.Var, _ plugin.Step) (*autodiff.Var, map[string]float64, error) {
			l, err := simsiam.Loss(tp, in["z1"], in["z2"], in["p1"], in["p2"], opts)
			return l, map[string]float64{"neg_cos": float64(l.Item())}, err
		},
	}
}

// fixtures are the plugins the re-executed test binary serves.
var fixtures = map[string]func() plugin.Plugin{
	"simsiam-sdk": func() plugin.Plugin { return simsiamFunc().Plugin("simsiam-sdk", "0.1.0") },
	"nan": func() plugin.Plugin {
		return (&lossdk.Func{Forward: func(tp *autodiff.Tape, in map[string]*autodiff.Var, _ plugin.Step) (*autodiff.Var, map[string]float64, error) {
			return tp.Log(tp.Scale(tp.Sum(in["z1"]), -1)), nil, nil
		}}).Plugin("nan", "0.1.0")
	},
}

// The test binary doubles as the plugin binary (see core/plugin's tests).
func TestMain(m *testing.M) {
	for n, f := range fixtures {
		plugin.Bundled[n] = f
	}
	plugin.ServeIfBundled()
	os.Exit(m.Run())
}

// direct is the reference: plugins/simsiam.Loss on a fresh tape with leaves.
func direct(t *testing.T, in map[string]*tensor.T, o simsiam.Options) (float64, map[string]*tensor.T) {
	t.Helper()
	tp := autodiff.NewTape()
	v := map[string]*autodiff.Var{}
	for _, n := range []string{"z1", "z2", "p1", "p2"} {
		v[n] = tp.Leaf(in[n])
	}
	l, err := simsiam.Loss(tp, v["z1"], v["z2"], v["p1"], v["p2"], o)
	if err != nil {
		t.Fatal(err)
	}
	if err := tp.Backward(l); err != nil {
		t.Fatal(err)
	}
	g := map[string]*tensor.T{}
	for n, x := range v {
		g[n] = x.Grad.Clone()
	}
	return float64(l.Item()), g
}

func newHost(t *testing.T) *plugin.Host {
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

func launch(t *testing.T, h *plugin.Host, name, mode string) *plugin.Client {
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

func configure(t *testing.T, c *plugin.Client, src string) {
	t.Helper()
	f, diags := hclsyntax.ParseConfig([]byte(src), "p.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if diags := c.ConfigureBody(context.Background(), f.Body, nil); diags.HasErrors() {
		t.Fatalf("configure: %v", diags)
	}
}

// TestSimSiamMatchesDirect runs the SimSiam loss through the SDK, in process
// and in a subprocess, and requires the loss and gradients of calling
// plugins/simsiam.Loss on a tape directly, bit for bit.
func TestSimSiamMatchesDirect(t *testing.T) {
	ctx := context.Background()
	for _, mode := range []string{"in-process", "subprocess"} {
		for _, sg := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/stop_gradient=%v", mode, sg), func(t *testing.T) {
				h := newHost(t)
				c := launch(t, h, "simsiam-sdk", mode)
				configure(t, c, fmt.Sprintf("stop_gradient = %v\n", sg))
				opts := simsiam.Default()
				opts.StopGradient = sg
				rng := rand.New(rand.NewPCG(7, uint64(len(mode))))
				for step := int64(0); step < 3; step++ {
					if err := h.Reset(); err != nil {
						t.Fatal(err)
					}
					in := map[string]*tensor.T{}
					for _, n := range []string{"z1", "z2", "p1", "p2"} {
						x, err := h.NewTensor(64, 32)
						if err != nil {
							t.Fatal(err)
						}
						x.CopyFrom(tensortest.Randn(rng, 64, 32))
						in[n] = x
					}
					wantLoss, wantGrads := direct(t, in, opts)
					res, err := c.Loss().Compute(ctx, plugin.LossInputs{Step: plugin.Step{Step: step, Train: true}, Tensors: in})
					if err != nil {
						t.Fatal(err)
					}
					if res.Loss != wantLoss {
						t.Errorf("step %d: loss %v, want %v", step, res.Loss, wantLoss)
					}
					for n, w := range wantGrads {
						g := res.Grads[n]
						if g == nil {
							t.Fatalf("step %d: no gradient on %s", step, n)
						}
						for i := range w.Data {
							if math.Float32bits(g.Data[i]) != math.Float32bits(w.Data[i]) {
								t.Fatalf("step %d: grad %s[%d] = %v, want %v", step, n, i, g.Data[i], w.Data[i])
							}
						}
					}
					if len(res.Metrics) != 1 || res.Metrics[0].Name != "neg_cos" || res.Metrics[0].Value != wantLoss {
						t.Errorf("metrics %+v", res.Metrics)
					}
				}
			})
		}
	}
}

func TestErrors(t *testing.T) {
	ctx := context.Background()
	for _, mode := range []string{"in-process", "subprocess"} {
		t.Run(mode, func(t *testing.T) {
			h := newHost(t)
			c := launch(t, h, "nan", mode)
			configure(t, c, "")
			z, err := tensor.FromSlice([]float32{1, 2, 3, 4}, 2, 2)
			if err != nil {
				t.Fatal(err)
			}
			nan, err := c.Loss().Compute(ctx, plugin.LossInputs{Step: plugin.Step{Step: 5}, Tensors: map[string]*tensor.T{"z1": z}})
			if err != nil || !math.IsNaN(nan.Loss) || len(nan.Grads) != 0 {
				t.Fatalf("NaN loss: %+v, err %v; want the NaN without gradients", nan, err)
			}
			// The plugin is still usable after a non-finite loss.
			z.Fill(-1)
			res, err := c.Loss().Compute(ctx, plugin.LossInputs{Tensors: map[string]*tensor.T{"z1": z}})
			if err != nil || res.Loss != float64(float32(math.Log(4))) {
				t.Fatalf("loss %v err %v", res.Loss, err)
			}
			for _, g := range res.Grads["z1"].Data {
				if g != -0.25 {
					t.Fatalf("grads %v", res.Grads["z1"].Data)
				}
			}
		})
	}
	f := simsiamFunc()
	_, err := f.Compute(ctx, plugin.LossInputs{Tensors: map[string]*tensor.T{"z1": tensor.New(2, 2)}})
	if err == nil || !strings.Contains(err.Error(), `missing input "z2"`) {
		t.Fatalf("err = %v", err)
	}
}

// TestNoGrad checks that inputs listed in NoGrad get no gradient and that
// the others are unchanged.
func TestNoGrad(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	in := map[string]*tensor.T{"z1": tensortest.Randn(rng, 8, 4), "z2": tensortest.Randn(rng, 8, 4), "p1": tensortest.Randn(rng, 8, 4), "p2": tensortest.Randn(rng, 8, 4)}
	wantLoss, want := direct(t, in, simsiam.Default())
	f := simsiamFunc()
	f.NoGrad = []string{"z1", "z2"}
	res, err := f.Compute(context.Background(), plugin.LossInputs{Tensors: in})
	if err != nil {
		t.Fatal(err)
	}
	if res.Loss != wantLoss || len(res.Grads) != 2 || res.Grads["z1"] != nil {
		t.Fatalf("loss %v grads %v", res.Loss, res.Grads)
	}
	for _, n := range []string{"p1", "p2"} {
		if fmt.Sprint(res.Grads[n].Data) != fmt.Sprint(want[n].Data) {
			t.Errorf("grad %s differs", n)
		}
	}
}

// BenchmarkCompute is the W1 SimSiam loss call (four 512x512 inputs) through
// the SDK, called directly: the tape is reused, so the allocations left are
// the gradient tensors NewTensor allocates outside a host.
func BenchmarkCompute(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	in := map[string]*tensor.T{}
	for _, n := range []string{"z1", "z2", "p1", "p2"} {
		in[n] = tensortest.Randn(rng, 512, 512)
	}
	f := simsiamFunc()
	f.Forward = func(tp *autodiff.Tape, in map[string]*autodiff.Var, _ plugin.Step) (*autodiff.Var, map[string]float64, error) {
		l, err := simsiam.Loss(tp, in["z1"], in["z2"], in["p1"], in["p2"], simsiam.Default())
		return l, nil, err
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.Compute(ctx, plugin.LossInputs{Tensors: in}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkComputeHost is the same call through a host, in process and in a
// subprocess: the gradients now come from the plugin's output arena, so the
// SDK's own allocations are gone and what is left is the transport's.
func BenchmarkComputeHost(b *testing.B) {
	for _, mode := range []string{"in-process", "subprocess"} {
		b.Run(mode, func(b *testing.B) {
			h, err := plugin.NewHost(plugin.HostOptions{})
			if err != nil {
				b.Fatal(err)
			}
			defer h.Close()
			var c *plugin.Client
			if mode == "in-process" {
				c, err = h.InProcess(fixtures["simsiam-sdk"]())
			} else {
				c, err = h.Launch(context.Background(), plugin.LaunchSpec{Bundled: "simsiam-sdk"})
			}
			if err != nil {
				b.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(1, 2))
			in := map[string]*tensor.T{}
			for _, n := range []string{"z1", "z2", "p1", "p2"} {
				x, err := h.NewTensor(512, 512)
				if err != nil {
					b.Fatal(err)
				}
				x.CopyFrom(tensortest.Randn(rng, 512, 512))
				in[n] = x
			}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Loss().Compute(ctx, plugin.LossInputs{Tensors: in}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
