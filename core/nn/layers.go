package nn

import (
	"fmt"
	"math/rand/v2"
	"strconv"

	"github.com/sslrun/sslrun/core/autodiff"
	"github.com/sslrun/sslrun/core/tensor"
)

// BatchNorm defaults, PyTorch's.
const (
	BNEps      = 1e-5
	BNMomentum = 0.1
)

func cloneParam(v *autodiff.Var) *autodiff.Var {
	if v == nil {
		return nil
	}
	return autodiff.NewParam(v.Name, v.Value.Clone())
}

func visitParam(prefix, name string, v *autodiff.Var, k Kind, fanIn int, fn func(Entry)) {
	if v != nil {
		fn(Entry{Name: prefix + name, Kind: k, Param: v, FanIn: fanIn})
	}
}

// Linear is torch.nn.Linear: y = x·Wᵀ + b, W [Out, In], b [Out] or nil.
type Linear struct {
	In, Out int
	Weight  *autodiff.Var
	Bias    *autodiff.Var // nil without bias
}

// NewLinear returns a Linear layer initialised like PyTorch's (see Init)
// from rng; a nil rng leaves the weights zero.
func NewLinear(in, out int, bias bool, rng *rand.Rand) *Linear {
	l := &Linear{In: in, Out: out, Weight: autodiff.NewParam("weight", tensor.New(out, in))}
	if bias {
		l.Bias = autodiff.NewParam("bias", tensor.New(out))
	}
	Init(l, rng)
	return l
}

// Forward applies the layer to x [N, In].
func (l *Linear) Forward(tp *autodiff.Tape, x *autodiff.Var) *autodiff.Var {
	return tp.Linear(x, l.Weight, l.Bias)
}

// Visit visits weight and bias.
func (l *Linear) Visit(prefix string, fn func(Entry)) {
	visitParam(prefix, "weight", l.Weight, KindWeight, l.In, fn)
	visitParam(prefix, "bias", l.Bias, KindBias, l.In, fn)
}

// SetTrain does nothing: Linear behaves the same in both modes.
func (l *Linear) SetTrain(bool) {}

// Clone returns a deep copy.
func (l *Linear) Clone() Module {
	return &Linear{In: l.In, Out: l.Out, Weight: cloneParam(l.Weight), Bias: cloneParam(l.Bias)}
}

// Conv2d is torch.nn.Conv2d with groups=1 and dilation 1, square kernel,
// stride and zero padding: x [N, In, H, W] -> [N, Out, H', W'].
type Conv2d struct {
	In, Out, Kernel, Stride, Pad int
	Weight                       *autodiff.Var // [Out, In, Kernel, Kernel]
	Bias                         *autodiff.Var // [Out] or nil
}

// NewConv2d returns a Conv2d layer initialised like PyTorch's from rng; a
// nil rng leaves the weights zero.
func NewConv2d(in, out, kernel, stride, pad int, bias bool, rng *rand.Rand) *Conv2d {
	c := &Conv2d{In: in, Out: out, Kernel: kernel, Stride: stride, Pad: pad,
		Weight: autodiff.NewParam("weight", tensor.New(out, in, kernel, kernel))}
	if bias {
		c.Bias = autodiff.NewParam("bias", tensor.New(out))
	}
	Init(c, rng)
	return c
}

// Forward applies the convolution (and the per-channel bias, if any).
func (c *Conv2d) Forward(tp *autodiff.Tape, x *autodiff.Var) *autodiff.Var {
	y := tp.Conv2d(x, c.Weight, c.Stride, c.Stride, c.Pad, c.Pad)
	if c.Bias != nil {
		y = tp.AddBias(y, c.Bias)
	}
	return y
}

func (c *Conv2d) fanIn() int { return c.In * c.Kernel * c.Kernel }

// Visit visits weight and bias.
func (c *Conv2d) Visit(prefix string, fn func(Entry)) {
	visitParam(prefix, "weight", c.Weight, KindWeight, c.fanIn(), fn)
	visitParam(prefix, "bias", c.Bias, KindBias, c.fanIn(), fn)
}

// SetTrain does nothing: Conv2d behaves the same in both modes.
func (c *Conv2d) SetTrain(bool) {}

// Clone returns a deep copy.
func (c *Conv2d) Clone() Module {
	d := *c
	d.Weight, d.Bias = cloneParam(c.Weight), cloneParam(c.Bias)
	return &d
}

// BatchNorm is torch.nn.BatchNorm1d (x [N, C]) and BatchNorm2d
// (x [N, C, H, W]) with track_running_stats=True: in training mode it
// normalises with the batch statistics and updates the running ones
// (momentum 0.1, unbiased variance) and num_batches_tracked; in evaluation
// mode it uses the running statistics.
type BatchNorm struct {
	C int
	// Weight and Bias are gamma and beta, nil without affine.
	Weight, Bias *autodiff.Var
	// State holds running_mean, running_var, momentum and eps.
	State autodiff.BNState
	// NumBatchesTracked counts training-mode forwards, like PyTorch's
	// buffer; it has no effect with a fixed momentum but is saved.
	NumBatchesTracked int64
	train             bool
}

// NewBatchNorm returns a BatchNorm over c channels (1d or 2d is decided by
// the input's rank) with gamma 1, beta 0, running mean 0 and variance 1.
func NewBatchNorm(c int, affine bool) *BatchNorm {
	b := &BatchNorm{C: c, train: true, State: autodiff.BNState{
		RunningMean: tensor.New(c), RunningVar: tensor.New(c), Momentum: BNMomentum, Eps: BNEps}}
	if affine {
		b.Weight = autodiff.NewParam("weight", tensor.New(c))
		b.Bias = autodiff.NewParam("bias", tensor.New(c))
	}
	Init(b, nil)
	return b
}

// Forward normalises x [N, C] or [N, C, H, W].
func (b *BatchNorm) Forward(tp *autodiff.Tape, x *autodiff.Var) *autodiff.Var {
	if b.train {
		b.NumBatchesTracked++
	}
	return tp.BatchNorm(x, b.Weight, b.Bias, &b.State, b.train)
}

// forwardReLU is ReLU{}.Forward(tp, b.Forward(tp, x)), fused.
func (b *BatchNorm) forwardReLU(tp *autodiff.Tape, x *autodiff.Var) *autodiff.Var {
	if b.train {
		b.NumBatchesTracked++
	}
	return tp.BatchNormReLU(x, b.Weight, b.Bias, &b.State, b.train)
}

// Visit visits weight, bias, running_mean, running_var and
// num_batches_tracked.
func (b *BatchNorm) Visit(prefix string, fn func(Entry)) {
	visitParam(prefix, "weight", b.Weight, KindNormWeight, 0, fn)
	visitParam(prefix, "bias", b.Bias, KindNormBias, 0, fn)
	fn(Entry{Name: prefix + "running_mean", Kind: KindRunningMean, Buffer: b.State.RunningMean})
	fn(Entry{Name: prefix + "running_var", Kind: KindRunningVar, Buffer: b.State.RunningVar})
	fn(Entry{Name: prefix + "num_batches_tracked", Kind: KindNumBatches, Count: &b.NumBatchesTracked})
}

// SetTrain selects batch statistics (true) or running statistics (false).
func (b *BatchNorm) SetTrain(train bool) { b.train = train }

// Training reports the mode.
func (b *BatchNorm) Training() bool { return b.train }

// Clone returns a deep copy.
func (b *BatchNorm) Clone() Module {
	d := *b
	d.Weight, d.Bias = cloneParam(b.Weight), cloneParam(b.Bias)
	d.State.RunningMean = b.State.RunningMean.Clone()
	d.State.RunningVar = b.State.RunningVar.Clone()
	return &d
}

// stateless is embedded by layers without parameters or modes.
type stateless struct{}

// Visit visits nothing: the layer has no state.
func (stateless) Visit(string, func(Entry)) {}

// SetTrain does nothing: the layer behaves the same in both modes.
func (stateless) SetTrain(bool) {}

// ReLU is torch.nn.ReLU.
type ReLU struct{ stateless }

// Forward returns max(x, 0).
func (ReLU) Forward(tp *autodiff.Tape, x *autodiff.Var) *autodiff.Var { return tp.ReLU(x) }

// Clone returns the layer itself (it has no state).
func (r ReLU) Clone() Module { return r }

// Identity is torch.nn.Identity: the "no predictor" head.
type Identity struct{ stateless }

// Forward returns x.
func (Identity) Forward(_ *autodiff.Tape, x *autodiff.Var) *autodiff.Var { return x }

// Clone returns the layer itself (it has no state).
func (i Identity) Clone() Module { return i }

// MaxPool2d is torch.nn.MaxPool2d(Kernel, Stride, Pad) (ceil_mode False).
type MaxPool2d struct {
	stateless
	Kernel, Stride, Pad int
}

// Forward takes the window maxima of x [N, C, H, W].
func (p MaxPool2d) Forward(tp *autodiff.Tape, x *autodiff.Var) *autodiff.Var {
	return tp.MaxPool2d(x, p.Kernel, p.Stride, p.Pad)
}

// Clone returns the layer itself (it has no state).
func (p MaxPool2d) Clone() Module { return p }

// AvgPool2d is torch.nn.AvgPool2d(Kernel, Stride, Pad) with
// count_include_pad=True and ceil_mode False.
type AvgPool2d struct {
	stateless
	Kernel, Stride, Pad int
}

// Forward takes the window means of x [N, C, H, W].
func (p AvgPool2d) Forward(tp *autodiff.Tape, x *autodiff.Var) *autodiff.Var {
	return tp.AvgPool2d(x, p.Kernel, p.Stride, p.Pad)
}

// Clone returns the layer itself (it has no state).
func (p AvgPool2d) Clone() Module { return p }

// GlobalAvgPool is torch's AdaptiveAvgPool2d(1), except that it returns
// [N, C] rather than [N, C, 1, 1]: the Flatten that follows it in the torch
// models (and in ours, to keep the Sequential indices equal) is then free.
type GlobalAvgPool struct{ stateless }

// Forward averages each channel plane.
func (GlobalAvgPool) Forward(tp *autodiff.Tape, x *autodiff.Var) *autodiff.Var {
	return tp.GlobalAvgPool2d(x)
}

// Clone returns the layer itself (it has no state).
func (g GlobalAvgPool) Clone() Module { return g }

// Flatten is torch.nn.Flatten(): [N, ...] -> [N, prod(...)], a view.
type Flatten struct{ stateless }

// Forward reshapes x to [N, -1].
func (Flatten) Forward(tp *autodiff.Tape, x *autodiff.Var) *autodiff.Var {
	s := x.Value.Shape
	if len(s) == 2 {
		return x
	}
	return tp.Reshape(x, s[0], x.Value.Len()/s[0])
}

// Clone returns the layer itself (it has no state).
func (f Flatten) Clone() Module { return f }

// BiasOnly is the paper's bias-only predictor h(z) = z/||z|| + b, b [D]
// initialised to zero (h starts as the normalization, which the cosine
// loss applies anyway: the naive Siamese network).
type BiasOnly struct {
	Bias *autodiff.Var
}

// NewBiasOnly returns a bias-only predictor over d features.
func NewBiasOnly(d int) *BiasOnly {
	return &BiasOnly{Bias: autodiff.NewParam("bias", tensor.New(d))}
}

// Forward returns x/||x|| + b: the paper's h(Z) = Z + b acts on the
// l2-normalized projection, so that b is on the scale of the unit vectors
// whose centre it must learn to offset.
func (h *BiasOnly) Forward(tp *autodiff.Tape, x *autodiff.Var) *autodiff.Var {
	return tp.AddBias(tp.L2Normalize(x), h.Bias)
}

// Visit visits the bias (KindBias, FanIn 0: initialised to 0).
func (h *BiasOnly) Visit(prefix string, fn func(Entry)) {
	visitParam(prefix, "bias", h.Bias, KindBias, 0, fn)
}

// SetTrain does nothing.
func (h *BiasOnly) SetTrain(bool) {}

// Clone returns a deep copy.
func (h *BiasOnly) Clone() Module { return &BiasOnly{Bias: cloneParam(h.Bias)} }

// Sequential is torch.nn.Sequential: it applies its modules in order.
// Children are named by their index ("0", "1", ...) or, for one built by
// NewNamedSequential, by the given names (Sequential(OrderedDict(...))).
type Sequential struct {
	names   []string
	modules []Module
}

// NewSequential returns a Sequential over mods, named "0", "1", ...
func NewSequential(mods ...Module) *Sequential {
	s := &Sequential{}
	for _, m := range mods {
		s.Append(m)
	}
	return s
}

// NewNamedSequential returns a Sequential whose children have the given
// names, e.g. {"backbone", "projector"}.
func NewNamedSequential(names []string, mods []Module) (*Sequential, error) {
	if len(names) != len(mods) {
		return nil, fmt.Errorf("nn: named sequential: %d names for %d modules", len(names), len(mods))
	}
	return &Sequential{names: append([]string(nil), names...), modules: append([]Module(nil), mods...)}, nil
}

// Append adds m at the end, named by its index.
func (s *Sequential) Append(m Module) {
	s.names = append(s.names, strconv.Itoa(len(s.modules)))
	s.modules = append(s.modules, m)
}

// Len is the number of children.
func (s *Sequential) Len() int { return len(s.modules) }

// At returns child i.
func (s *Sequential) At(i int) Module { return s.modules[i] }

// Name returns the state_dict name of child i.
func (s *Sequential) Name(i int) string { return s.names[i] }

// Forward applies the children in order. A BatchNorm directly followed
// by a ReLU runs as the tape's fused BatchNormReLU, which gives the same
// values and gradients with one pass less over the activations.
func (s *Sequential) Forward(tp *autodiff.Tape, x *autodiff.Var) *autodiff.Var {
	for i := 0; i < len(s.modules); i++ {
		x, i = s.forwardAt(tp, x, i)
	}
	return x
}

// forwardAt applies child i (and i+1 when it fuses a BatchNorm with its
// ReLU) and returns the output and the index of the last child applied.
func (s *Sequential) forwardAt(tp *autodiff.Tape, x *autodiff.Var, i int) (*autodiff.Var, int) {
	if bn, ok := s.modules[i].(*BatchNorm); ok && i+1 < len(s.modules) {
		if _, ok := s.modules[i+1].(ReLU); ok {
			return bn.forwardReLU(tp, x), i + 1
		}
	}
	return s.modules[i].Forward(tp, x), i
}

// Visit visits the children, each under "<prefix><name>.".
func (s *Sequential) Visit(prefix string, fn func(Entry)) {
	for i, m := range s.modules {
		m.Visit(prefix+s.names[i]+".", fn)
	}
}

// SetTrain sets the mode of every child.
func (s *Sequential) SetTrain(train bool) {
	for _, m := range s.modules {
		m.SetTrain(train)
	}
}

// Clone returns a deep copy.
func (s *Sequential) Clone() Module {
	d := &Sequential{names: append([]string(nil), s.names...), modules: make([]Module, len(s.modules))}
	for i, m := range s.modules {
		d.modules[i] = m.Clone()
	}
	return d
}

// BasicBlock is the CIFAR ResNet basic block of torch_baseline.py:
// relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), conv1 3x3 with the
// block's stride, conv2 3x3 stride 1, shortcut the identity or, when the
// stride is not 1 or the width changes, Sequential(conv1x1(stride), BN).
type BasicBlock struct {
	Conv1    *Conv2d
	BN1      *BatchNorm
	Conv2    *Conv2d
	BN2      *BatchNorm
	Shortcut *Sequential // nil for the identity
}

// NewBasicBlock returns a block from in to out channels with the given
// stride, initialised from rng (nil: zero conv weights).
func NewBasicBlock(in, out, stride int, rng *rand.Rand) *BasicBlock {
	b := &BasicBlock{
		Conv1: NewConv2d(in, out, 3, stride, 1, false, rng),
		BN1:   NewBatchNorm(out, true),
		Conv2: NewConv2d(out, out, 3, 1, 1, false, rng),
		BN2:   NewBatchNorm(out, true),
	}
	if stride != 1 || in != out {
		b.Shortcut = NewSequential(NewConv2d(in, out, 1, stride, 0, false, rng), NewBatchNorm(out, true))
	}
	return b
}

// Forward applies the block to x [N, in, H, W].
func (b *BasicBlock) Forward(tp *autodiff.Tape, x *autodiff.Var) *autodiff.Var {
	y := b.BN1.forwardReLU(tp, b.Conv1.Forward(tp, x))
	y = b.BN2.Forward(tp, b.Conv2.Forward(tp, y))
	sc := x
	if b.Shortcut != nil {
		sc = b.Shortcut.Forward(tp, x)
	}
	return tp.AddReLU(y, sc)
}

// Visit visits conv1, bn1, conv2, bn2 and shortcut, torch's attribute
// names and registration order.
func (b *BasicBlock) Visit(prefix string, fn func(Entry)) {
	b.Conv1.Visit(prefix+"conv1.", fn)
	b.BN1.Visit(prefix+"bn1.", fn)
	b.Conv2.Visit(prefix+"conv2.", fn)
	b.BN2.Visit(prefix+"bn2.", fn)
	if b.Shortcut != nil {
		b.Shortcut.Visit(prefix+"shortcut.", fn)
	}
}

// SetTrain sets the mode of the block's BatchNorms.
func (b *BasicBlock) SetTrain(train bool) {
	b.BN1.SetTrain(train)
	b.BN2.SetTrain(train)
	if b.Shortcut != nil {
		b.Shortcut.SetTrain(train)
	}
}

// Clone returns a deep copy.
func (b *BasicBlock) Clone() Module {
	d := &BasicBlock{
		Conv1: b.Conv1.Clone().(*Conv2d), BN1: b.BN1.Clone().(*BatchNorm),
		Conv2: b.Conv2.Clone().(*Conv2d), BN2: b.BN2.Clone().(*BatchNorm),
	}
	if b.Shortcut != nil {
		d.Shortcut = b.Shortcut.Clone().(*Sequential)
	}
	return d
}
