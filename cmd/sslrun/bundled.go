package main

import (
	"github.com/zclconf/go-cty/cty"

	"github.com/sslrun/sslrun/core/autodiff"
	"github.com/sslrun/sslrun/core/plugin"
	"github.com/sslrun/sslrun/core/runner"
	"github.com/sslrun/sslrun/core/train"
	"github.com/sslrun/sslrun/plugins/byol"
	"github.com/sslrun/sslrun/plugins/decompose"
	"github.com/sslrun/sslrun/plugins/simclr"
	"github.com/sslrun/sslrun/plugins/simsiam"
)

// registerBundled registers the losses and analyzers compiled into this
// binary. Each entry converts its block's configuration with the plugin's
// own adapter (plugins/*/config.go) and closes over the pure loss function.
//
// Seam for core/plugin: when the go-plugin transport lands, these entries
// become factories that start the bundled plugins as subprocesses
// (Packer-style, re-executing this binary) and external plugins register
// the same way; the runner only sees runner.LossFactory.
func registerBundled() {
	// The same losses as go-plugin plugins, served by re-executing sslrun
	// (see main); plugin.Host.Launch(LaunchSpec{Bundled: name}) starts one.
	plugin.Bundled["simsiam"] = simsiam.Plugin
	plugin.Bundled["simclr"] = simclr.NTXentPlugin
	plugin.Bundled["triplet"] = simclr.TripletPlugin
	plugin.Bundled["byol"] = byol.Plugin
	runner.RegisterLoss("simsiam", func(v cty.Value) (runner.LossSpec, train.LossFunc, error) {
		c, err := simsiam.ParseConfig(v)
		if err != nil {
			return runner.LossSpec{}, nil, err
		}
		opts, noPred := c.Options, c.Predictor == "none"
		return runner.LossSpec{NeedsPredictor: !noPred}, func(tp *autodiff.Tape, o *train.Outputs) (*autodiff.Var, error) {
			if noPred {
				return simsiam.Loss(tp, o.Z1, o.Z2, nil, nil, opts)
			}
			return simsiam.Loss(tp, o.Z1, o.Z2, o.P1, o.P2, opts)
		}, nil
	})
	runner.RegisterLoss("simclr", func(v cty.Value) (runner.LossSpec, train.LossFunc, error) {
		temp, err := simclr.ParseNTXentConfig(v)
		if err != nil {
			return runner.LossSpec{}, nil, err
		}
		var labels []int // kept across steps: NTXent fills it
		return runner.LossSpec{}, func(tp *autodiff.Tape, o *train.Outputs) (*autodiff.Var, error) {
			if n := 2 * o.Z1.Shape()[0]; len(labels) != n {
				labels = make([]int, n)
			}
			return simclr.NTXent(tp, o.Z1, o.Z2, temp, labels)
		}, nil
	})
	runner.RegisterLoss("triplet", func(v cty.Value) (runner.LossSpec, train.LossFunc, error) {
		neg, err := simclr.ParseTripletConfig(v)
		if err != nil {
			return runner.LossSpec{}, nil, err
		}
		return runner.LossSpec{}, func(tp *autodiff.Tape, o *train.Outputs) (*autodiff.Var, error) {
			return simclr.Triplet(tp, o.Z1, o.Z2, neg)
		}, nil
	})
	runner.RegisterLoss("byol", func(v cty.Value) (runner.LossSpec, train.LossFunc, error) {
		c, err := byol.ParseConfig(v)
		if err != nil {
			return runner.LossSpec{}, nil, err
		}
		spec := runner.LossSpec{NeedsPredictor: true, Target: runner.TargetEMA, TauBase: c.TauBase, TauFinal: 1}
		return spec, func(tp *autodiff.Tape, o *train.Outputs) (*autodiff.Var, error) {
			return byol.Loss(tp, o.P1, o.P2, o.T1, o.T2), nil
		}, nil
	})
	runner.RegisterAnalyzer("decompose", func(v cty.Value) (runner.Analyzer, error) {
		c, err := decompose.ParseStepConfig(v)
		if err != nil {
			return nil, err
		}
		return decomposeAnalyzer{decompose.NewStepAnalyzer(c)}, nil
	})
}

// decomposeAnalyzer adapts decompose.StepAnalyzer to runner.Analyzer.
type decomposeAnalyzer struct{ s *decompose.StepAnalyzer }

func (d decomposeAnalyzer) Analyze(in *runner.StepTensors) (runner.Analysis, error) {
	r, err := d.s.Step(decompose.StepInput{Z1: in.Z1, Z2: in.Z2, GradZ1: in.GradZ1, P1: in.P1, P2: in.P2, T1: in.T1, T2: in.T2})
	if err != nil {
		return runner.Analysis{}, err
	}
	ms := make([]runner.Metric, len(r.Metrics))
	for i, m := range r.Metrics {
		ms[i] = runner.Metric{Key: "decompose/" + m.Key, Value: m.Value, Context: m.Context}
	}
	arrs := make([]runner.Array, len(r.Arrays))
	for i, a := range r.Arrays {
		arrs[i] = runner.Array{Key: "decompose/" + a.Key, Shape: a.Shape, Data: a.Data, Context: a.Context}
	}
	return runner.Analysis{Metrics: ms, Arrays: arrs, Collapsed: r.Collapsed, Reason: r.Reason}, nil
}
