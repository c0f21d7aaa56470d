// Package simclr is the NT-Xent (InfoNCE) loss of SimCLR (Chen et al., 2020)
// and the triplet losses that Zhang et al. (ICLR 2022) use to separate the
// de-centering and de-correlation effects of negative samples.
//
// Both losses are pure functions of the projector outputs of two views,
// recorded on an autodiff tape; the gradients on z come from Backward.
package simclr

import (
	"fmt"

	"github.com/sslrun/sslrun/core/autodiff"
)

// NTXent returns SimCLR's loss for projector outputs z1, z2 [N, d] of two
// views: with Z = l2normalize(cat(z1, z2)) and S = Z Z^T / temperature, the
// cross-entropy of each of the 2N rows (its own entry masked out) against its
// positive, the other view of the same image, averaged over the 2N rows.
//
// labels must have length 2N and is filled here; callers keep it across steps
// so that the loss allocates nothing.
func NTXent(tp *autodiff.Tape, z1, z2 *autodiff.Var, temperature float64, labels []int) (*autodiff.Var, error) {
	if temperature <= 0 {
		return nil, fmt.Errorf("simclr: temperature %g must be positive", temperature)
	}
	n := z1.Shape()[0]
	if len(labels) != 2*n {
		return nil, fmt.Errorf("simclr: labels has length %d, want %d", len(labels), 2*n)
	}
	for i := 0; i < n; i++ {
		labels[i], labels[n+i] = n+i, i
	}
	z := tp.L2Normalize(tp.ConcatRows(z1, z2))
	s := tp.Scale(tp.MatMul(z, z, false, true), float32(1/temperature))
	return tp.CrossEntropy(tp.FillDiagonal(s, autodiff.NegInf), labels), nil
}

// Negative says which part of the negative sample a triplet loss keeps.
type Negative string

const (
	// NegativeFull is the triplet loss with one negative: -Z_a · sg(Z_b - Z_n).
	NegativeFull Negative = "full"
	// NegativeCenter keeps only the centre of the negatives:
	// -Z_a · sg(Z_b - mean(Z_n)). It still learns.
	NegativeCenter Negative = "center"
	// NegativeResidual keeps only their residual:
	// -Z_a · sg(Z_b - (Z_n - mean(Z_n))). It collapses.
	NegativeResidual Negative = "residual"
)

// Triplet returns the paper's triplet loss, symmetrized over the views:
// 1/2 (T(a, b) + T(b, a)) with T(a, b) = -mean_m Z_a,m · sg(Z_b,m - n_m). The
// negative of image m is the other view of image m+1 (mod N), so each anchor
// has exactly one negative and the batch mean of the negatives is the centre
// of the other view.
func Triplet(tp *autodiff.Tape, z1, z2 *autodiff.Var, neg Negative) (*autodiff.Var, error) {
	switch neg {
	case NegativeFull, NegativeCenter, NegativeResidual:
	default:
		return nil, fmt.Errorf("simclr: unknown triplet negative %q (want %q, %q or %q)", neg, NegativeFull, NegativeCenter, NegativeResidual)
	}
	if n := z1.Shape()[0]; n < 2 {
		return nil, fmt.Errorf("simclr: triplet loss needs a batch of at least 2, have %d", n)
	}
	a := tripletHalf(tp, z1, z2, neg)
	b := tripletHalf(tp, z2, z1, neg)
	return tp.Scale(tp.Add(a, b), -0.5), nil
}

// tripletHalf is mean_m Z_a,m · target_m for one direction.
func tripletHalf(tp *autodiff.Tape, za, zb *autodiff.Var, neg Negative) *autodiff.Var {
	prev := tp.SetGrad(false)
	zbn := tp.L2Normalize(zb)
	n := zbn.Shape()[0]
	var sub *autodiff.Var
	switch neg {
	case NegativeFull:
		// Roll by one row: the negative of m is row m+1 of the other view.
		sub = tp.ConcatRows(tp.SliceRows(zbn, 1, n), tp.SliceRows(zbn, 0, 1))
	case NegativeCenter:
		sub = tp.BroadcastRows(tp.MeanRows(zbn), n)
	case NegativeResidual:
		rolled := tp.ConcatRows(tp.SliceRows(zbn, 1, n), tp.SliceRows(zbn, 0, 1))
		sub = tp.Sub(rolled, tp.BroadcastRows(tp.MeanRows(zbn), n))
	}
	target := tp.Sub(zbn, sub)
	tp.SetGrad(prev)
	return tp.Mean(tp.RowDot(tp.L2Normalize(za), tp.Detach(target)))
}
