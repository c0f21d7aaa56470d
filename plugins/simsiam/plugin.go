package simsiam

import (
	"github.com/zclconf/go-cty/cty"

	"github.com/sslrun/sslrun/core/autodiff"
	"github.com/sslrun/sslrun/core/plugin"
	"github.com/sslrun/sslrun/core/plugin/lossdk"
)

// Version is the plugin's version, reported in Info and recorded with runs.
const Version = "0.1.0"

// Schema declares the `loss "simsiam" {}` block.
var Schema = plugin.Schema{Attributes: []plugin.Attribute{
	{Name: "stop_gradient", Type: cty.Bool, Default: cty.True, Description: "apply sg() to the target; SimSiam without it collapses"},
	{Name: "target", Type: cty.String, Default: cty.StringVal(string(TargetZ)), Description: "what p_a is pulled towards: z (SimSiam), p (symmetric predictor), p+center or p+residual (extra-gradient variants)",
		OneOf: []cty.Value{cty.StringVal(string(TargetZ)), cty.StringVal(string(TargetP)), cty.StringVal(string(TargetCenter)), cty.StringVal(string(TargetResidual))}},
	{Name: "predictor", Type: cty.String, Default: cty.StringVal("mlp"), Description: "the encoder's predictor: mlp, bias (h(z) = z/||z|| + b) or none (naive Siamese)",
		OneOf: []cty.Value{cty.StringVal("mlp"), cty.StringVal("bias"), cty.StringVal("none")}},
}}

// Plugin returns SimSiam as a loss plugin (core/plugin/lossdk around Loss).
// sslrun serves it by re-executing itself; plugin.Host.InProcess runs the
// same value without a process.
func Plugin() plugin.Plugin {
	cfg := Config{Options: Default(), Predictor: "mlp"}
	var f *lossdk.Func
	f = &lossdk.Func{
		Schema: Schema,
		// With a predictor and stop-gradient, z only ever reaches the loss
		// through sg() (as the target, or through G_e = Z_b - P_b), so its
		// gradient is zero: not computing, sending and backpropagating a
		// zero [N, d] tensor per view saves a copy each way.
		NoGrad: []string{"z1", "z2"},
		Config: func(v cty.Value) error {
			c, err := ParseConfig(v)
			if err != nil {
				return err
			}
			cfg = c
			// Configure comes before any Compute (the host configures a
			// plugin once, before its first step).
			f.NoGrad = nil
			if c.StopGradient && c.Predictor != "none" {
				f.NoGrad = []string{"z1", "z2"}
			}
			return nil
		},
		SpecFunc: func() (plugin.LossSpec, error) {
			s := plugin.LossSpec{Predictor: cfg.Predictor != "none", Target: plugin.TargetStopGrad, Inputs: []string{"z1", "z2", "p1", "p2"}}
			if !cfg.StopGradient {
				s.Target = plugin.TargetNone
			}
			if !s.Predictor {
				s.Inputs = s.Inputs[:2]
			}
			return s, nil
		},
		Forward: func(tp *autodiff.Tape, in map[string]*autodiff.Var, _ plugin.Step) (*autodiff.Var, map[string]float64, error) {
			l, err := Loss(tp, in["z1"], in["z2"], in["p1"], in["p2"], cfg.Options)
			return l, nil, err
		},
	}
	return f.Plugin("simsiam", Version)
}
