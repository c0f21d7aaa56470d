package autodiff_test

import (
	"fmt"

	"github.com/sslrun/sslrun/core/autodiff"
	"github.com/sslrun/sslrun/core/tensor"
)

// A SimSiam-style step: a linear predictor on two views, the symmetric
// negative cosine loss with stop-gradient on the targets, and Backward
// accumulating into the parameter's Grad.
func Example() {
	w := autodiff.NewParam("w", mustT([]float32{1, 0, 0, 1}, 2, 2)) // identity predictor
	z1 := mustT([]float32{1, 0, 0, 1}, 2, 2)
	z2 := mustT([]float32{1, 1, -1, 1}, 2, 2)

	tp := autodiff.NewTape()
	for step := 0; step < 2; step++ {
		tp.Reset() // every Var of the previous step is invalid from here on
		a, b := tp.Input(z1), tp.Input(z2)
		p1, p2 := tp.Linear(a, w, nil), tp.Linear(b, w, nil)
		c1 := tp.Mean(tp.CosineSimilarity(p1, tp.Detach(b)))
		c2 := tp.Mean(tp.CosineSimilarity(p2, tp.Detach(a)))
		loss := tp.Scale(tp.Add(c1, c2), -0.5)
		if err := tp.Backward(loss); err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("step %d: loss %.4f, grad %v\n", step, loss.Item(), w.Grad.Shape)
		w.Grad.Zero() // the optimizer's job
	}

	// Evaluation: no-grad mode records nothing.
	tp.Reset()
	prev := tp.SetGrad(false)
	z := tp.L2Normalize(tp.Linear(tp.Input(z2), w, nil))
	tp.SetGrad(prev)
	fmt.Printf("recorded %d ops, z[0] = %.4f\n", tp.Len(), z.Value.Data[0])
	// Output:
	// step 0: loss -0.7071, grad [2 2]
	// step 1: loss -0.7071, grad [2 2]
	// recorded 0 ops, z[0] = 0.7071
}

func mustT(data []float32, shape ...int) *tensor.T {
	t, err := tensor.FromSlice(data, shape...)
	if err != nil {
		panic(err)
	}
	return t
}
