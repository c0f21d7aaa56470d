package simclr

import (
	"github.com/zclconf/go-cty/cty"

	"github.com/sslrun/sslrun/core/autodiff"
	"github.com/sslrun/sslrun/core/plugin"
	"github.com/sslrun/sslrun/core/plugin/lossdk"
)

// Version is the plugins' version, reported in Info and recorded with runs.
const Version = "0.1.0"

func positive() *float64 { v := 1e-6; return &v }

// NTXentSchema declares the `loss "simclr" {}` block.
var NTXentSchema = plugin.Schema{Attributes: []plugin.Attribute{
	{Name: "temperature", Type: cty.Number, Default: cty.NumberFloatVal(0.5), Min: positive(), Description: "softmax temperature t of the similarities"},
}}

// TripletSchema declares the `loss "triplet" {}` block.
var TripletSchema = plugin.Schema{Attributes: []plugin.Attribute{
	{Name: "negative", Type: cty.String, Default: cty.StringVal(string(NegativeFull)), Description: "what of the negative is kept: full, center or residual",
		OneOf: []cty.Value{cty.StringVal(string(NegativeFull)), cty.StringVal(string(NegativeCenter)), cty.StringVal(string(NegativeResidual))}},
}}

// NTXentPlugin returns the NT-Xent loss as a loss plugin named "simclr".
func NTXentPlugin() plugin.Plugin {
	temp := 0.5
	var labels []int
	f := &lossdk.Func{
		Schema:   NTXentSchema,
		LossSpec: plugin.LossSpec{Target: plugin.TargetNone, Inputs: []string{"z1", "z2"}},
		Config: func(v cty.Value) error {
			t, err := ParseNTXentConfig(v)
			temp = t
			return err
		},
		Forward: func(tp *autodiff.Tape, in map[string]*autodiff.Var, _ plugin.Step) (*autodiff.Var, map[string]float64, error) {
			if n := 2 * in["z1"].Shape()[0]; len(labels) != n {
				labels = make([]int, n)
			}
			l, err := NTXent(tp, in["z1"], in["z2"], temp, labels)
			return l, nil, err
		},
	}
	return f.Plugin("simclr", Version)
}

// TripletPlugin returns the paper's triplet loss as a loss plugin named
// "triplet", served by the same package (and binary) as NT-Xent.
func TripletPlugin() plugin.Plugin {
	neg := NegativeFull
	f := &lossdk.Func{
		Schema:   TripletSchema,
		LossSpec: plugin.LossSpec{Target: plugin.TargetStopGrad, Inputs: []string{"z1", "z2"}},
		Config: func(v cty.Value) error {
			n, err := ParseTripletConfig(v)
			neg = n
			return err
		},
		Forward: func(tp *autodiff.Tape, in map[string]*autodiff.Var, _ plugin.Step) (*autodiff.Var, map[string]float64, error) {
			l, err := Triplet(tp, in["z1"], in["z2"], neg)
			return l, nil, err
		},
	}
	return f.Plugin("triplet", Version)
}
