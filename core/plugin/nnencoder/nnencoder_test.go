package nnencoder

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/sslrun/sslrun/core/autodiff"
	"github.com/sslrun/sslrun/core/plugin"
	"github.com/sslrun/sslrun/core/tensor"
	"github.com/sslrun/sslrun/internal/tensortest"
)

func sameBits(t *testing.T, what string, got, want *tensor.T) {
	t.Helper()
	if !tensor.EqualShapes(got.Shape, want.Shape) {
		t.Fatalf("%s: shape %v, want %v", what, got.Shape, want.Shape)
	}
	for i := range want.Data {
		if math.Float32bits(got.Data[i]) != math.Float32bits(want.Data[i]) {
			t.Fatalf("%s[%d] = %v, want %v", what, i, got.Data[i], want.Data[i])
		}
	}
}

// TestForwardEMATarget trains a small ConvNet with an EMA target for a few
// steps and requires, at every step, Forward's outputs bit for bit as
// copies of the online and target networks give on fresh tapes: the
// target's pass, which runs first on the step's tape and reuses the
// online pass's buffers, must neither change its own outputs nor the
// online network's, also once the tape's arena and gradient pool are warm.
func TestForwardEMATarget(t *testing.T) {
	ctx := context.Background()
	spec := plugin.EncoderSpec{InputShape: []int{3, 8, 8}, Target: plugin.TargetEMA,
		Heads:   []plugin.HeadSpec{{Name: "projector", Dims: []int{16, 16}}, {Name: "predictor", Dims: []int{8, 16}}},
		Options: map[string]string{"backbone": `{"arch":"convnet","widths":[4,8],"strides":[1,2]}`, "seed": "3"}}
	e := New()
	if err := e.Build(ctx, spec); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for step := 0; step < 3; step++ {
		in := map[string]*tensor.T{"x1": tensortest.Randn(rng, 6, 3, 8, 8), "x2": tensortest.Randn(rng, 6, 3, 8, 8)}
		online, target := e.model.Clone(), e.target.Clone()
		want := map[string]*tensor.T{}
		for _, k := range []string{"1", "2"} {
			tp := autodiff.NewTape()
			_, z, p := online.Forward(tp, tp.Input(in["x"+k]))
			want["z"+k], want["p"+k] = z.Value, p.Value
			tp = autodiff.NewTape()
			tp.SetGrad(false)
			want["t"+k] = target.Projector.Forward(tp, target.Backbone.Forward(tp, tp.Input(in["x"+k]))).Value
		}
		out, err := e.Forward(ctx, plugin.Input{Tensors: in})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Tensors) != len(want) {
			t.Fatalf("step %d: outputs %d, want %d", step, len(out.Tensors), len(want))
		}
		for n, w := range want {
			sameBits(t, n, out.Tensors[n], w)
		}
		grads := map[string]*tensor.T{}
		for _, n := range []string{"z1", "z2", "p1", "p2"} {
			grads[n] = tensortest.Randn(rng, out.Tensors[n].Shape...)
		}
		if _, err := e.Backward(ctx, plugin.Input{Tensors: grads}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.Step(ctx, plugin.Optim{LR: 0.05, Scalars: map[string]float64{"tau": 0.9}}); err != nil {
			t.Fatal(err)
		}
	}
}
