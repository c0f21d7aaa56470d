package eval_test

import (
	"fmt"

	"github.com/sslrun/sslrun/core/eval"
)

func ExampleKNN() {
	// Four 2-d train embeddings of two classes and two test embeddings.
	train := eval.Set{Name: "toy/train", Dim: 2, X: []float32{1, 0, 0.9, 0.2, 0, 1, 0.2, 0.9}, Labels: []int32{0, 0, 1, 1}}
	test := eval.Set{Name: "toy/test", Dim: 2, X: []float32{0.8, 0.1, 0.1, 0.7}, Labels: []int32{0, 1}}
	cfg := eval.SoloKNN() // k=20 (capped at 4 here), T=0.07, cosine
	res, err := eval.KNN(train, test, cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("top1=%.2f top5=%.2f k=%s T=%s %s\n", res.Top1, res.Top5, res.Protocol["k"], res.Protocol["T"], res.Protocol["feature_norm"])
	// Output: top1=1.00 top5=1.00 k=4 T=0.07 l2
}
