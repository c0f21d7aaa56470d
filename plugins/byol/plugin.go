package byol

import (
	"github.com/zclconf/go-cty/cty"

	"github.com/sslrun/sslrun/core/autodiff"
	"github.com/sslrun/sslrun/core/plugin"
	"github.com/sslrun/sslrun/core/plugin/lossdk"
)

// Version is the plugin's version, reported in Info and recorded with runs.
const Version = "0.1.0"

// Schema declares the `loss "byol" {}` block.
var Schema = plugin.Schema{Attributes: []plugin.Attribute{
	{Name: "tau_base", Type: cty.Number, Default: cty.NumberFloatVal(DefaultTauBase), Description: "EMA momentum of the target network at step 0; it rises to 1 on a cosine schedule"},
}}

// Plugin returns BYOL as a loss plugin: it asks for a predictor and an EMA
// target network, and returns no gradient for the target projections.
func Plugin() plugin.Plugin {
	cfg := Config{TauBase: DefaultTauBase}
	f := &lossdk.Func{
		Schema: Schema,
		Config: func(v cty.Value) error {
			c, err := ParseConfig(v)
			cfg = c
			return err
		},
		SpecFunc: func() (plugin.LossSpec, error) {
			return plugin.LossSpec{Predictor: true, Target: plugin.TargetEMA, TauBase: cfg.TauBase, TauFinal: 1,
				TauSchedule: "cosine", Inputs: []string{"p1", "p2", "t1", "t2"}}, nil
		},
		NoGrad: []string{"t1", "t2"},
		Forward: func(tp *autodiff.Tape, in map[string]*autodiff.Var, _ plugin.Step) (*autodiff.Var, map[string]float64, error) {
			return Loss(tp, in["p1"], in["p2"], in["t1"], in["t2"]), nil, nil
		},
	}
	return f.Plugin("byol", Version)
}
