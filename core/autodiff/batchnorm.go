package autodiff

import (
	"fmt"

	"github.com/sslrun/sslrun/core/kernel"
	"github.com/sslrun/sslrun/core/tensor"
)

// BNState holds a batch-norm layer's running statistics, as in PyTorch's
// BatchNorm1d/2d buffers. It is persistent model state: checkpoints save it,
// and the BYOL target network has its own.
type BNState struct {
	// RunningMean and RunningVar have shape [C]. In training mode they are
	// updated as running = (1-Momentum)*running + Momentum*batch, with the
	// unbiased batch variance, exactly like PyTorch; evaluation mode
	// normalizes with them.
	RunningMean, RunningVar *tensor.T
	// Momentum is PyTorch's momentum (default 0.1); Eps is added to the
	// variance (default 1e-5).
	Momentum, Eps float32
}

// NewBNState returns PyTorch's initial state for c channels: running mean
// 0, running variance 1, momentum 0.1, eps 1e-5.
func NewBNState(c int) *BNState {
	st := &BNState{RunningMean: tensor.New(c), RunningVar: tensor.New(c), Momentum: 0.1, Eps: 1e-5}
	st.RunningVar.Fill(1)
	return st
}

// BatchNorm normalizes x [N, C] or [N, C, H, W] per channel, like PyTorch's
// BatchNorm1d/2d. gamma and beta ([C]) are the affine parameters; both nil
// means no affine transform. st holds the running statistics; it may be nil
// only in training mode (then nothing is tracked).
//
// In training mode (train) it normalizes with the batch mean and biased
// variance and updates st's running mean and unbiased variance, also in
// no-grad mode (as PyTorch does for a network in train mode under
// torch.no_grad). In evaluation mode it normalizes with st's running
// statistics and records a plain per-channel affine map.
func (tp *Tape) BatchNorm(x, gamma, beta *Var, st *BNState, train bool) *Var {
	return tp.batchNorm(x, gamma, beta, st, train, false)
}

// BatchNormReLU is ReLU(BatchNorm(x, gamma, beta, st, train)) with the same
// values and gradients. In training mode it runs as one fused op: the ReLU
// is applied in the normalization's pass over the output, its backward
// pass is folded into the batch norm's, and the pre-activation is never
// stored.
func (tp *Tape) BatchNormReLU(x, gamma, beta *Var, st *BNState, train bool) *Var {
	if !train {
		return tp.ReLU(tp.batchNorm(x, gamma, beta, st, false, false))
	}
	return tp.batchNorm(x, gamma, beta, st, true, true)
}

// batchNorm is BatchNorm, followed by a fused ReLU when relu is set (only
// in training mode).
func (tp *Tape) batchNorm(x, gamma, beta *Var, st *BNState, train, relu bool) *Var {
	xs := x.Value.Shape
	if len(xs) < 2 {
		panic(fmt.Sprintf("autodiff: BatchNorm needs [N, C, ...], have %v", xs))
	}
	n, c := xs[0], xs[1]
	s := 1
	if n*c > 0 {
		s = len(x.Value.Data) / (n * c)
	}
	for _, p := range [2]*Var{gamma, beta} {
		if p != nil && (len(p.Value.Shape) != 1 || p.Value.Shape[0] != c) {
			panic(fmt.Sprintf("autodiff: BatchNorm: affine parameter %v for %d channels", p.Value.Shape, c))
		}
	}
	if (gamma == nil) != (beta == nil) {
		panic("autodiff: BatchNorm: gamma and beta must both be set or both nil")
	}
	if st == nil && !train {
		panic("autodiff: BatchNorm: evaluation mode needs running statistics")
	}
	eps := float32(1e-5)
	if st != nil {
		eps = st.Eps
		if st.RunningMean.Len() != c || st.RunningVar.Len() != c {
			panic(fmt.Sprintf("autodiff: BatchNorm: running stats of %d channels for %v", st.RunningMean.Len(), xs))
		}
	}
	y := tp.out(xs, x, gamma, beta)
	mean, invstd := tp.scratch(c), tp.scratch(c)
	var gv, bv, coef []float32
	if gamma != nil {
		gv, bv = gamma.Value.Data, beta.Value.Data
	}
	if train {
		if n*s < 2 {
			panic(fmt.Sprintf("autodiff: BatchNorm: training needs more than 1 value per channel, have %v", xs))
		}
		var rm, rv []float32
		momentum := float32(0.1)
		if st != nil {
			rm, rv, momentum = st.RunningMean.Data, st.RunningVar.Data, st.Momentum
		}
		if relu {
			coef = tp.scratch(4 * c)
			kernel.BatchNormReLUTrain(n, c, s, x.Value.Data, gv, bv, y.Value.Data, mean, invstd, coef, rm, rv, momentum, eps)
		} else {
			kernel.BatchNormTrain(n, c, s, x.Value.Data, gv, bv, y.Value.Data, mean, invstd, rm, rv, momentum, eps)
		}
	} else {
		kernel.BatchNormEval(n, c, s, x.Value.Data, gv, bv, st.RunningMean.Data, st.RunningVar.Data, y.Value.Data, eps)
	}
	if nd := tp.record(opBatchNorm, y, x, gamma, beta); nd != nil {
		nd.s0, nd.s1, nd.t0 = mean, invstd, train
		nd.s2, nd.t1 = coef, relu
		nd.i0, nd.i1, nd.i2 = n, c, s
		nd.f0, nd.bn = eps, st
	}
	return y
}

// backwardBatchNorm calls core/kernel's backward. The kernel has one
// accumulate flag for dx, dgamma and dbeta, while x's gradient may be fresh
// when the parameters' accumulate, so dgamma and dbeta go through C-sized
// scratch buffers that are then folded into the parameters' gradients.
func (tp *Tape) backwardBatchNorm(nd *node) {
	x, gamma, beta := nd.a, nd.b, nd.c
	n, c, s := nd.i0, nd.i1, nd.i2
	train := nd.t0
	g := nd.out.Grad.Data
	needAffine := gamma != nil && (gamma.requires || beta.requires)
	if !x.requires && !needAffine {
		return
	}
	var dx []float32
	acc := false
	if x.requires {
		// With reuseGrads, x's gradient can overwrite the output's in
		// place: the kernel reads each dy only at the index of the dx it
		// writes, after its reductions over dy.
		var ok bool
		if dx, ok = tp.passGrad(nd); !ok {
			var overwrite bool
			dx, overwrite = tp.gradOf(x)
			acc = !overwrite
		}
	} else if train {
		dx = tp.scratch(len(g)) // the training kernel always writes dx
	}
	var gv, dg, db []float32
	if gamma != nil {
		gv = gamma.Value.Data
	}
	if needAffine {
		dg, db = tp.scratch(c), tp.scratch(c)
		if acc {
			clear(dg)
			clear(db)
		}
	}
	switch {
	case train && nd.t1:
		kernel.BatchNormReLUBackward(n, c, s, x.Value.Data, g, gv, nd.s0, nd.s1, nd.s2, dx, dg, db, acc)
	case train:
		kernel.BatchNormBackward(n, c, s, x.Value.Data, g, gv, nd.s0, nd.s1, dx, dg, db, acc)
	default:
		st := nd.bn
		kernel.BatchNormEvalBackward(n, c, s, x.Value.Data, g, gv, st.RunningMean.Data, st.RunningVar.Data, nd.f0, dx, dg, db, acc)
	}
	if needAffine {
		for k, p := range [2]*Var{gamma, beta} {
			if !p.requires {
				continue
			}
			src := dg
			if k == 1 {
				src = db
			}
			pg, overwrite := tp.gradOf(p)
			if overwrite {
				copy(pg, src)
			} else {
				for i, v := range src {
					pg[i] += v
				}
			}
		}
	}
}
