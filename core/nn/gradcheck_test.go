package nn

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/sslrun/sslrun/core/autodiff"
	"github.com/sslrun/sslrun/core/tensor"
)

// gradCheck compares the tape's gradients of L = sum(m(x) * w), w fixed
// random weights, with respect to x and to every parameter of m against
// central finite differences of L evaluated in no-grad mode (float64 sum).
// autodiff.GradCheck differentiates only with respect to its own inputs, so
// this variant perturbs the module's parameters in place. An element passes
// when |analytic - numeric| <= 1e-3 + 1e-2*max(|analytic|, |numeric|), the
// tolerance of autodiff.GradCheck: with a float32 forward pass and step
// eps, the numeric derivative carries ~|L|*2^-24/eps of rounding noise plus
// O(eps²) truncation.
func gradCheck(t *testing.T, m Module, x *tensor.T, eps float64) {
	t.Helper()
	tp := autodiff.NewTape()
	xv := tp.Leaf(x.Clone())
	y := m.Forward(tp, xv)
	rng := rand.New(rand.NewPCG(7, 7))
	w := tensor.New(y.Value.Shape...)
	for i := range w.Data {
		w.Data[i] = float32(rng.NormFloat64())
	}
	ZeroGrad(m)
	if err := tp.Backward(tp.Sum(tp.Mul(y, tp.Input(w)))); err != nil {
		t.Fatal(err)
	}
	type target struct {
		name     string
		val, ana []float32
	}
	targets := []target{{"x", x.Data, append([]float32(nil), xv.Grad.Data...)}}
	for _, p := range Params(m, "") {
		targets = append(targets, target{p.Name, p.Var.Value.Data, append([]float32(nil), p.Var.Grad.Data...)})
	}
	objective := func() float64 {
		tp.Reset()
		defer tp.NoGrad()()
		out := m.Forward(tp, tp.Input(x))
		var s float64
		for i, v := range out.Value.Data {
			s += float64(v) * float64(w.Data[i])
		}
		return s
	}
	checked := 0
	for _, tg := range targets {
		for j := range tg.val {
			orig := tg.val[j]
			tg.val[j] = orig + float32(eps)
			fp := objective()
			tg.val[j] = orig - float32(eps)
			fm := objective()
			tg.val[j] = orig
			h := float64(orig+float32(eps)) - float64(orig-float32(eps))
			num := (fp - fm) / h
			ana := float64(tg.ana[j])
			if d := math.Abs(ana - num); !(d <= 1e-3+1e-2*math.Max(math.Abs(ana), math.Abs(num))) {
				t.Errorf("d/d%s[%d]: analytic %.6g, numeric %.6g", tg.name, j, ana, num)
			}
			checked++
		}
	}
	if checked == 0 {
		t.Fatal("nothing checked")
	}
}

// randn returns a tensor of standard normal values from a fixed seed.
func randn(seed uint64, shape ...int) *tensor.T {
	rng := rand.New(rand.NewPCG(seed, 1))
	x := tensor.New(shape...)
	for i := range x.Data {
		x.Data[i] = float32(rng.NormFloat64())
	}
	return x
}

// spread returns distinct values at least 0.05 apart and away from 0, in a
// random order: inputs for max-pooling and ReLU, whose derivatives jump
// where two inputs tie or one crosses zero.
func spread(seed uint64, shape ...int) *tensor.T {
	x := tensor.New(shape...)
	rng := rand.New(rand.NewPCG(seed, 2))
	for i, p := range rng.Perm(len(x.Data)) {
		v := 0.05 * float32(p-len(x.Data)/2)
		if v >= 0 {
			v += 0.025
		}
		x.Data[i] = v
	}
	return x
}

func TestGradCheckLayers(t *testing.T) {
	rng := func(s uint64) *rand.Rand { return rand.New(rand.NewPCG(s, 3)) }
	bnRand := func(b *BatchNorm, eval bool) *BatchNorm {
		HashInit(b, fmt.Sprint("bn", b.C), eval)
		b.SetTrain(!eval)
		return b
	}
	head, err := MLPHead([]int{5, 6, 4}, LastBNPlain, false, rng(4))
	if err != nil {
		t.Fatal(err)
	}
	pred, err := MLPHead([]int{4, 3, 4}, LastBNNone, true, rng(5))
	if err != nil {
		t.Fatal(err)
	}
	bias := NewBiasOnly(4)
	HashInit(bias, "h.", false)
	block := NewBasicBlock(2, 3, 2, rng(6))
	HashInit(block, "block.", false)
	// eps is 1e-2 except where BatchNorm (train mode, tiny batch) follows a
	// narrow layer: the loss is then strongly curved and the O(eps²)
	// truncation error of the central difference reaches a few percent at
	// 1e-2; 1e-3 keeps both it and the float32 noise within tolerance.
	cases := []struct {
		name string
		m    Module
		x    *tensor.T
		eps  float64
	}{
		{"linear", NewLinear(4, 3, true, rng(1)), randn(1, 5, 4), 1e-2},
		{"linear_nobias", NewLinear(4, 3, false, rng(1)), randn(1, 5, 4), 1e-2},
		{"conv_s2_bias", NewConv2d(2, 3, 3, 2, 1, true, rng(2)), randn(2, 2, 2, 5, 5), 1e-2},
		{"conv_s1", NewConv2d(2, 2, 3, 1, 1, false, rng(2)), randn(2, 1, 2, 4, 4), 1e-2},
		{"conv1x1", NewConv2d(2, 3, 1, 2, 0, false, rng(2)), randn(2, 2, 2, 4, 4), 1e-2},
		{"bn1d_train", bnRand(NewBatchNorm(3, true), false), randn(3, 5, 3), 1e-2},
		{"bn1d_eval", bnRand(NewBatchNorm(3, true), true), randn(3, 5, 3), 1e-2},
		{"bn1d_noaffine", NewBatchNorm(3, false), randn(3, 5, 3), 1e-2},
		{"bn2d_train", bnRand(NewBatchNorm(2, true), false), randn(4, 2, 2, 3, 3), 1e-2},
		{"bn2d_eval", bnRand(NewBatchNorm(2, true), true), randn(4, 2, 2, 3, 3), 1e-2},
		{"relu", ReLU{}, spread(5, 3, 4), 1e-2},
		{"maxpool", MaxPool2d{Kernel: 3, Stride: 2, Pad: 1}, spread(6, 1, 2, 5, 5), 1e-2},
		{"avgpool", AvgPool2d{Kernel: 2, Stride: 2}, randn(7, 1, 2, 4, 4), 1e-2},
		{"gap_flatten", NewSequential(GlobalAvgPool{}, Flatten{}), randn(8, 2, 3, 3, 2), 1e-2},
		{"flatten", Flatten{}, randn(8, 2, 3, 2), 1e-2},
		{"bias_only", bias, randn(9, 3, 4), 1e-2},
		{"projector", head, randn(10, 6, 5), 1e-3},
		{"predictor", pred, randn(11, 6, 4), 1e-3},
		{"basic_block_s2", block, randn(12, 2, 2, 4, 4), 1e-3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { gradCheck(t, c.m, c.x, c.eps) })
	}
}
