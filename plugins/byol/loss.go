// Package byol is the loss of BYOL (Grill et al., 2020): online predictions
// regress the target network's projections of the other view.
package byol

import "github.com/sslrun/sslrun/core/autodiff"

// Loss returns mean(2 - 2cos(p1, sg(t2))) + mean(2 - 2cos(p2, sg(t1))) for
// the online predictions p1, p2 and the target projections t1, t2 [N, d].
// The two directions are summed, not averaged, as in the paper and the
// reference code: averaging halves the gradient, a known accuracy bug.
func Loss(tp *autodiff.Tape, p1, p2, t1, t2 *autodiff.Var) *autodiff.Var {
	a := tp.Mean(tp.CosineSimilarity(p1, tp.Detach(t2)))
	b := tp.Mean(tp.CosineSimilarity(p2, tp.Detach(t1)))
	return tp.AddScalar(tp.Scale(tp.Add(a, b), -2), 4)
}
