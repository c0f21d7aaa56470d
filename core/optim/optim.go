// Package optim holds sslrun's optimizers (SGD, LARS, AdamW), learning-rate
// and momentum schedules, and the exponential moving average that builds
// BYOL's target network.
//
// The package works on raw float32 slices (Param) rather than on autodiff
// nodes so that any layer code can hand it its weights and gradients. The
// update rules reproduce PyTorch 1.13's torch.optim.SGD and torch.optim.AdamW
// and solo-learn's LARS step for step (see the golden tests), because recipes
// from the self-supervised literature are tuned against exactly those rules.
//
// An Optimizer owns all its state: buffers are allocated once in New, and
// Step neither allocates nor returns errors, so it can run every iteration.
package optim

import (
	"fmt"
	"math"

	"github.com/sslrun/sslrun/core/tensor"
)

// ParamKind tells what a parameter is, because SSL recipes treat biases and
// normalization parameters differently from weights: solo-learn's
// exclude_bias_n_norm_wd drops their weight decay and LARS's
// exclude_bias_n_norm skips their layer-wise adaptation. solo-learn decides
// by ndim <= 1; sslrun asks the layer, which says the same thing for every
// standard layer and stays right for unusual shapes.
type ParamKind int

const (
	// Weight is a linear or convolution weight (or any other tensor that
	// gets weight decay and LARS adaptation).
	Weight ParamKind = iota
	// Bias is a linear or convolution bias.
	Bias
	// Norm is a normalization layer's affine parameter (BatchNorm gamma or beta).
	Norm
)

// String returns "weight", "bias" or "norm".
func (k ParamKind) String() string {
	switch k {
	case Weight:
		return "weight"
	case Bias:
		return "bias"
	case Norm:
		return "norm"
	}
	return fmt.Sprintf("ParamKind(%d)", int(k))
}

// Param is one trainable tensor: its values and the gradient the backward
// pass accumulated into Grad. The optimizer keeps the slices it sees in New;
// the host must update Value and Grad in place and never reslice them.
type Param struct {
	// Name is unique within an optimizer; state tensors are named after it.
	Name string
	// Value and Grad are the parameter and its gradient, row-major, with
	// len(Value) == len(Grad) == product of Shape.
	Value, Grad []float32
	// Shape is the logical shape (informational; state tensors take it).
	Shape []int
	// Kind selects bias / normalization exclusions.
	Kind ParamKind
}

// ZeroGrad sets the gradients of params to zero.
func ZeroGrad(params []*Param) {
	for _, p := range params {
		clear(p.Grad)
	}
}

// Algorithm selects the update rule of an Optimizer.
type Algorithm int

const (
	// SGD is torch.optim.SGD (1.13): d = g + wd*p; with momentum mu the
	// buffer starts as d and then becomes mu*buf + (1-dampening)*d; Nesterov
	// uses d + mu*buf, plain momentum uses buf; p -= lr*d.
	SGD Algorithm = iota
	// LARS is solo-learn's LARS (solo/utils/lars.py): for adapted parameters
	// with non-zero ||p|| and ||g||, d = s*(g + wd*p) with trust ratio
	// s = eta*||p||/(||g|| + wd*||p|| + eps), or min(s/lr, 1) with ClipLR;
	// every other parameter uses d = g with no weight decay at all. Then SGD
	// momentum as above.
	LARS
	// AdamW is torch.optim.AdamW (1.13) without amsgrad: p *= 1 - lr*wd;
	// m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g*g;
	// p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps).
	AdamW
)

// String returns "sgd", "lars" or "adamw".
func (a Algorithm) String() string {
	switch a {
	case SGD:
		return "sgd"
	case LARS:
		return "lars"
	case AdamW:
		return "adamw"
	}
	return fmt.Sprintf("Algorithm(%d)", int(a))
}

// ParseAlgorithm maps "sgd", "lars" or "adamw" to an Algorithm.
func ParseAlgorithm(s string) (Algorithm, error) {
	switch s {
	case "sgd":
		return SGD, nil
	case "lars":
		return LARS, nil
	case "adamw":
		return AdamW, nil
	}
	return 0, fmt.Errorf("optim: unknown algorithm %q (want sgd, lars or adamw)", s)
}

// Group is a set of parameters sharing hyperparameters, like a PyTorch
// param group. Fields are used exactly as given (no hidden defaults) except
// LRScale, whose zero value means 1; Defaults returns the PyTorch /
// solo-learn defaults of each algorithm to start from.
type Group struct {
	// Name labels the group in errors and logs.
	Name   string
	Params []*Param

	// LRScale multiplies the lr passed to Step (0 means 1).
	LRScale float64
	// Static makes the group ignore the lr passed to Step and always use
	// FixedLR: solo-learn's static_lr, which SimSiam uses for its predictor
	// ("fixed predictor lr"). ClipLR divides by this lr too.
	Static  bool
	FixedLR float64

	// WeightDecay is the L2 penalty (SGD, LARS) or decoupled decay (AdamW).
	WeightDecay float64
	// NoDecayBiasNorm gives Bias and Norm parameters a weight decay of 0,
	// as solo-learn's exclude_bias_n_norm_wd does by splitting each group in
	// two (which also changes LARS's trust ratio for them).
	NoDecayBiasNorm bool

	// Momentum, Dampening and Nesterov configure SGD and LARS momentum.
	Momentum, Dampening float64
	Nesterov            bool

	// Eta is LARS's trust coefficient; ClipLR turns on solo-learn's
	// clip_lars_lr; ExcludeBiasNorm turns on exclude_bias_n_norm (no
	// adaptation and no weight decay for Bias and Norm parameters).
	Eta             float64
	ClipLR          bool
	ExcludeBiasNorm bool

	// Beta1 and Beta2 are AdamW's moment decay rates.
	Beta1, Beta2 float64
	// Eps is LARS's trust-ratio denominator term and AdamW's denominator term.
	Eps float64
}

// Defaults returns a Group holding PyTorch's defaults for SGD and AdamW
// (torch 1.13: AdamW lr-independent defaults betas (0.9, 0.999), eps 1e-8,
// weight_decay 1e-2) and solo-learn's for LARS (eta 1e-3, eps 1e-8), for the
// caller to fill Params and override fields.
func Defaults(a Algorithm) Group {
	switch a {
	case LARS:
		return Group{Eta: 1e-3, Eps: 1e-8}
	case AdamW:
		return Group{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 1e-2}
	}
	return Group{}
}

// LR returns the learning rate the group uses when Step is given lr.
func (g *Group) LR(lr float64) float64 {
	if g.Static {
		return g.FixedLR
	}
	if g.LRScale != 0 {
		return lr * g.LRScale
	}
	return lr
}

// slot is one parameter with its resolved per-parameter settings and state.
type slot struct {
	p     *Param
	group int
	wd    float64 // weight decay after NoDecayBiasNorm
	adapt bool    // LARS: trust ratio applies (not excluded)

	// State; nil when the algorithm or settings do not need it.
	buf    []float32 // SGD/LARS momentum_buffer
	m, v   []float32 // AdamW exp_avg, exp_avg_sq
	c0, c1 int       // this slot's chunks are [c0, c1)

	// Scalars for the current step, set by Step before the update pass:
	// the effective lr, the weight decay and gradient scale actually applied
	// (LARS: trust ratio, or 1 and no decay when not adapted), and AdamW's
	// decoupled decay factor, step size and sqrt of the second bias
	// correction.
	lr, wdStep, scale       float32
	decay, stepSize, bc2sqr float32
}

// chunk is a contiguous range of one slot's elements: the unit of parallel
// work. Chunks have a fixed size so that reductions (LARS norms) sum in the
// same order whatever the thread count, keeping runs reproducible.
type chunk struct {
	slot   int
	lo, hi int
}

// chunkSize is the number of elements per chunk; 32K float32 = 128 KB per
// array, big enough to amortize scheduling, small enough to balance two to
// eight workers on a ResNet-18.
const chunkSize = 1 << 15

// parallelMin is the total element count below which Step stays on the
// calling goroutine: handing tiny updates to workers costs more than it saves.
const parallelMin = 1 << 16

// Optimizer updates a fixed set of parameters with one Algorithm. It is not
// safe for concurrent use.
type Optimizer struct {
	alg    Algorithm
	groups []Group
	slots  []slot
	chunks []chunk
	// norms holds per-chunk partial sums of squares (p, g) for LARS.
	norms  []float64
	total  int
	steps  int64
	par    bool
	normT  normTask
	updT   updateTask
	byName map[string]int
}

// New builds an optimizer over groups and allocates all its state. Groups are
// copied (later edits to the caller's Group values have no effect; use
// SetGroup to change hyperparameters), parameters are shared.
func New(alg Algorithm, groups []Group) (*Optimizer, error) {
	if alg != SGD && alg != LARS && alg != AdamW {
		return nil, fmt.Errorf("optim: unknown algorithm %d", int(alg))
	}
	o := &Optimizer{alg: alg, groups: append([]Group(nil), groups...), byName: map[string]int{}}
	seen := map[*Param]bool{}
	for gi := range o.groups {
		g := &o.groups[gi]
		if err := validate(alg, g); err != nil {
			return nil, fmt.Errorf("optim: %s group %d (%q): %w", alg, gi, g.Name, err)
		}
		g.Params = append([]*Param(nil), g.Params...)
		for _, p := range g.Params {
			if p == nil {
				return nil, fmt.Errorf("optim: group %d (%q): nil param", gi, g.Name)
			}
			if err := checkParam(p); err != nil {
				return nil, fmt.Errorf("optim: group %d (%q): %w", gi, g.Name, err)
			}
			if seen[p] {
				return nil, fmt.Errorf("optim: param %q appears twice", p.Name)
			}
			if _, dup := o.byName[p.Name]; dup {
				return nil, fmt.Errorf("optim: two params named %q", p.Name)
			}
			seen[p] = true
			o.byName[p.Name] = len(o.slots)
			s := slot{p: p, group: gi, wd: g.WeightDecay, adapt: alg == LARS}
			if g.NoDecayBiasNorm && p.Kind != Weight {
				s.wd = 0
			}
			if alg == LARS && g.ExcludeBiasNorm && p.Kind != Weight {
				s.adapt = false
			}
			n := len(p.Value)
			switch {
			case alg == AdamW:
				s.m, s.v = make([]float32, n), make([]float32, n)
			case g.Momentum != 0:
				s.buf = make([]float32, n)
			}
			s.c0 = len(o.chunks)
			for lo := 0; lo < n; lo += chunkSize {
				o.chunks = append(o.chunks, chunk{slot: len(o.slots), lo: lo, hi: min(lo+chunkSize, n)})
			}
			s.c1 = len(o.chunks)
			o.total += n
			o.slots = append(o.slots, s)
		}
	}
	if alg == LARS {
		o.norms = make([]float64, 2*len(o.chunks))
	}
	o.normT.o, o.updT.o = o, o
	return o, nil
}

func validate(alg Algorithm, g *Group) error {
	bad := func(v float64) bool { return math.IsNaN(v) || math.IsInf(v, 0) || v < 0 }
	switch {
	case bad(g.LRScale):
		return fmt.Errorf("invalid LRScale %v", g.LRScale)
	case g.Static && bad(g.FixedLR):
		return fmt.Errorf("invalid FixedLR %v", g.FixedLR)
	case bad(g.WeightDecay):
		return fmt.Errorf("invalid WeightDecay %v", g.WeightDecay)
	case bad(g.Eps):
		return fmt.Errorf("invalid Eps %v", g.Eps)
	}
	switch alg {
	case SGD, LARS:
		if bad(g.Momentum) || bad(g.Dampening) {
			return fmt.Errorf("invalid Momentum %v / Dampening %v", g.Momentum, g.Dampening)
		}
		if g.Nesterov && (g.Momentum <= 0 || g.Dampening != 0) {
			return fmt.Errorf("nesterov momentum requires a momentum and zero dampening")
		}
		if alg == LARS && (bad(g.Eta) || g.Eta == 0) {
			return fmt.Errorf("invalid LARS Eta %v", g.Eta)
		}
	case AdamW:
		if !(g.Beta1 >= 0 && g.Beta1 < 1) || !(g.Beta2 >= 0 && g.Beta2 < 1) {
			return fmt.Errorf("invalid betas (%v, %v)", g.Beta1, g.Beta2)
		}
	}
	return nil
}

func checkParam(p *Param) error {
	n := len(p.Value)
	if len(p.Grad) != n {
		return fmt.Errorf("param %q: %d values but %d gradients", p.Name, n, len(p.Grad))
	}
	if p.Shape != nil && tensor.Numel(p.Shape) != n {
		return fmt.Errorf("param %q: shape %v does not hold %d values", p.Name, p.Shape, n)
	}
	if p.Name == "" {
		return fmt.Errorf("param with %d values has no name", n)
	}
	return nil
}

// Algorithm returns the optimizer's update rule.
func (o *Optimizer) Algorithm() Algorithm { return o.alg }

// Groups returns the number of parameter groups.
func (o *Optimizer) Groups() int { return len(o.groups) }

// Group returns a copy of group i (Params shared).
func (o *Optimizer) Group(i int) Group { return o.groups[i] }

// SetGroup replaces group i's hyperparameters with g's, for recipes that
// change them mid-run; g.Params is ignored (the parameter set is fixed at
// New, where the state is allocated). g is validated like New does, and
// switching SGD/LARS momentum between zero and non-zero is refused because
// the momentum buffers exist only when it was non-zero at New.
func (o *Optimizer) SetGroup(i int, g Group) error {
	if i < 0 || i >= len(o.groups) {
		return fmt.Errorf("optim: no group %d", i)
	}
	if err := validate(o.alg, &g); err != nil {
		return fmt.Errorf("optim: %s group %d (%q): %w", o.alg, i, g.Name, err)
	}
	old := o.groups[i]
	if o.alg != AdamW && (old.Momentum == 0) != (g.Momentum == 0) {
		return fmt.Errorf("optim: group %d (%q): cannot switch momentum on or off after New", i, g.Name)
	}
	g.Params = old.Params
	o.groups[i] = g
	for si := range o.slots {
		s := &o.slots[si]
		if s.group != i {
			continue
		}
		s.wd = g.WeightDecay
		if g.NoDecayBiasNorm && s.p.Kind != Weight {
			s.wd = 0
		}
		s.adapt = o.alg == LARS && !(g.ExcludeBiasNorm && s.p.Kind != Weight)
	}
	return nil
}

// Params returns every parameter in group order.
func (o *Optimizer) Params() []*Param {
	out := make([]*Param, len(o.slots))
	for i := range o.slots {
		out[i] = o.slots[i].p
	}
	return out
}

// Steps returns how many steps have been taken (restored by LoadState).
func (o *Optimizer) Steps() int64 { return o.steps }

// ZeroGrad sets every parameter's gradient to zero.
func (o *Optimizer) ZeroGrad() {
	for i := range o.slots {
		clear(o.slots[i].p.Grad)
	}
}
