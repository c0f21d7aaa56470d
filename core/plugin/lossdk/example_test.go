package lossdk_test

import (
	"context"
	"fmt"

	"github.com/sslrun/sslrun/core/autodiff"
	"github.com/sslrun/sslrun/core/plugin"
	"github.com/sslrun/sslrun/core/plugin/lossdk"
	"github.com/sslrun/sslrun/core/tensor"
)

// A loss is its forward pass; Compute returns the gradients on the inputs.
// Here 0.5*mean((p1 - sg(z2))^2) over 2x2 inputs: dL/dp1 = (p1 - z2)/4.
func ExampleFunc() {
	f := &lossdk.Func{
		LossSpec: plugin.LossSpec{Predictor: true, Target: plugin.TargetStopGrad, Inputs: []string{"p1", "z2"}},
		NoGrad:   []string{"z2"},
		Forward: func(tp *autodiff.Tape, in map[string]*autodiff.Var, _ plugin.Step) (*autodiff.Var, map[string]float64, error) {
			d := tp.Sub(in["p1"], in["z2"])
			return tp.Scale(tp.Mean(tp.Square(d)), 0.5), nil, nil
		},
	}
	p1, _ := tensor.FromSlice([]float32{1, 2, 3, 4}, 2, 2)
	z2, _ := tensor.FromSlice([]float32{1, 1, 1, 1}, 2, 2)
	res, err := f.Compute(context.Background(), plugin.LossInputs{Tensors: map[string]*tensor.T{"p1": p1, "z2": z2}})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(res.Loss, res.Grads["p1"].Data, res.Grads["z2"] == nil)
	// Output: 1.75 [0 0.25 0.5 0.75] true
}
