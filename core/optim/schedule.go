package optim

import (
	"fmt"
	"math"
)

// Schedule gives the learning rate of each optimizer step: LR(k) is the lr
// passed to the Step call numbered k, counting from 0.
type Schedule interface {
	LR(step int) float64
}

// Constant is a schedule that always returns the same lr.
type Constant float64

// LR returns c.
func (c Constant) LR(int) float64 { return float64(c) }

// ScaleLR is the linear scaling rule lr = base * batch / 256 (Goyal et al.;
// SimSiam's 0.03 * bs / 256). It is a separate step so that the pipeline
// states both the base and the scaled value.
func ScaleLR(base float64, batch int) float64 { return base * float64(batch) / 256 }

// WarmupCosine is solo-learn's LinearWarmupCosineAnnealingLR (closed form):
// in scheduler units e (steps or epochs),
//
//	e < Warmup:  WarmupStartLR + e*(BaseLR-WarmupStartLR)/(Warmup-1)
//	otherwise:   MinLR + (BaseLR-MinLR)*(1+cos(pi*(e-Warmup)/(Total-Warmup)))/2
//
// so the warmup reaches BaseLR at e = Warmup-1 and stays there at e = Warmup
// (solo-learn's off-by-one, kept on purpose). For e >= Total the lr stays at
// MinLR, where solo-learn's cosine would rise again (training never gets
// there). Use NewWarmupCosine to build it from epochs the way solo-learn does.
type WarmupCosine struct {
	BaseLR, WarmupStartLR, MinLR float64
	// Warmup and Total are counted in scheduler units. Warmup may be
	// fractional (solo-learn: warmup_epochs * steps_per_epoch); below 2 it
	// behaves as solo-learn's formula does (Warmup <= 1 means the step-0 lr
	// is WarmupStartLR and the cosine starts at step 1).
	Warmup, Total float64
	// StepsPerUnit is the number of optimizer steps per scheduler unit:
	// 1 when the scheduler advances every step (solo-learn interval "step"),
	// the steps per epoch when it advances every epoch (interval "epoch").
	// 0 means 1.
	StepsPerUnit int
}

// NewWarmupCosine builds solo-learn's warmup_cosine scheduler. With perStep
// (solo-learn's default interval "step") the schedule advances every
// optimizer step, with Warmup = warmupEpochs*stepsPerEpoch and Total =
// maxEpochs*stepsPerEpoch; otherwise it advances once per epoch. As in
// solo-learn, a zero warmup makes the start lr the base lr.
func NewWarmupCosine(baseLR, warmupStartLR, minLR, warmupEpochs float64, maxEpochs, stepsPerEpoch int, perStep bool) (WarmupCosine, error) {
	if warmupEpochs == 0 {
		warmupStartLR = baseLR
	}
	s := WarmupCosine{BaseLR: baseLR, WarmupStartLR: warmupStartLR, MinLR: minLR,
		Warmup: warmupEpochs, Total: float64(maxEpochs), StepsPerUnit: stepsPerEpoch}
	if perStep {
		s.Warmup *= float64(stepsPerEpoch)
		s.Total *= float64(stepsPerEpoch)
		s.StepsPerUnit = 1
	}
	if stepsPerEpoch < 1 {
		return s, fmt.Errorf("optim: warmup cosine: %d steps per epoch", stepsPerEpoch)
	}
	return s, s.Validate()
}

// Validate reports settings for which the formula is undefined.
func (s WarmupCosine) Validate() error {
	if s.Warmup < 0 || !(s.Total > s.Warmup) || s.StepsPerUnit < 0 {
		return fmt.Errorf("optim: warmup cosine: need 0 <= warmup (%v) < total (%v) and steps per unit >= 0 (%d)",
			s.Warmup, s.Total, s.StepsPerUnit)
	}
	return nil
}

// LR returns the lr of optimizer step k (0-based).
func (s WarmupCosine) LR(step int) float64 {
	if s.StepsPerUnit > 1 {
		step /= s.StepsPerUnit
	}
	return s.At(float64(step))
}

// At evaluates the schedule at scheduler unit e.
func (s WarmupCosine) At(e float64) float64 {
	if e < s.Warmup {
		if s.Warmup <= 1 {
			return s.WarmupStartLR
		}
		return s.WarmupStartLR + e*(s.BaseLR-s.WarmupStartLR)/(s.Warmup-1)
	}
	if e >= s.Total {
		return s.MinLR
	}
	return s.MinLR + 0.5*(s.BaseLR-s.MinLR)*(1+math.Cos(math.Pi*(e-s.Warmup)/(s.Total-s.Warmup)))
}

// Tau is BYOL's target-momentum schedule as solo-learn's MomentumUpdater
// computes it: tau = final - (final-base)*(cos(pi*step/total)+1)/2, going
// from base at step 0 to final (normally 1) at step total, clamped there.
// solo-learn updates the target after optimizer step k (0-based) with
// Tau(base, final, k, total): the first update uses base.
func Tau(base, final float64, step, total int) float64 {
	if total <= 0 || step >= total {
		return final
	}
	if step < 0 {
		step = 0
	}
	return final - (final-base)*(math.Cos(math.Pi*float64(step)/float64(total))+1)/2
}
