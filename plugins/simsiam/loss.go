// Package simsiam is the SimSiam loss (Chen & He, 2021) and the variants that
// Zhang et al. (ICLR 2022) use to explain why it does not collapse.
//
// The loss is a pure function of the projector outputs z and predictor
// outputs p of two views: it records its ops on an autodiff tape, so the
// gradients on z and p come from the tape's Backward and the function can be
// tested without any plugin machinery.
package simsiam

import (
	"fmt"

	"github.com/sslrun/sslrun/core/autodiff"
)

// Target names what each view's prediction is pulled towards, with the
// paper's notation (Z, P the l2-normalized z and p, G_e = Z_b - P_b the
// extra gradient, o_e its batch mean and r_e = G_e - o_e its residual).
type Target string

const (
	// TargetZ is SimSiam's -P_a · sg(Z_b).
	TargetZ Target = "z"
	// TargetP is the symmetric predictor -P_a · sg(P_b), which collapses.
	TargetP Target = "p"
	// TargetCenter keeps only the centre part of the extra gradient:
	// -P_a · sg(P_b + o_e).
	TargetCenter Target = "p+center"
	// TargetResidual keeps only its residual part: -P_a · sg(P_b + r_e).
	TargetResidual Target = "p+residual"
)

// Options select the variant. The zero value is not SimSiam: start from
// Default.
type Options struct {
	// StopGradient applies sg() to the target. SimSiam without it collapses.
	StopGradient bool
	// Target is what the prediction is compared with.
	Target Target
}

// Default returns SimSiam's own options.
func Default() Options { return Options{StopGradient: true, Target: TargetZ} }

// Validate reports an option combination the loss cannot compute.
func (o Options) Validate() error {
	switch o.Target {
	case TargetZ, TargetP:
	case TargetCenter, TargetResidual:
		if !o.StopGradient {
			return fmt.Errorf("simsiam: target %q is defined with stop-gradient only", o.Target)
		}
	default:
		return fmt.Errorf("simsiam: unknown target %q (want %q, %q, %q or %q)", o.Target, TargetZ, TargetP, TargetCenter, TargetResidual)
	}
	return nil
}

// Loss returns 1/2·D(p1, t2) + 1/2·D(p2, t1) with D the negative cosine
// similarity averaged over the batch and t the target the options select.
// z1, z2 are [N, d] projector outputs; p1, p2 the predictor outputs of the
// same shape, or nil for a network without predictor (the naive Siamese
// variant, where p = z).
func Loss(tp *autodiff.Tape, z1, z2, p1, p2 *autodiff.Var, o Options) (*autodiff.Var, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if p1 == nil || p2 == nil {
		if p1 != p2 {
			return nil, fmt.Errorf("simsiam: got one prediction; give both or neither")
		}
		p1, p2 = z1, z2
	}
	a := half(tp, p1, z2, p2, o)
	b := half(tp, p2, z1, p1, o)
	return tp.Scale(tp.Add(a, b), -0.5), nil
}

// half is mean_m cos(p_a, target_b) for one direction.
func half(tp *autodiff.Tape, pa, zb, pb *autodiff.Var, o Options) *autodiff.Var {
	switch o.Target {
	case TargetZ, TargetP:
		t := zb
		if o.Target == TargetP {
			t = pb
		}
		if o.StopGradient {
			t = tp.Detach(t)
		}
		return tp.Mean(tp.CosineSimilarity(pa, t))
	}
	// The extra-gradient variants compare P_a with an unnormalized constant
	// built from normalized vectors, so the target is computed without
	// recording and the dot product replaces the cosine.
	prev := tp.SetGrad(false)
	zn, pn := tp.L2Normalize(zb), tp.L2Normalize(pb)
	ge := tp.Sub(zn, pn)
	oe := tp.BroadcastRows(tp.MeanRows(ge), ge.Shape()[0])
	var t *autodiff.Var
	if o.Target == TargetCenter {
		t = tp.Add(pn, oe)
	} else {
		t = tp.Add(pn, tp.Sub(ge, oe))
	}
	tp.SetGrad(prev)
	return tp.Mean(tp.RowDot(tp.L2Normalize(pa), tp.Detach(t)))
}
