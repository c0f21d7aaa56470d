// Command vicreg is an example external loss plugin: VICReg (Bardes, Ponce
// and LeCun, ICLR 2022) in one file. The loss is an autodiff forward
// function; core/plugin/lossdk turns it into a plugin (inputs, backward,
// gradients in shared memory, configuration). docs/writing-a-loss-plugin.md
// walks through this file.
//
// Build it into a plugins directory under the name the host looks for:
//
//	go build -o plugins/sslrun-plugin-vicreg ./plugins/vicreg
package main

import (
	"fmt"
	"slices"

	"github.com/zclconf/go-cty/cty"

	"github.com/sslrun/sslrun/core/autodiff"
	"github.com/sslrun/sslrun/core/plugin"
	"github.com/sslrun/sslrun/core/plugin/lossdk"
)

// options are the loss's coefficients, named as in solo-learn.
type options struct {
	SimWeight, VarWeight, CovWeight float64 // 25, 25, 1
	Gamma, Eps                      float64 // target std 1, 1e-4 inside the sqrt
}

func defaults() options {
	return options{SimWeight: 25, VarWeight: 25, CovWeight: 1, Gamma: 1, Eps: 1e-4}
}

// schema is the `loss "vicreg" { ... }` block: the host validates it (types,
// bounds, unknown names) before Configure sees it.
var schema = plugin.Schema{Attributes: []plugin.Attribute{
	{Name: "sim_loss_weight", Type: cty.Number, Default: cty.NumberFloatVal(25), Min: ptr(0), Description: "invariance (MSE) coefficient, lambda"},
	{Name: "var_loss_weight", Type: cty.Number, Default: cty.NumberFloatVal(25), Min: ptr(0), Description: "variance (std hinge) coefficient, mu"},
	{Name: "cov_loss_weight", Type: cty.Number, Default: cty.NumberFloatVal(1), Min: ptr(0), Description: "covariance coefficient, nu"},
	{Name: "gamma", Type: cty.Number, Default: cty.NumberFloatVal(1), Min: ptr(0), Description: "target standard deviation per dimension"},
	{Name: "eps", Type: cty.Number, Default: cty.NumberFloatVal(1e-4), Min: ptr(0), Description: "added to the variance before the square root"},
}}

func ptr(f float64) *float64 { return &f }

// vicreg is the loss on two batches of projections z1, z2 [N, D]:
//
//	sim * mse(z1, z2) + var * (v(z1) + v(z2)) + cov * (c(z1) + c(z2))
//
// v(z) = mean_d relu(gamma - sqrt(var_n(z[:, d]) + eps)) (unbiased variance),
// c(z) = sum of the squared off-diagonal entries of z's covariance, / D.
// It also returns the three unweighted terms as metrics.
func vicreg(tp *autodiff.Tape, z1, z2 *autodiff.Var, o options) (*autodiff.Var, map[string]float64, error) {
	if len(z1.Shape()) != 2 || !slices.Equal(z1.Shape(), z2.Shape()) || z1.Shape()[0] < 2 {
		return nil, nil, fmt.Errorf("vicreg: z1 %v and z2 %v must be equal [N, D] with N >= 2", z1.Shape(), z2.Shape())
	}
	inv := tp.Mean(tp.Square(tp.Sub(z1, z2)))
	c1, c2 := center(tp, z1), center(tp, z2)
	vr := tp.Add(variance(tp, c1, o), variance(tp, c2, o))
	cv := tp.Add(covariance(tp, c1), covariance(tp, c2))
	loss := tp.Add(tp.Add(tp.Scale(inv, float32(o.SimWeight)), tp.Scale(vr, float32(o.VarWeight))),
		tp.Scale(cv, float32(o.CovWeight)))
	terms := map[string]float64{"invariance": float64(inv.Item()), "variance": float64(vr.Item()), "covariance": float64(cv.Item())}
	return loss, terms, nil
}

// center subtracts the batch mean from every row.
func center(tp *autodiff.Tape, z *autodiff.Var) *autodiff.Var {
	n := z.Shape()[0]
	return tp.Sub(z, tp.BroadcastRows(tp.MeanRows(z), n))
}

// variance is the hinge on the per-dimension std of a centered batch.
func variance(tp *autodiff.Tape, zc *autodiff.Var, o options) *autodiff.Var {
	n := zc.Shape()[0]
	v := tp.Scale(tp.SumRows(tp.Square(zc)), 1/float32(n-1))
	std := tp.Sqrt(tp.AddScalar(v, float32(o.Eps)))
	return tp.Mean(tp.ReLU(tp.AddScalar(tp.Neg(std), float32(o.Gamma))))
}

// covariance is the off-diagonal energy of a centered batch's covariance.
func covariance(tp *autodiff.Tape, zc *autodiff.Var) *autodiff.Var {
	n, d := zc.Shape()[0], zc.Shape()[1]
	cov := tp.Scale(tp.MatMul(zc, zc, true, false), 1/float32(n-1))
	off := tp.FillDiagonal(cov, 0)
	return tp.Scale(tp.Sum(tp.Square(off)), 1/float32(d))
}

// newLoss is the plugin's loss: spec, schema, configuration and forward.
func newLoss() *lossdk.Func {
	o := defaults()
	return &lossdk.Func{
		// No predictor, no target network: both branches are the online
		// projector, and the loss wants gradients on both.
		LossSpec: plugin.LossSpec{Target: plugin.TargetNone, Inputs: []string{"z1", "z2"}, ProjectorDims: []int{2048, 2048, 2048}},
		Schema:   schema,
		Config: func(cfg cty.Value) error {
			o = options{
				SimWeight: lossdk.Float(cfg, "sim_loss_weight"), VarWeight: lossdk.Float(cfg, "var_loss_weight"),
				CovWeight: lossdk.Float(cfg, "cov_loss_weight"), Gamma: lossdk.Float(cfg, "gamma"), Eps: lossdk.Float(cfg, "eps"),
			}
			if o.Eps <= 0 {
				return plugin.AttrErrorf("eps", "must be > 0 (it keeps the std's gradient finite), got %g", o.Eps)
			}
			return nil
		},
		Forward: func(tp *autodiff.Tape, in map[string]*autodiff.Var, _ plugin.Step) (*autodiff.Var, map[string]float64, error) {
			return vicreg(tp, in["z1"], in["z2"], o)
		},
	}
}

func main() { lossdk.Serve("vicreg", "0.1.0", newLoss()) }
