package optim

import (
	"fmt"

	"github.com/sslrun/sslrun/core/safetensors"
	"github.com/sslrun/sslrun/core/tensor"
)

// Names of the per-parameter state tensors, as PyTorch's optimizer
// state_dict names them: "<param>.momentum_buffer" (SGD and LARS with
// momentum), "<param>.exp_avg" and "<param>.exp_avg_sq" (AdamW).
const (
	MomentumBuffer = "momentum_buffer"
	ExpAvg         = "exp_avg"
	ExpAvgSq       = "exp_avg_sq"
)

// StepName is the name Save gives the step counter.
const StepName = "step"

// State returns the optimizer's state tensors by name: zero-copy views of
// the live buffers (shaped like their parameters), so their values change
// with every Step; clone them to keep a snapshot. Parameters without state (SGD without momentum) contribute nothing.
// The step counter is separate (Steps), since the state is only meaningful
// with it: SGD's first step initializes the momentum buffer.
func (o *Optimizer) State() map[string]*tensor.T {
	out := make(map[string]*tensor.T, 2*len(o.slots))
	for i := range o.slots {
		s := &o.slots[i]
		shape := s.p.Shape
		if shape == nil {
			shape = []int{len(s.p.Value)}
		}
		add := func(kind string, data []float32) {
			if data != nil {
				out[s.p.Name+"."+kind] = &tensor.T{Shape: append([]int(nil), shape...), Data: data}
			}
		}
		add(MomentumBuffer, s.buf)
		add(ExpAvg, s.m)
		add(ExpAvgSq, s.v)
	}
	return out
}

// LoadState copies state tensors (as State names them) into the optimizer
// and sets the step counter. Every expected name must be present with the
// right number of elements; extra names are ignored, so a whole checkpoint
// map can be passed.
func (o *Optimizer) LoadState(state map[string]*tensor.T, steps int64) error {
	if steps < 0 {
		return fmt.Errorf("optim: load state: negative step count %d", steps)
	}
	// Check everything before copying anything, so a failed load leaves
	// the optimizer as it was.
	for pass := 0; pass < 2; pass++ {
		for i := range o.slots {
			s := &o.slots[i]
			for _, b := range []struct {
				kind string
				dst  []float32
			}{{MomentumBuffer, s.buf}, {ExpAvg, s.m}, {ExpAvgSq, s.v}} {
				if b.dst == nil {
					continue
				}
				name := s.p.Name + "." + b.kind
				t, ok := state[name]
				switch {
				case !ok || t == nil:
					return fmt.Errorf("optim: load state: missing %q", name)
				case len(t.Data) != len(b.dst):
					return fmt.Errorf("optim: load state: %q has %d values, want %d", name, len(t.Data), len(b.dst))
				}
				if pass == 1 {
					copy(b.dst, t.Data)
				}
			}
		}
	}
	o.steps = steps
	return nil
}

// Save returns the state and step counter ready for
// safetensors.WriteFileMixed, every name prefixed with prefix (for example
// "optim."), the counter as an int64 tensor of shape [1] named prefix+"step".
// The float32 tensors are views of the live buffers.
func (o *Optimizer) Save(prefix string) (map[string]*tensor.T, map[string]safetensors.Int64) {
	st := o.State()
	out := make(map[string]*tensor.T, len(st))
	for k, v := range st {
		out[prefix+k] = v
	}
	return out, map[string]safetensors.Int64{prefix + StepName: {Shape: []int{1}, Data: []int64{o.steps}}}
}

// Load restores what Save wrote, read back from a safetensors file.
func (o *Optimizer) Load(f *safetensors.File, prefix string) error {
	steps, _, err := f.Int64s(prefix + StepName)
	if err != nil {
		return fmt.Errorf("optim: load: %w", err)
	}
	if len(steps) != 1 {
		return fmt.Errorf("optim: load: %q has %d values, want 1", prefix+StepName, len(steps))
	}
	want := o.State()
	state := make(map[string]*tensor.T, len(want))
	for k := range want {
		t, err := f.Tensor(prefix + k)
		if err != nil {
			return fmt.Errorf("optim: load: %w", err)
		}
		state[k] = t
	}
	return o.LoadState(state, steps[0])
}
