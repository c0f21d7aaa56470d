package decompose

import (
	"fmt"
	"math"

	"github.com/zclconf/go-cty/cty"

	"github.com/sslrun/sslrun/core/tensor"
)

// StepConfig is the `analyzer "decompose" {}` block (without the host's
// `every`).
type StepConfig struct {
	// Tensors are the training tensors measured: "z" (projector output:
	// embeddings and the split of dL/dz) and "p" (predictor output:
	// embeddings and, for predictor methods, the extra gradient).
	Tensors []string
}

// ParseStepConfig converts the block's decoded configuration (an object
// with an optional list of strings tensors; null means ["z"]).
func ParseStepConfig(v cty.Value) (StepConfig, error) {
	c := StepConfig{Tensors: []string{"z"}}
	if v.IsNull() {
		return c, nil
	}
	if !v.IsKnown() || !v.Type().IsObjectType() {
		return c, fmt.Errorf("decompose: configuration must be an object, got %s", v.Type().FriendlyName())
	}
	if !v.Type().HasAttribute("tensors") {
		return c, nil
	}
	a := v.GetAttr("tensors")
	if a.IsNull() || !a.IsKnown() {
		return c, nil
	}
	if !a.CanIterateElements() {
		return c, fmt.Errorf("decompose: tensors must be a list of strings, got %s", a.Type().FriendlyName())
	}
	c.Tensors = nil
	for it := a.ElementIterator(); it.Next(); {
		_, e := it.Element()
		if e.IsNull() || !e.IsKnown() || e.Type() != cty.String {
			return c, fmt.Errorf("decompose: tensors must be a list of strings")
		}
		switch s := e.AsString(); s {
		case "z", "p":
			c.Tensors = append(c.Tensors, s)
		default:
			return c, fmt.Errorf("decompose: tensor %q cannot be measured during training (want \"z\" or \"p\")", s)
		}
	}
	return c, nil
}

// StepResult is what StepAnalyzer.Step measured.
type StepResult struct {
	// Metrics and Arrays (the spectra of z and p) have keys without the
	// "decompose/" prefix.
	Metrics []Metric
	Arrays  []Array
	// Collapsed is Collapsed's geometric verdict (no kNN), with the reason
	// (prefixed by the tensor judged, e.g. "z: m_o 0.97 > 0.9 ..."). It
	// judges z, the tensor paper.md's rule is about, or p when z is not
	// measured; false when neither was. Backbone features are never judged:
	// post-ReLU features are non-negative, so their m_o is large by
	// construction, collapsed or not.
	Collapsed bool
	Reason    string
}

// StepAnalyzer measures training steps: the adapter between the runner's
// per-step tensors and this package's functions. It reuses one Analyzer's
// buffers and is not safe for concurrent use.
type StepAnalyzer struct {
	cfg StepConfig
	a   *Analyzer
}

// NewStepAnalyzer returns an analyzer for cfg.
func NewStepAnalyzer(cfg StepConfig) *StepAnalyzer { return &StepAnalyzer{cfg: cfg, a: New()} }

// StepInput are the tensors of one training step, [N, d] each.
type StepInput struct {
	// Z1, Z2 are the projections of the two views; GradZ1 is dL/dz1 (nil:
	// no gradient metrics).
	Z1, Z2, GradZ1 *tensor.T
	// P1, P2 are the predictions (nil without a predictor); GradP1 is
	// dL/dp1 (nil: no gradient metrics for p).
	P1, P2, GradP1 *tensor.T
	// T1, T2 are a target network's projections (BYOL), nil without one:
	// the prediction then regresses T of the other view, so the extra
	// gradient is T_b - P_b instead of Z_b - P_b.
	T1, T2 *tensor.T
}

// verdict is Collapsed's geometric verdict on tensor's statistics, the
// reason prefixed by the tensor's name.
func verdict(tensor string, st Stats) (bool, string) {
	c, why := Collapsed(st, math.NaN(), math.NaN())
	return c, tensor + ": " + why
}

// Step measures one training step: for "z", the embedding metrics of view
// 1's projection and the centre/residual split of its gradient; for "p",
// the embedding metrics of view 1's prediction and the split of its
// gradient. With a predictor, the extra gradient (averaged over both
// directions) is measured whenever "z" or "p" is. Embedding metrics are
// over view 1's N rows. The collapse verdict is on z, or on p when "z" is
// not measured.
func (s *StepAnalyzer) Step(in StepInput) (StepResult, error) {
	var r StepResult
	extra, zJudged := false, false
	// p's verdict counts only when z is not measured: run_final judges z,
	// and p, which regresses z, follows it.
	pJudged, pCollapsed, pReason := false, false, ""
	for _, name := range s.cfg.Tensors {
		switch name {
		case "z":
			st, err := s.a.Embeddings(in.Z1, Options{Tensor: "z"})
			if err != nil {
				return r, fmt.Errorf("decompose z: %w", err)
			}
			r.Metrics = append(r.Metrics, st.Metrics()...)
			r.Arrays = append(r.Arrays, st.Arrays()...)
			r.Collapsed, r.Reason = verdict("z", st)
			zJudged = true
			if in.GradZ1 != nil {
				gs, err := s.a.Gradient(in.Z1, in.GradZ1, Options{Tensor: "z"})
				if err != nil {
					return r, fmt.Errorf("decompose dL/dz: %w", err)
				}
				r.Metrics = append(r.Metrics, gs.Metrics()...)
			}
		case "p":
			if in.P1 == nil {
				continue
			}
			st, err := s.a.Embeddings(in.P1, Options{Tensor: "p"})
			if err != nil {
				return r, fmt.Errorf("decompose p: %w", err)
			}
			r.Metrics = append(r.Metrics, st.Metrics()...)
			r.Arrays = append(r.Arrays, st.Arrays()...)
			pCollapsed, pReason = verdict("p", st)
			pJudged = true
			if in.GradP1 != nil {
				gs, err := s.a.Gradient(in.P1, in.GradP1, Options{Tensor: "p"})
				if err != nil {
					return r, fmt.Errorf("decompose dL/dp: %w", err)
				}
				r.Metrics = append(r.Metrics, gs.Metrics()...)
			}
		}
		extra = true
	}
	if !zJudged && pJudged {
		r.Collapsed, r.Reason = pCollapsed, pReason
	}
	if extra && in.P1 != nil && in.P2 != nil {
		z1, z2 := in.Z1, in.Z2
		if in.T1 != nil && in.T2 != nil {
			z1, z2 = in.T1, in.T2
		}
		es, err := s.a.ExtraGradientPair(z1, z2, in.P1, in.P2, Options{Tensor: "p"})
		if err != nil {
			return r, fmt.Errorf("decompose extra gradient: %w", err)
		}
		r.Metrics = append(r.Metrics, es.Metrics()...)
	}
	return r, nil
}
