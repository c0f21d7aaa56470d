package optim_test

import (
	"fmt"

	"github.com/sslrun/sslrun/core/optim"
)

// SimSiam's CIFAR recipe: SGD momentum 0.9, wd 5e-4, lr 0.03*bs/256 with a
// cosine decay, and a predictor whose lr is never decayed.
func ExampleNew() {
	w := &optim.Param{Name: "backbone.conv1.weight", Value: make([]float32, 8), Grad: make([]float32, 8), Shape: []int{2, 4}}
	bn := &optim.Param{Name: "backbone.bn1.weight", Value: make([]float32, 2), Grad: make([]float32, 2), Shape: []int{2}, Kind: optim.Norm}
	pred := &optim.Param{Name: "predictor.fc1.weight", Value: make([]float32, 4), Grad: make([]float32, 4), Shape: []int{2, 2}}

	lr := optim.ScaleLR(0.03, 512) // 0.06
	opt, err := optim.New(optim.SGD, []optim.Group{
		{Name: "backbone", Params: []*optim.Param{w, bn}, Momentum: 0.9, WeightDecay: 5e-4},
		{Name: "predictor", Params: []*optim.Param{pred}, Momentum: 0.9, WeightDecay: 5e-4, Static: true, FixedLR: lr},
	})
	if err != nil {
		panic(err)
	}
	const epochs, stepsPerEpoch = 800, 97
	sched, err := optim.NewWarmupCosine(lr, 0, 0, 0, epochs, stepsPerEpoch, true)
	if err != nil {
		panic(err)
	}
	for step := 0; step < 3; step++ {
		opt.ZeroGrad()
		// ... forward and backward fill the Grad slices ...
		opt.Step(sched.LR(step))
	}
	half := epochs * stepsPerEpoch / 2
	g0, g1 := opt.Group(0), opt.Group(1)
	fmt.Printf("lr at the half-way step: backbone %.3f, predictor %.3f\n", g0.LR(sched.LR(half)), g1.LR(sched.LR(half)))
	// Output: lr at the half-way step: backbone 0.030, predictor 0.060
}

// BYOL's target network: copy once, then after optimizer step k move it
// toward the online network with tau from the cosine schedule.
func ExampleEMA() {
	online := []*optim.Param{{Name: "online.w", Value: []float32{1, 2}}}
	target := []*optim.Param{{Name: "target.w", Value: make([]float32, 2)}}
	ema, err := optim.NewEMA(online, target)
	if err != nil {
		panic(err)
	}
	ema.Copy()
	const total = 1000
	for k := 0; k < 2; k++ {
		online[0].Value[0] += 1 // the optimizer step
		ema.Update(optim.Tau(0.99, 1, k, total))
	}
	fmt.Printf("target %.4f\n", target[0].Value)
	// Output: target [1.0299 2.0000]
}
