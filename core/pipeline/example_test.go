package pipeline_test

import (
	"fmt"
	"os"

	"github.com/sslrun/sslrun/core/pipeline"
)

func ExampleParser() {
	p := pipeline.NewParser(pipeline.Options{Vars: map[string]string{"epochs": "3"}})
	pl, diags := p.ParseFiles("../../pipelines/methods_fashion.hcl")
	if diags.HasErrors() {
		p.WriteDiagnostics(os.Stderr, diags, 80)
		return
	}
	fmt.Println("study:", pl.Study.Name)
	for _, r := range pl.Runs[:4] {
		c := r.Config
		fmt.Printf("%s: loss %s, seed %d, %d epochs, lr %g\n", r.Name, c.Loss.Name, c.Seed, c.Epochs, c.Optimizer.LR)
	}
	// Output:
	// study: methods
	// simsiam-seed0: loss simsiam, seed 0, 3 epochs, lr 0.06
	// simsiam-seed1: loss simsiam, seed 1, 3 epochs, lr 0.06
	// simsiam-seed2: loss simsiam, seed 2, 3 epochs, lr 0.06
	// simclr-seed0: loss simclr, seed 0, 3 epochs, lr 0.06
}

func ExampleFormat() {
	out, err := pipeline.Format([]byte("run {\nepochs = 1\n  batch_size=256\n}\n"))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print(string(out))
	// Output:
	// run {
	//   epochs     = 1
	//   batch_size = 256
	// }
}
