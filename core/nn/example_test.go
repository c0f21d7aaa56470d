package nn_test

import (
	"fmt"
	"log"
	"math/rand/v2"

	"github.com/sslrun/sslrun/core/autodiff"
	"github.com/sslrun/sslrun/core/nn"
	"github.com/sslrun/sslrun/core/tensor"
)

// A SimSiam step on a small MLP model: build from a spec, forward two views
// (BatchNorm statistics per view), symmetric negative cosine with
// stop-gradient, backward into the parameters' Grad.
func Example() {
	spec := nn.ModelSpec{
		Backbone:  nn.BackboneSpec{Arch: "mlp", InDim: 8, Widths: []int{16}},
		Projector: nn.HeadSpec{Kind: "mlp", Dims: []int{16, 16, 16}, LastBN: nn.LastBNPlain},
		Predictor: nn.HeadSpec{Kind: "mlp", Dims: []int{16, 4, 16}, LastBias: true},
	}
	m, err := nn.Build(spec, rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		log.Fatal(err)
	}
	x1, x2 := tensor.New(4, 8), tensor.New(4, 8)
	for i := range x1.Data {
		x1.Data[i], x2.Data[i] = float32(i%7)-3, float32(i%5)-2
	}
	tp := autodiff.NewTape()
	tp.Reset()
	_, z1, p1 := m.Forward(tp, tp.Input(x1))
	_, z2, p2 := m.Forward(tp, tp.Input(x2))
	loss := tp.Scale(tp.Add(
		tp.Mean(tp.CosineSimilarity(p1, tp.Detach(z2))),
		tp.Mean(tp.CosineSimilarity(p2, tp.Detach(z1)))), -0.5)
	if err := tp.Backward(loss); err != nil {
		log.Fatal(err)
	}
	for _, p := range m.Params()[:3] {
		fmt.Println(p.Name, p.Kind, p.Kind.IsBiasOrNorm(), p.Var.Value.Shape)
	}
	// Output:
	// backbone.0.weight weight false [16 8]
	// backbone.1.weight norm_weight true [16]
	// backbone.1.bias norm_bias true [16]
}
