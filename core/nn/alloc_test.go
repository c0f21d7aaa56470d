package nn

import (
	"math/rand/v2"
	"testing"

	"github.com/sslrun/sslrun/core/autodiff"
	"github.com/sslrun/sslrun/core/tensor"
)

// simsiamStep is one SimSiam forward+backward of m on two views, the step
// the benchmarks time: L = -1/2 (mean cos(p1, sg z2) + mean cos(p2, sg z1)).
// It is a long-lived struct so that the step itself allocates nothing.
type simsiamStep struct {
	m      *Model
	tp     *autodiff.Tape
	x1, x2 *tensor.T
	loss   float32
}

func newSimsiamStep(tb testing.TB, spec ModelSpec, inShape []int, batch int) *simsiamStep {
	tb.Helper()
	m, err := Build(spec, rand.New(rand.NewPCG(1, 1)))
	if err != nil {
		tb.Fatal(err)
	}
	shape := append([]int{batch}, inShape...)
	return &simsiamStep{m: m, tp: autodiff.NewTape(), x1: randn(1, shape...), x2: randn(2, shape...)}
}

func (s *simsiamStep) run(tb testing.TB) {
	tp := s.tp
	tp.Reset()
	_, z1, p1 := s.m.Forward(tp, tp.Input(s.x1))
	_, z2, p2 := s.m.Forward(tp, tp.Input(s.x2))
	loss := tp.Scale(tp.Add(
		tp.Mean(tp.CosineSimilarity(p1, tp.Detach(z2))),
		tp.Mean(tp.CosineSimilarity(p2, tp.Detach(z1)))), -0.5)
	if err := tp.Backward(loss); err != nil {
		tb.Fatal(err)
	}
	s.loss = loss.Item()
}

func TestForwardBackwardAllocatesNothing(t *testing.T) {
	specs := map[string]ModelSpec{
		"mlp": {
			Backbone:  BackboneSpec{Arch: "mlp", InDim: 12, Widths: []int{16, 16}},
			Projector: HeadSpec{Dims: []int{16, 8, 8}, LastBN: LastBNPlain},
			Predictor: HeadSpec{Dims: []int{8, 4, 8}, LastBias: true},
		},
		"resnet": {
			Backbone:  BackboneSpec{Arch: "resnet18", InChannels: 1, Widths: []int{4, 8, 8, 8}, Blocks: []int{1, 1, 1, 1}},
			Projector: HeadSpec{Dims: []int{8, 8, 8}, LastBN: LastBNPlain},
			Predictor: HeadSpec{Kind: "bias", Dims: []int{8}},
		},
		"convnet": {
			Backbone:  BackboneSpec{Arch: "convnet", InChannels: 1, Widths: []int{4, 8}, Strides: []int{1, 2}},
			Projector: HeadSpec{Dims: []int{8, 8}, LastBN: LastBNAffine},
			Predictor: HeadSpec{Kind: "identity"},
		},
	}
	in := map[string][]int{"mlp": {12}, "resnet": {1, 8, 8}, "convnet": {1, 8, 8}}
	for name, spec := range specs {
		t.Run(name, func(t *testing.T) {
			s := newSimsiamStep(t, spec, in[name], 4)
			s.run(t) // warm-up: the tape sizes its arena
			if a := testing.AllocsPerRun(3, func() { s.run(t) }); a != 0 {
				t.Errorf("forward+backward allocates %v times per step", a)
			}
		})
	}
}
