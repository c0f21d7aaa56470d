package optim

import (
	"fmt"

	"github.com/sslrun/sslrun/core/parallel"
	"github.com/sslrun/sslrun/core/tensor"
)

// EMA keeps a target network as an exponential moving average of an online
// one: xi <- tau*xi + (1-tau)*theta, BYOL's target update (solo-learn's
// MomentumUpdater.update).
//
// Buffers: solo-learn averages parameters only (model.parameters()); the
// target's BatchNorm running statistics are its own, accumulated by its
// forward passes in train mode. To follow solo-learn, build the EMA from
// parameters only. A host that wants the online statistics in the target
// instead can build a second EMA over the buffer pairs and call Copy after
// each step (or Update to average them, as timm's ModelEmaV2 does).
type EMA struct {
	online, target [][]float32
	names          []string
	chunks         []chunk
	total          int
	par            bool
	task           emaTask
}

// SetParallel makes Update split large updates across core/parallel's
// workers (off by default, for the reason given at Optimizer.SetParallel).
func (e *EMA) SetParallel(on bool) { e.par = on }

// NewEMA pairs online[i] with target[i] (as solo-learn zips the two
// parameter lists); the pairs must have equal sizes. Names may differ
// (online and target modules are usually prefixed differently). Only Value
// is used.
func NewEMA(online, target []*Param) (*EMA, error) {
	if len(online) != len(target) {
		return nil, fmt.Errorf("optim: ema: %d online params but %d target params", len(online), len(target))
	}
	e := &EMA{}
	for i := range online {
		o, t := online[i], target[i]
		if o == nil || t == nil {
			return nil, fmt.Errorf("optim: ema: nil param at %d", i)
		}
		if len(o.Value) != len(t.Value) || (o.Shape != nil && t.Shape != nil && !tensor.EqualShapes(o.Shape, t.Shape)) {
			return nil, fmt.Errorf("optim: ema: online %q %v (%d values) does not match target %q %v (%d values)",
				o.Name, o.Shape, len(o.Value), t.Name, t.Shape, len(t.Value))
		}
		for lo := 0; lo < len(o.Value); lo += chunkSize {
			e.chunks = append(e.chunks, chunk{slot: i, lo: lo, hi: min(lo+chunkSize, len(o.Value))})
		}
		e.online = append(e.online, o.Value)
		e.target = append(e.target, t.Value)
		e.names = append(e.names, t.Name)
		e.total += len(o.Value)
	}
	e.task.e = e
	return e, nil
}

// Copy sets target = online (solo-learn's initialize_momentum_params); call
// it once before training.
func (e *EMA) Copy() {
	for i := range e.online {
		copy(e.target[i], e.online[i])
	}
}

// Update moves the target toward the online values with coefficient tau
// (tau = 1 leaves the target unchanged, tau = 0 copies). It does not
// allocate.
func (e *EMA) Update(tau float64) {
	e.task.tau, e.task.omt = float32(tau), float32(1-tau)
	if !e.par || e.total < parallelMin {
		e.task.Do(0, len(e.chunks))
		return
	}
	parallel.Run(len(e.chunks), 1, &e.task)
}

type emaTask struct {
	e        *EMA
	tau, omt float32
}

// Do implements parallel.Task over chunk indices.
func (t *emaTask) Do(lo, hi int) {
	for c := lo; c < hi; c++ {
		ch := t.e.chunks[c]
		x := t.e.target[ch.slot][ch.lo:ch.hi]
		y := t.e.online[ch.slot][ch.lo:ch.hi]
		y = y[:len(x)]
		// torch: tau*mp + (1-tau)*op, each product rounded to float32.
		for i, xi := range x {
			x[i] = t.tau*xi + t.omt*y[i]
		}
	}
}
