package autodiff

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/sslrun/sslrun/core/tensor"
)

// GradCheckOptions tunes GradCheck. Zero fields take the defaults.
type GradCheckOptions struct {
	// Eps is the finite-difference step (default 1e-2). The forward pass is
	// float32, so steps much below 1e-3 drown in rounding noise.
	Eps float64
	// Atol and Rtol are the tolerances (defaults 1e-3 and 1e-2): an
	// element passes when |analytic-numeric| <= Atol + Rtol*max(|analytic|,
	// |numeric|).
	Atol, Rtol float64
	// Seed chooses the random weights of the scalar objective.
	Seed uint64
	// Constant marks inputs (by index) that are passed as non-differentiable
	// Inputs and not checked.
	Constant []bool
}

// GradCheckResult summarizes a gradient check.
type GradCheckResult struct {
	// Checked is the number of input elements compared.
	Checked int
	// MaxAbsErr is the largest |analytic-numeric|; Worst is the largest
	// error relative to its tolerance (> 1 means failure).
	MaxAbsErr, Worst float64
	// Failures counts elements outside the tolerance.
	Failures int
}

// GradCheck compares the tape's gradients of build with central finite
// differences. It builds out = build(tp, in) once on leaves over copies of
// inputs, reduces it to the scalar L = Σ out·w with fixed random weights w
// (so that every output element matters with a different weight), and
// compares dL/dinput from Backward with (L(x+eps) - L(x-eps)) / 2eps,
// evaluated in no-grad mode with the objective summed in float64. It returns
// an error describing the worst element when any element is outside the
// tolerance. inputs are not modified.
//
// build must be deterministic and must not depend on state that the
// forward pass changes (BatchNorm's running statistics only matter in
// evaluation mode, where they are not changed).
func GradCheck(build func(tp *Tape, in []*Var) *Var, inputs []*tensor.T, opts GradCheckOptions) (GradCheckResult, error) {
	if opts.Eps == 0 {
		opts.Eps = 1e-2
	}
	if opts.Atol == 0 {
		opts.Atol = 1e-3
	}
	if opts.Rtol == 0 {
		opts.Rtol = 1e-2
	}
	var res GradCheckResult
	xs := make([]*tensor.T, len(inputs))
	for i, t := range inputs {
		xs[i] = t.Clone()
	}
	constant := func(i int) bool { return i < len(opts.Constant) && opts.Constant[i] }

	tp := NewTape()
	vars := make([]*Var, len(xs))
	for i, x := range xs {
		if constant(i) {
			vars[i] = tp.Input(x)
		} else {
			vars[i] = tp.Leaf(x)
		}
	}
	out := build(tp, vars)
	if out == nil {
		return res, errors.New("gradcheck: build returned nil")
	}
	rng := rand.New(rand.NewPCG(opts.Seed, 0x5eed))
	w := tensor.New(out.Value.Shape...)
	for i := range w.Data {
		w.Data[i] = float32(rng.NormFloat64())
	}
	loss := tp.Sum(tp.Mul(out, tp.Input(w)))
	if err := tp.Backward(loss); err != nil {
		return res, fmt.Errorf("gradcheck: %w", err)
	}
	analytic := make([][]float32, len(xs))
	for i, v := range vars {
		if !constant(i) {
			analytic[i] = append([]float32(nil), v.Grad.Data...)
		}
	}

	objective := func() float64 {
		tp.Reset()
		prev := tp.SetGrad(false)
		in := make([]*Var, len(xs))
		for i, x := range xs {
			in[i] = tp.Input(x)
		}
		o := build(tp, in)
		tp.SetGrad(prev)
		var s float64
		for i, v := range o.Value.Data {
			s += float64(v) * float64(w.Data[i])
		}
		return s
	}

	var worstMsg string
	for i, x := range xs {
		if constant(i) {
			continue
		}
		for j := range x.Data {
			orig := x.Data[j]
			x.Data[j] = orig + float32(opts.Eps)
			fp := objective()
			x.Data[j] = orig - float32(opts.Eps)
			fm := objective()
			x.Data[j] = orig
			// The step actually taken in float32 may differ from Eps.
			h := float64(orig+float32(opts.Eps)) - float64(orig-float32(opts.Eps))
			num := (fp - fm) / h
			ana := float64(analytic[i][j])
			diff := math.Abs(ana - num)
			tol := opts.Atol + opts.Rtol*math.Max(math.Abs(ana), math.Abs(num))
			r := diff / tol
			if math.IsNaN(diff) {
				r = math.Inf(1)
			}
			res.Checked++
			res.MaxAbsErr = math.Max(res.MaxAbsErr, diff)
			if r > 1 {
				res.Failures++
			}
			if r > res.Worst || (math.IsInf(r, 1) && worstMsg == "") {
				res.Worst = r
				worstMsg = fmt.Sprintf("input %d %v element %d: analytic %.6g, numeric %.6g", i, x.Shape, j, ana, num)
			}
		}
	}
	if res.Failures > 0 {
		return res, fmt.Errorf("gradcheck: %d of %d elements outside tolerance; worst %s", res.Failures, res.Checked, worstMsg)
	}
	return res, nil
}
