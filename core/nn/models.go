package nn

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sort"

	"github.com/sslrun/sslrun/core/autodiff"
	"github.com/sslrun/sslrun/core/tensor"
)

// BackboneSpec describes a backbone; its JSON form is what
// tools/golden/check_nn_load.py rebuilds in torch. Zero fields take the
// defaults of the architecture.
type BackboneSpec struct {
	// Arch is "mlp", "convnet", "resnet18" or "resnet34".
	Arch string `json:"arch"`
	// InDim is the MLP's input features (default 784: flattened MNIST).
	InDim int `json:"in_dim,omitempty"`
	// InChannels is the image channels of convnet/resnet (default 3; 1
	// for MNIST).
	InChannels int `json:"in_channels,omitempty"`
	// Widths are the MLP hidden sizes (default 1024, 1024), the convnet's
	// layer channels (default 64, 128, 256, 512) or the ResNet stage
	// widths (default 64, 128, 256, 512).
	Widths []int `json:"widths,omitempty"`
	// Strides are the convnet layer strides or the ResNet stages' first
	// strides (default 1, 2, 2, 2).
	Strides []int `json:"strides,omitempty"`
	// Blocks are the BasicBlocks per ResNet stage (default 2,2,2,2 for
	// resnet18 and 3,4,6,3 for resnet34).
	Blocks []int `json:"blocks,omitempty"`
	// StemWidth is the ResNet stem's channels (default Widths[0]).
	StemWidth int `json:"stem_width,omitempty"`
}

// HeadSpec describes a projector or predictor.
type HeadSpec struct {
	// Kind is "mlp" (default), "bias" (h(z) = z/||z|| + b) or "identity".
	Kind string `json:"kind,omitempty"`
	// Dims are the MLP's layer sizes including its input, e.g.
	// {512, 128, 512}; for "bias", {d}.
	Dims []int `json:"dims,omitempty"`
	// LastBN is the BatchNorm after the last Linear: "none" (default),
	// "plain" (BatchNorm1d(affine=False), SimSiam's projector) or "affine".
	LastBN string `json:"last_bn,omitempty"`
	// LastBias gives the last Linear a bias (the predictor's output).
	LastBias bool `json:"last_bias,omitempty"`
}

// ModelSpec is a backbone with its projector and predictor.
type ModelSpec struct {
	Backbone  BackboneSpec `json:"backbone"`
	Projector HeadSpec     `json:"projector"`
	Predictor HeadSpec     `json:"predictor"`
}

// Last-BN options of HeadSpec.LastBN.
const (
	LastBNNone   = "none"
	LastBNPlain  = "plain"
	LastBNAffine = "affine"
)

func orInts(v, def []int) []int {
	if len(v) == 0 {
		return def
	}
	return v
}

func orInt(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// BuildBackbone builds the backbone described by spec, initialised from rng
// (nil: zero weights, for a model about to Load), and returns it with its
// output feature size. All backbones end in [N, features]:
//
//   - mlp: (Linear(no bias)-BN-ReLU) per width; input [N, InDim].
//   - convnet: (conv3x3(pad 1, no bias)-BN-ReLU) per width and stride,
//     then AdaptiveAvgPool2d(1)-Flatten; input [N, InChannels, H, W].
//   - resnet18/resnet34: CIFAR ResNet, conv3x3 stem-BN-ReLU (no max-pool),
//     BasicBlock stages, AdaptiveAvgPool2d(1)-Flatten.
func BuildBackbone(spec BackboneSpec, rng *rand.Rand) (Module, int, error) {
	switch spec.Arch {
	case "mlp":
		in := orInt(spec.InDim, 784)
		s := NewSequential()
		for _, w := range orInts(spec.Widths, []int{1024, 1024}) {
			if w <= 0 {
				return nil, 0, fmt.Errorf("nn: mlp backbone: width %d", w)
			}
			s.Append(NewLinear(in, w, false, rng))
			s.Append(NewBatchNorm(w, true))
			s.Append(ReLU{})
			in = w
		}
		return s, in, nil
	case "convnet":
		in := orInt(spec.InChannels, 3)
		widths := orInts(spec.Widths, []int{64, 128, 256, 512})
		strides := orInts(spec.Strides, []int{1, 2, 2, 2})
		if len(strides) != len(widths) {
			return nil, 0, fmt.Errorf("nn: convnet backbone: %d widths but %d strides", len(widths), len(strides))
		}
		s := NewSequential()
		for i, w := range widths {
			if w <= 0 || strides[i] <= 0 {
				return nil, 0, fmt.Errorf("nn: convnet backbone: layer %d width %d stride %d", i, w, strides[i])
			}
			s.Append(NewConv2d(in, w, 3, strides[i], 1, false, rng))
			s.Append(NewBatchNorm(w, true))
			s.Append(ReLU{})
			in = w
		}
		s.Append(GlobalAvgPool{})
		s.Append(Flatten{})
		return s, in, nil
	case "resnet18", "resnet34":
		def := []int{2, 2, 2, 2}
		if spec.Arch == "resnet34" {
			def = []int{3, 4, 6, 3}
		}
		blocks := orInts(spec.Blocks, def)
		widths := orInts(spec.Widths, []int{64, 128, 256, 512})
		strides := orInts(spec.Strides, []int{1, 2, 2, 2})
		if len(blocks) != len(widths) || len(strides) != len(widths) {
			return nil, 0, fmt.Errorf("nn: %s backbone: %d stages of blocks, %d widths, %d strides",
				spec.Arch, len(blocks), len(widths), len(strides))
		}
		in := orInt(spec.InChannels, 3)
		stem := orInt(spec.StemWidth, widths[0])
		s := NewSequential(NewConv2d(in, stem, 3, 1, 1, false, rng), NewBatchNorm(stem, true), ReLU{})
		in = stem
		for i, w := range widths {
			if w <= 0 || strides[i] <= 0 || blocks[i] <= 0 {
				return nil, 0, fmt.Errorf("nn: %s backbone: stage %d width %d stride %d blocks %d",
					spec.Arch, i, w, strides[i], blocks[i])
			}
			for j := 0; j < blocks[i]; j++ {
				st := 1
				if j == 0 {
					st = strides[i]
				}
				s.Append(NewBasicBlock(in, w, st, rng))
				in = w
			}
		}
		s.Append(GlobalAvgPool{})
		s.Append(Flatten{})
		return s, in, nil
	}
	return nil, 0, fmt.Errorf("nn: unknown backbone architecture %q (want mlp, convnet, resnet18 or resnet34)", spec.Arch)
}

// MLPHead builds the projector/predictor MLP exactly like
// torch_baseline.py's mlp_head(dims, last_bn_affine, last_bias, last_bn):
// Linear(no bias)-BN-ReLU for every layer but the last, then a Linear (with
// a bias iff lastBias) followed by the BatchNorm lastBN asks for
// (LastBNNone, LastBNPlain or LastBNAffine).
//
//	projector (SimSiam): MLPHead({d0, d, d}, LastBNPlain, false, rng)
//	predictor (SimSiam): MLPHead({d, d/4, d}, LastBNNone, true, rng)
func MLPHead(dims []int, lastBN string, lastBias bool, rng *rand.Rand) (*Sequential, error) {
	if len(dims) < 2 {
		return nil, fmt.Errorf("nn: mlp head: need at least 2 dims, have %v", dims)
	}
	for _, d := range dims {
		if d <= 0 {
			return nil, fmt.Errorf("nn: mlp head: dims %v", dims)
		}
	}
	switch lastBN {
	case "", LastBNNone, LastBNPlain, LastBNAffine:
	default:
		return nil, fmt.Errorf("nn: mlp head: last_bn %q (want none, plain or affine)", lastBN)
	}
	s := NewSequential()
	for i := 0; i+1 < len(dims); i++ {
		last := i+2 == len(dims)
		s.Append(NewLinear(dims[i], dims[i+1], last && lastBias, rng))
		switch {
		case !last:
			s.Append(NewBatchNorm(dims[i+1], true))
			s.Append(ReLU{})
		case lastBN == LastBNPlain:
			s.Append(NewBatchNorm(dims[i+1], false))
		case lastBN == LastBNAffine:
			s.Append(NewBatchNorm(dims[i+1], true))
		}
	}
	return s, nil
}

// BuildHead builds a projector or predictor from spec.
func BuildHead(spec HeadSpec, rng *rand.Rand) (Module, error) {
	switch spec.Kind {
	case "", "mlp":
		return MLPHead(spec.Dims, spec.LastBN, spec.LastBias, rng)
	case "bias":
		if len(spec.Dims) == 0 || spec.Dims[len(spec.Dims)-1] <= 0 {
			return nil, fmt.Errorf("nn: bias head: dims %v, want {d}", spec.Dims)
		}
		return NewBiasOnly(spec.Dims[len(spec.Dims)-1]), nil
	case "identity":
		return Identity{}, nil
	}
	return nil, fmt.Errorf("nn: unknown head kind %q (want mlp, bias or identity)", spec.Kind)
}

// Model is a backbone, a projector and a predictor: f = projector∘backbone
// gives z, the predictor h gives p = h(z).
type Model struct {
	// Spec is what the model was built from (saved in weight files).
	Spec ModelSpec
	// Backbone maps an input batch to features [N, FeatureDim].
	Backbone Module
	// Projector maps features to z.
	Projector Module
	// Predictor maps z to p (Identity when the method has none).
	Predictor Module
	// FeatureDim is the backbone's output size.
	FeatureDim int
}

// Build builds the model described by spec, initialised from rng (PyTorch
// defaults; nil leaves Linear/Conv weights zero for a model about to Load).
// It checks that the heads' sizes chain.
func Build(spec ModelSpec, rng *rand.Rand) (*Model, error) {
	bb, feat, err := BuildBackbone(spec.Backbone, rng)
	if err != nil {
		return nil, err
	}
	in := feat
	for _, h := range []struct {
		name string
		spec HeadSpec
	}{{"projector", spec.Projector}, {"predictor", spec.Predictor}} {
		if h.spec.Kind == "identity" {
			continue
		}
		if len(h.spec.Dims) == 0 || h.spec.Dims[0] != in {
			return nil, fmt.Errorf("nn: %s dims %v do not start at its input size %d", h.name, h.spec.Dims, in)
		}
		in = h.spec.Dims[len(h.spec.Dims)-1]
	}
	proj, err := BuildHead(spec.Projector, rng)
	if err != nil {
		return nil, fmt.Errorf("projector: %w", err)
	}
	pred, err := BuildHead(spec.Predictor, rng)
	if err != nil {
		return nil, fmt.Errorf("predictor: %w", err)
	}
	m := &Model{Spec: spec, Backbone: bb, Projector: proj, Predictor: pred, FeatureDim: feat}
	m.SetNames()
	return m, nil
}

// Forward runs the three parts on x: the backbone feature, the projection
// z and the prediction p = h(z) (p is z itself for an identity predictor).
func (m *Model) Forward(tp *autodiff.Tape, x *autodiff.Var) (feat, z, p *autodiff.Var) {
	feat = m.Backbone.Forward(tp, x)
	z = m.Projector.Forward(tp, feat)
	p = m.Predictor.Forward(tp, z)
	return feat, z, p
}

// Project resets tp and runs the backbone and the projector on x without
// gradient, returning z, valid until tp is reset again. It is an EMA
// target's forward pass: the target's activations are not needed after
// it, so it runs before the online pass on the step's own tape, one view
// at a time, and the caller keeps only z. The tape's arena hands out
// buffers in request order and the target is a prefix of the online
// network, so the online pass then reuses the buffers the target filled:
// the target costs no memory of its own (W2 BYOL: ~130 MB less than two
// tapes of its own, ~480 MB less than keeping its activations on the
// step's tape until the step ends). The target and the online network
// share no state, so running it first changes no value.
func (m *Model) Project(tp *autodiff.Tape, x *tensor.T) *tensor.T {
	prev := tp.SetGrad(false)
	tp.Reset()
	z := m.Projector.Forward(tp, m.Backbone.Forward(tp, tp.Input(x))).Value
	tp.SetGrad(prev)
	return z
}

// SetNames names every parameter Var by its prefixed state_dict name
// ("backbone.0.weight", ...).
func (m *Model) SetNames() {
	for _, p := range m.Parts() {
		SetNames(p.Module, p.Prefix)
	}
}

// Parts returns the model's modules with their state_dict prefixes
// "backbone.", "projector." and "predictor.", the layout of Save'd files.
func (m *Model) Parts() []Part {
	return []Part{{"backbone.", m.Backbone}, {"projector.", m.Projector}, {"predictor.", m.Predictor}}
}

// SetTrain sets the mode of all three parts.
func (m *Model) SetTrain(train bool) {
	m.Backbone.SetTrain(train)
	m.Projector.SetTrain(train)
	m.Predictor.SetTrain(train)
}

// Clone returns a deep copy.
func (m *Model) Clone() *Model {
	d := *m
	d.Backbone, d.Projector, d.Predictor = m.Backbone.Clone(), m.Projector.Clone(), m.Predictor.Clone()
	return &d
}

// Params returns all trainable parameters, prefixed by part.
func (m *Model) Params() []Param {
	var out []Param
	for _, p := range m.Parts() {
		out = append(out, Params(p.Module, p.Prefix)...)
	}
	return out
}

// workloads are the models of the reference benchmark, torch_baseline.py
// in the shared bench folder (W1-W3).
var workloads = map[string]ModelSpec{
	"mlp-mnist": {
		Backbone:  BackboneSpec{Arch: "mlp", InDim: 784, Widths: []int{1024, 1024}},
		Projector: HeadSpec{Kind: "mlp", Dims: []int{1024, 512, 512}, LastBN: LastBNPlain},
		Predictor: HeadSpec{Kind: "mlp", Dims: []int{512, 128, 512}, LastBias: true},
	},
	"convnet-cifar": {
		Backbone:  BackboneSpec{Arch: "convnet", InChannels: 3, Widths: []int{64, 128, 256, 512}, Strides: []int{1, 2, 2, 2}},
		Projector: HeadSpec{Kind: "mlp", Dims: []int{512, 512, 512}, LastBN: LastBNPlain},
		Predictor: HeadSpec{Kind: "mlp", Dims: []int{512, 128, 512}, LastBias: true},
	},
	"resnet18-cifar": {
		Backbone:  BackboneSpec{Arch: "resnet18", InChannels: 3},
		Projector: HeadSpec{Kind: "mlp", Dims: []int{512, 2048, 2048, 2048}, LastBN: LastBNPlain},
		Predictor: HeadSpec{Kind: "mlp", Dims: []int{2048, 512, 2048}, LastBias: true},
	},
}

// Workload returns the ModelSpec of a torch_baseline.py workload:
// "mlp-mnist" (W1), "convnet-cifar" (W2) or "resnet18-cifar" (W3). The
// caller may edit the copy (e.g. swap the predictor for a bias-only one).
func Workload(name string) (ModelSpec, error) {
	s, ok := workloads[name]
	if !ok {
		return ModelSpec{}, fmt.Errorf("nn: unknown workload %q (known: %v)", name, WorkloadNames())
	}
	// Deep copy through JSON so callers cannot alias the table's slices.
	b, _ := json.Marshal(s)
	var out ModelSpec
	if err := json.Unmarshal(b, &out); err != nil {
		return ModelSpec{}, fmt.Errorf("nn: workload %q: %w", name, err)
	}
	return out, nil
}

// WorkloadNames lists the known workloads, sorted.
func WorkloadNames() []string {
	names := make([]string, 0, len(workloads))
	for n := range workloads {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// WorkloadInputShape is the per-example input shape of a workload.
func WorkloadInputShape(name string) ([]int, error) {
	switch name {
	case "mlp-mnist":
		return []int{784}, nil
	case "convnet-cifar", "resnet18-cifar":
		return []int{3, 32, 32}, nil
	}
	return nil, fmt.Errorf("nn: unknown workload %q", name)
}

func jsonString(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("json: %w", err)
	}
	return string(b), nil
}
