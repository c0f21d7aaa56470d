// Package train runs self-supervised training steps in process: a model, a
// loss written against core/autodiff, an optimizer and, for BYOL-style
// methods, an EMA target network.
//
// It is the in-process counterpart of the plugin runner: benchmarks, examples
// and tests drive it directly, and it defines the shape every loss sees
// (Outputs), whether it runs here or in a plugin process.
package train

import (
	"fmt"
	"math"

	"github.com/sslrun/sslrun/core/autodiff"
	"github.com/sslrun/sslrun/core/nn"
	"github.com/sslrun/sslrun/core/optim"
	"github.com/sslrun/sslrun/core/tensor"
)

// Outputs are the tensors of one step that a loss reads: projections z and
// predictions p of both views from the online network (p is z itself when
// the model has no predictor), and, with a target network, its projections
// t of both views (recorded without gradient).
type Outputs struct {
	Z1, Z2, P1, P2 *autodiff.Var
	T1, T2         *autodiff.Var
}

// LossFunc computes a loss on tp from a step's outputs. It must record its
// ops on tp so that Backward reaches the network.
type LossFunc func(tp *autodiff.Tape, o *Outputs) (*autodiff.Var, error)

// Config configures a Step.
type Config struct {
	// Model is the online network.
	Model *nn.Model
	// Loss is the method's loss.
	Loss LossFunc
	// EMATarget adds a target network, a copy of Model kept as an
	// exponential moving average of it (BYOL).
	EMATarget bool
	// Optimizer is the algorithm; Base holds its options (lr multipliers,
	// momentum, weight decay, LARS settings) for every parameter.
	Optimizer optim.Algorithm
	Base      optim.Group
	// PredictorLR, when positive, gives the predictor a fixed learning rate
	// that the schedule does not change (SimSiam's recipe).
	PredictorLR float64
}

// Step is one method's training step on one model. It is not safe for
// concurrent use.
type Step struct {
	Model  *nn.Model
	Target *nn.Model
	Opt    *optim.Optimizer
	EMA    *optim.EMA
	Tape   *autodiff.Tape

	loss LossFunc
	out  Outputs
	tout [2]*tensor.T // the target's projections of the last Run
}

// NewStep builds the optimizer (and target network) for cfg.
func NewStep(cfg Config) (*Step, error) {
	if cfg.Model == nil || cfg.Loss == nil {
		return nil, fmt.Errorf("train: a step needs a model and a loss")
	}
	s := &Step{Model: cfg.Model, Tape: autodiff.NewTape(), loss: cfg.Loss}
	// A step reads only the parameters' gradients: recycling the
	// intermediates' buffers during Backward roughly halves its memory.
	s.Tape.SetReuseGrads(true)
	opt, err := optim.New(cfg.Optimizer, Groups(cfg.Model, cfg.Base, cfg.PredictorLR))
	if err != nil {
		return nil, fmt.Errorf("train: optimizer: %w", err)
	}
	s.Opt = opt
	if cfg.EMATarget {
		s.Target = cfg.Model.Clone()
		// The target's projections are never differentiated; BatchNorm
		// still uses batch statistics as in BYOL's reference code.
		online := OptimParams(nn.Params(cfg.Model.Backbone, "backbone."))
		online = append(online, OptimParams(nn.Params(cfg.Model.Projector, "projector."))...)
		target := OptimParams(nn.Params(s.Target.Backbone, "backbone."))
		target = append(target, OptimParams(nn.Params(s.Target.Projector, "projector."))...)
		if s.EMA, err = optim.NewEMA(online, target); err != nil {
			return nil, fmt.Errorf("train: target network: %w", err)
		}
	}
	return s, nil
}

// Groups splits a model's parameters into optimizer groups: everything but
// the predictor with base's options, and the predictor either the same way or,
// when predictorLR > 0, at that fixed learning rate.
func Groups(m *nn.Model, base optim.Group, predictorLR float64) []optim.Group {
	main := base
	main.Name = "encoder"
	main.Params = OptimParams(nn.Params(m.Backbone, "backbone."))
	main.Params = append(main.Params, OptimParams(nn.Params(m.Projector, "projector."))...)
	pred := base
	pred.Name = "predictor"
	pred.Params = OptimParams(nn.Params(m.Predictor, "predictor."))
	if predictorLR > 0 {
		pred.Static, pred.FixedLR = true, predictorLR
	}
	if len(pred.Params) == 0 {
		return []optim.Group{main}
	}
	return []optim.Group{main, pred}
}

// OptimParams returns optimizer views of model parameters: they share the
// parameters' value and gradient memory.
func OptimParams(ps []nn.Param) []*optim.Param {
	out := make([]*optim.Param, len(ps))
	for i, p := range ps {
		k := optim.Weight
		switch p.Kind {
		case nn.KindBias:
			k = optim.Bias
		case nn.KindNormWeight, nn.KindNormBias:
			k = optim.Norm
		}
		out[i] = &optim.Param{Name: p.Name, Value: p.Var.Value.Data, Grad: p.Var.Grad.Data, Shape: p.Var.Value.Shape, Kind: k}
	}
	return out
}

// NonFiniteLossError reports a NaN or infinite loss; the step's parameters
// were not updated.
type NonFiniteLossError struct{ Loss float32 }

// Error describes the loss.
func (e *NonFiniteLossError) Error() string {
	return fmt.Sprintf("train: loss is %v; parameters left unchanged", e.Loss)
}

// Run performs one step on the two views x1, x2 ([N, ...] batches): forward,
// loss, backward, an optimizer step at learning rate lr and, with a target
// network, an EMA update with coefficient tau. It returns the loss. The
// outputs stay readable through Outputs until the next Run.
func (s *Step) Run(x1, x2 *tensor.T, lr, tau float64) (float32, error) {
	// BatchNorm needs two samples for batch statistics; a last partial
	// batch of one (drop_last off) must be an error, not a panic.
	if n := x1.Rows(); n < 2 || x2.Rows() != n {
		return 0, fmt.Errorf("train: views of %d and %d samples; a step needs two views of the same batch of at least 2", n, x2.Rows())
	}
	tp := s.Tape
	o := &s.out
	o.T1, o.T2 = nil, nil
	if s.Target != nil {
		// The target first, on the step's tape (see nn.Model.Project);
		// its projections are kept in buffers of the Step's own.
		for i, x := range [2]*tensor.T{x1, x2} {
			t := s.Target.Project(tp, x)
			if s.tout[i] == nil || !tensor.EqualShapes(s.tout[i].Shape, t.Shape) {
				s.tout[i] = tensor.New(t.Shape...)
			}
			copy(s.tout[i].Data, t.Data)
		}
	}
	tp.Reset()
	s.Opt.ZeroGrad()
	in1, in2 := tp.Input(x1), tp.Input(x2)
	_, o.Z1, o.P1 = s.Model.Forward(tp, in1)
	_, o.Z2, o.P2 = s.Model.Forward(tp, in2)
	if s.Target != nil {
		o.T1, o.T2 = tp.Input(s.tout[0]), tp.Input(s.tout[1])
	}
	loss, err := s.loss(tp, o)
	if err != nil {
		return 0, err
	}
	if loss == nil {
		return 0, fmt.Errorf("train: the loss function returned no loss")
	}
	if loss.Len() != 1 {
		return 0, fmt.Errorf("train: the loss must be one value, got shape %v", loss.Shape())
	}
	v := loss.Item()
	if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
		return v, &NonFiniteLossError{Loss: v}
	}
	if err := tp.Backward(loss); err != nil {
		return v, fmt.Errorf("train: backward: %w", err)
	}
	s.Opt.Step(lr)
	if s.EMA != nil {
		s.EMA.Update(tau)
	}
	return v, nil
}

// Outputs returns the last step's outputs; they are valid until the next Run.
func (s *Step) Outputs() *Outputs { return &s.out }
