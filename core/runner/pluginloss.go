package runner

import (
	"context"
	"fmt"
	"math"

	"github.com/zclconf/go-cty/cty"

	"github.com/sslrun/sslrun/core/autodiff"
	"github.com/sslrun/sslrun/core/plugin"
	"github.com/sslrun/sslrun/core/tensor"
	"github.com/sslrun/sslrun/core/train"
)

// PluginLoss returns a LossFactory backed by a core/plugin loss client: a
// plugin subprocess started with Host.Launch (an external plugin, or a
// bundled one re-executing this binary), or Host.InProcess. It is the
// registry's transport seam: RegisterLoss(name, PluginLoss(h, c)) makes the
// runner train with it exactly as with an in-process loss.
//
// The factory sends the block's configuration (Client.Configure) and maps
// the plugin's LossSpec onto the runner's. Each step copies the tensors the
// spec names (z1, z2, p1, p2, t1, t2) into the host's shared arena, calls
// Compute once, and carries the returned gradients into the host's
// backward pass with a surrogate on the tape,
//
//	L' = sum over inputs x of sum(x * sg(dL/dx)) + (L - that sum's value),
//
// whose gradient with respect to each x is exactly the plugin's dL/dx and
// whose value is the plugin's loss L (to float32 rounding).
//
// The host and client stay the caller's to Close after the runs.
func PluginLoss(h *plugin.Host, c *plugin.Client) LossFactory {
	return func(cfg cty.Value) (LossSpec, train.LossFunc, error) {
		ctx := context.Background()
		if err := c.Configure(ctx, cfg); err != nil {
			return LossSpec{}, nil, err
		}
		l := c.Loss()
		ps, err := l.Spec(ctx)
		if err != nil {
			return LossSpec{}, nil, err
		}
		spec := LossSpec{NeedsPredictor: ps.Predictor, TauBase: ps.TauBase, TauFinal: ps.TauFinal}
		switch ps.Target {
		case plugin.TargetEMA:
			spec.Target = TargetEMA
			if ps.TauSchedule != "" && ps.TauSchedule != "cosine" {
				return LossSpec{}, nil, fmt.Errorf("plugin %s: tau schedule %q is not supported (cosine only)", c.Name(), ps.TauSchedule)
			}
		case plugin.TargetNone, plugin.TargetStopGrad, "":
		default:
			return LossSpec{}, nil, fmt.Errorf("plugin %s: unknown target %q", c.Name(), ps.Target)
		}
		inputs := ps.Inputs
		if len(inputs) == 0 {
			inputs = []string{"z1", "z2"}
			if ps.Predictor {
				inputs = append(inputs, "p1", "p2")
			}
			if spec.Target == TargetEMA {
				inputs = append(inputs, "t1", "t2")
			}
		}
		var step int64
		return spec, func(tp *autodiff.Tape, o *train.Outputs) (*autodiff.Var, error) {
			vars := map[string]*autodiff.Var{"z1": o.Z1, "z2": o.Z2, "p1": o.P1, "p2": o.P2, "t1": o.T1, "t2": o.T2}
			if err := h.Reset(); err != nil {
				return nil, fmt.Errorf("plugin %s: %w", c.Name(), err)
			}
			in := plugin.LossInputs{Step: plugin.Step{Step: step, Train: true}, Tensors: map[string]*tensor.T{}}
			for _, name := range inputs {
				v := vars[name]
				if v == nil {
					return nil, fmt.Errorf("plugin %s: input %q is not available (no predictor or target network?)", c.Name(), name)
				}
				t, err := h.NewTensor(v.Value.Shape...)
				if err != nil {
					return nil, fmt.Errorf("plugin %s: %w", c.Name(), err)
				}
				copy(t.Data, v.Value.Data)
				in.Tensors[name] = t
			}
			step++
			res, err := l.Compute(context.Background(), in)
			if err != nil {
				return nil, err
			}
			var sur *autodiff.Var
			for _, name := range inputs {
				g := res.Grads[name]
				if g == nil || name == "t1" || name == "t2" {
					continue // no gradient, or a target-network output
				}
				v := vars[name]
				if len(g.Data) != len(v.Value.Data) {
					return nil, fmt.Errorf("plugin %s: gradient %q has %d values, input has %d", c.Name(), name, len(g.Data), len(v.Value.Data))
				}
				// The gradient is copied: the plugin's output tensors are
				// valid only until its next call, the tape needs it until
				// Backward.
				gc := tensor.New(v.Value.Shape...)
				copy(gc.Data, g.Data)
				term := tp.Sum(tp.Mul(v, tp.Input(gc)))
				if sur == nil {
					sur = term
				} else {
					sur = tp.Add(sur, term)
				}
			}
			if sur == nil {
				return nil, fmt.Errorf("plugin %s returned no gradient for any of %v", c.Name(), inputs)
			}
			if math.IsNaN(res.Loss) || math.IsInf(res.Loss, 0) {
				// train.Step reports it as a non-finite loss.
				return tp.AddScalar(sur, float32(res.Loss)), nil
			}
			return tp.AddScalar(sur, float32(res.Loss-float64(sur.Item()))), nil
		}, nil
	}
}
