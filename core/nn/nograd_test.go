package nn

import (
	"math/rand/v2"
	"testing"

	"github.com/sslrun/sslrun/core/autodiff"
	"github.com/sslrun/sslrun/core/tensor"
)

// TestForwardNoGradMatchesForward runs the W1-W3 networks (linear, conv,
// fused BN+ReLU, residual blocks, pooling, flatten views, MLP heads) both
// ways: the outputs and the BatchNorm running statistics they update must
// be identical bit for bit.
func TestForwardNoGradMatchesForward(t *testing.T) {
	for _, w := range []string{"mlp-mnist", "convnet-cifar", "resnet18-cifar"} {
		t.Run(w, func(t *testing.T) { testForwardNoGrad(t, w) })
	}
}

func testForwardNoGrad(t *testing.T, workload string) {
	spec, err := Workload(workload)
	if err != nil {
		t.Fatal(err)
	}
	shape, err := WorkloadInputShape(workload)
	if err != nil {
		t.Fatal(err)
	}
	build := func() *Model {
		m, err := Build(spec, rand.New(rand.NewPCG(1, 2)))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	a, b := build(), build()
	x := tensor.New(append([]int{4}, shape...)...)
	r := rand.New(rand.NewPCG(3, 4))
	for i := range x.Data {
		x.Data[i] = float32(r.NormFloat64())
	}
	tp := autodiff.NewTape()
	tps := [2]*autodiff.Tape{autodiff.NewTape(), autodiff.NewTape()}
	for round := range 2 { // the second round reuses the tapes' memory
		tp.Reset()
		tp.SetGrad(false)
		want := a.Projector.Forward(tp, a.Backbone.Forward(tp, tp.Input(x))).Value
		got := ForwardNoGrad(&tps, x, b.Backbone, b.Projector)
		if !tensor.EqualShapes(got.Shape, want.Shape) {
			t.Fatalf("round %d: shape %v, want %v", round, got.Shape, want.Shape)
		}
		for i := range want.Data {
			if got.Data[i] != want.Data[i] {
				t.Fatalf("round %d: output[%d] = %v, want %v", round, i, got.Data[i], want.Data[i])
			}
		}
	}
	sa, _, err := StateDict(a.Parts()...)
	if err != nil {
		t.Fatal(err)
	}
	sb, _, err := StateDict(b.Parts()...)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range sa {
		for i := range v.Data {
			if sb[k].Data[i] != v.Data[i] {
				t.Fatalf("%s[%d] = %v, want %v", k, i, sb[k].Data[i], v.Data[i])
			}
		}
	}
}
