package train

import (
	"fmt"

	"github.com/sslrun/sslrun/core/autodiff"
	"github.com/sslrun/sslrun/core/data"
	"github.com/sslrun/sslrun/core/data/augment"
	"github.com/sslrun/sslrun/core/eval"
	"github.com/sslrun/sslrun/core/nn"
	"github.com/sslrun/sslrun/core/tensor"
)

// Embed returns the backbone features of the first n samples of src (all of
// them when n <= 0) for evaluation: each sample goes through transform (a
// deterministic pipeline such as a normalization; random steps draw from a
// fixed seed) and the model runs in evaluation mode without recording
// gradients. The model is left in training mode, where a training loop
// keeps it.
func Embed(m *nn.Model, src data.Source, transform augment.Pipeline, n, batch int) (eval.Set, error) {
	if n <= 0 || n > src.Len() {
		n = src.Len()
	}
	if batch <= 0 {
		batch = 512
	}
	if err := transform.Validate(); err != nil {
		return eval.Set{}, fmt.Errorf("train: embed: %w", err)
	}
	c, h, w := transform.OutShape(src.Shape())
	inShape := []int{0, c, h, w}
	if m.Spec.Backbone.Arch == "mlp" {
		inShape = []int{0, c * h * w}
	}
	m.SetTrain(false)
	defer m.SetTrain(true)

	tp := autodiff.NewTape()
	tp.SetGrad(false)
	labels := make([]int32, n)
	var out []float32
	dim := 0
	im := augment.NewImage(c, h, w)
	var scratch augment.Scratch
	x := make([]float32, batch*c*h*w)
	for lo := 0; lo < n; lo += batch {
		hi := min(lo+batch, n)
		for i := lo; i < hi; i++ {
			labels[i] = int32(src.Load(i, im))
			r := augment.NewRNG(uint64(i))
			transform.Apply(im, &r, &scratch)
			copy(x[(i-lo)*c*h*w:], im.Pix[:c*h*w])
		}
		shape := append([]int(nil), inShape...)
		shape[0] = hi - lo
		in, err := tensor.FromSlice(x[:(hi-lo)*c*h*w], shape...)
		if err != nil {
			return eval.Set{}, fmt.Errorf("train: embed: %w", err)
		}
		tp.Reset()
		f := m.Backbone.Forward(tp, tp.Input(in))
		if out == nil {
			dim = f.Value.Cols()
			out = make([]float32, n*dim)
		}
		copy(out[lo*dim:], f.Value.Data)
	}
	return eval.Set{Name: "features", X: out, Dim: dim, Labels: labels}, nil
}
