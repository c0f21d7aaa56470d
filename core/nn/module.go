package nn

import (
	"fmt"

	"github.com/sslrun/sslrun/core/autodiff"
	"github.com/sslrun/sslrun/core/tensor"
)

// Module is a layer or a model.
type Module interface {
	// Forward computes the module's output for x on tp. Shape mismatches
	// are programmer errors and panic (in the tape's ops).
	Forward(tp *autodiff.Tape, x *autodiff.Var) *autodiff.Var
	// Visit calls fn for every parameter and buffer of the module and its
	// children, in PyTorch state_dict order (own parameters, own buffers,
	// then children in registration order), with names prefixed by prefix.
	Visit(prefix string, fn func(Entry))
	// SetTrain switches the module and its children between training
	// (BatchNorm batch statistics) and evaluation (running statistics).
	SetTrain(train bool)
	// Clone returns a deep copy: new parameters (with zeroed Grad) and buffers
	// holding the same values, the same mode. BYOL's EMA target is a Clone
	// of the online network.
	Clone() Module
}

// Kind classifies an Entry: what it is for optimizer parameter groups (LARS
// and weight-decay exclusions) and how it is initialised.
type Kind int

const (
	// KindWeight is a Linear or Conv2d weight.
	KindWeight Kind = iota
	// KindBias is a Linear or Conv2d bias, or the bias-only predictor's bias.
	KindBias
	// KindNormWeight is a BatchNorm affine weight (gamma).
	KindNormWeight
	// KindNormBias is a BatchNorm affine bias (beta).
	KindNormBias
	// KindRunningMean is a BatchNorm running_mean buffer.
	KindRunningMean
	// KindRunningVar is a BatchNorm running_var buffer.
	KindRunningVar
	// KindNumBatches is a BatchNorm num_batches_tracked counter (int64).
	KindNumBatches
)

var kindNames = [...]string{"weight", "bias", "norm_weight", "norm_bias", "running_mean", "running_var", "num_batches_tracked"}

// String returns a short lower-case name of the kind.
func (k Kind) String() string {
	if k < 0 || int(k) >= len(kindNames) {
		return fmt.Sprintf("Kind(%d)", int(k))
	}
	return kindNames[k]
}

// IsParam reports whether entries of this kind are trainable parameters.
func (k Kind) IsParam() bool { return k <= KindNormBias }

// IsBiasOrNorm reports whether a parameter is a bias or a BatchNorm affine
// parameter: the group that LARS leaves unadapted and that recipes often
// exclude from weight decay.
func (k Kind) IsBiasOrNorm() bool { return k == KindBias || k == KindNormWeight || k == KindNormBias }

// Entry is one state_dict item visited by Module.Visit. Exactly one of
// Param, Buffer and Count is set.
type Entry struct {
	// Name is the PyTorch state_dict name, including the Visit prefix.
	Name string
	// Kind says what the entry is.
	Kind Kind
	// Param is the trainable parameter (KindWeight ... KindNormBias).
	Param *autodiff.Var
	// Buffer is a float buffer (running statistics).
	Buffer *tensor.T
	// Count is an integer buffer (num_batches_tracked).
	Count *int64
	// FanIn is the fan-in of the Linear or Conv2d layer that owns a weight
	// or bias (in_features, or in_channels*kh*kw): PyTorch's default
	// initialisation bound is 1/sqrt(FanIn). Zero for other entries.
	FanIn int
}

// Tensor returns the entry's float tensor (parameter value or buffer), or
// nil for a counter.
func (e Entry) Tensor() *tensor.T {
	switch {
	case e.Param != nil:
		return e.Param.Value
	case e.Buffer != nil:
		return e.Buffer
	}
	return nil
}

// Shape returns the entry's shape as PyTorch stores it ([] for a counter).
func (e Entry) Shape() []int {
	if t := e.Tensor(); t != nil {
		return t.Shape
	}
	return []int{}
}

// Entries returns every parameter and buffer of m in state_dict order.
func Entries(m Module, prefix string) []Entry {
	var out []Entry
	m.Visit(prefix, func(e Entry) { out = append(out, e) })
	return out
}

// Param is a trainable parameter with its state_dict name and kind.
type Param struct {
	// Name is the prefixed state_dict name.
	Name string
	// Kind is KindWeight, KindBias, KindNormWeight or KindNormBias.
	Kind Kind
	// Var holds the value and the persistent gradient.
	Var *autodiff.Var
}

// Params returns the trainable parameters of m in state_dict order (the
// order of PyTorch's module.parameters()), names prefixed by prefix.
func Params(m Module, prefix string) []Param {
	var out []Param
	m.Visit(prefix, func(e Entry) {
		if e.Param != nil {
			out = append(out, Param{Name: e.Name, Kind: e.Kind, Var: e.Param})
		}
	})
	return out
}

// Vars returns the parameter Vars of m in state_dict order.
func Vars(m Module) []*autodiff.Var {
	var out []*autodiff.Var
	m.Visit("", func(e Entry) {
		if e.Param != nil {
			out = append(out, e.Param)
		}
	})
	return out
}

// NumParams is the number of trainable scalars of m.
func NumParams(m Module) int {
	n := 0
	m.Visit("", func(e Entry) {
		if e.Param != nil {
			n += e.Param.Value.Len()
		}
	})
	return n
}

// SetNames sets every parameter Var's Name to its state_dict name with
// prefix, e.g. "backbone.3.conv1.weight", for logs and error messages.
func SetNames(m Module, prefix string) {
	m.Visit(prefix, func(e Entry) {
		if e.Param != nil {
			e.Param.Name = e.Name
		}
	})
}

// ZeroGrad clears the gradients of m's parameters (those that have one).
func ZeroGrad(m Module) {
	m.Visit("", func(e Entry) {
		if e.Param != nil && e.Param.Grad != nil {
			e.Param.Grad.Zero()
		}
	})
}

// CopyState copies every parameter and buffer of src into dst, which must
// have the same structure (names and shapes), e.g. a Clone of src.
func CopyState(dst, src Module) error {
	d, s := Entries(dst, ""), Entries(src, "")
	if len(d) != len(s) {
		return fmt.Errorf("nn: copy state: %d entries into %d", len(s), len(d))
	}
	for i := range d {
		if d[i].Name != s[i].Name || d[i].Kind != s[i].Kind || !tensor.EqualShapes(d[i].Shape(), s[i].Shape()) {
			return fmt.Errorf("nn: copy state: entry %d is %s%v in the source, %s%v in the destination",
				i, s[i].Name, s[i].Shape(), d[i].Name, d[i].Shape())
		}
		if d[i].Count != nil {
			*d[i].Count = *s[i].Count
			continue
		}
		copy(d[i].Tensor().Data, s[i].Tensor().Data)
	}
	return nil
}
