package nn

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/sslrun/sslrun/core/autodiff"
	"github.com/sslrun/sslrun/core/safetensors"
	"github.com/sslrun/sslrun/core/tensor"
)

// Tolerances against PyTorch 1.13 (tools/golden/gen_nn.py). An element
// passes when |go - torch| <= goldenRtol*|torch| + atolScale*rms, rms the
// RMS of the whole reference tensor: 1e-4 relative error plus an absolute
// floor proportional to the tensor's typical size. The floor is needed
// because both sides accumulate in float32 with different blockings and
// orders (GEMM, im2col, BN reductions): a sum's rounding error is relative
// to the magnitude of its terms, not of its (possibly cancelled, near-zero)
// result, so elements far below the tensor's typical size legitimately miss
// a pure relative test. Measured (NN_DEBUG_TOL=1 go test -run Golden -v
// prints max|go-torch|/rms per tensor): single layers <= 1e-6*rms, hence
// layerAtolScale 1e-5; the 10-17 layer W1/W2 models, whose errors compound
// through BN and the cosine loss, <= 2.3e-5*rms (SimSiam gradient of the
// predictor's output bias, a batch sum that cancels to 1% of its rms), hence
// modelAtolScale 5e-5. A real bug (a wrong eps, a biased variance, a missed
// term) is off by 1e-3 or more.
const (
	goldenRtol     = 1e-4
	layerAtolScale = 1e-5
	modelAtolScale = 5e-5
)

var debugTol = os.Getenv("NN_DEBUG_TOL") != ""

func rms(x []float32) float64 {
	var s float64
	for _, v := range x {
		s += float64(v) * float64(v)
	}
	return math.Sqrt(s / float64(max(len(x), 1)))
}

// closeTo compares got with want element-wise; the absolute floor is
// atolScale*scale (scale 0: want's RMS).
func closeTo(t *testing.T, what string, got, want []float32, scale, atolScale float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d values, want %d", what, len(got), len(want))
		return
	}
	if scale == 0 {
		scale = rms(want)
	}
	atol := atolScale * scale
	worst, wi := 0.0, -1
	for i := range want {
		d := math.Abs(float64(got[i]) - float64(want[i]))
		r := d / (goldenRtol*math.Abs(float64(want[i])) + atol)
		if math.IsNaN(d) {
			r = math.Inf(1)
		}
		if r > worst {
			worst, wi = r, i
		}
	}
	if debugTol {
		maxAbs := 0.0
		for i := range want {
			maxAbs = math.Max(maxAbs, math.Abs(float64(got[i])-float64(want[i]))/scale)
		}
		t.Logf("TOL %-50s worst %.3g  max|d|/rms %.3g", what, worst, maxAbs)
	}
	if worst > 1 {
		t.Errorf("%s: element %d = %g, torch %g (%.3g x the tolerance)", what, wi, got[wi], want[wi], worst)
	}
}

type layerCase struct {
	Layer  string   `json:"layer"`
	In     int      `json:"in"`
	Out    int      `json:"out"`
	K      int      `json:"k"`
	Stride int      `json:"stride"`
	Pad    int      `json:"pad"`
	Bias   bool     `json:"bias"`
	C      int      `json:"c"`
	Affine bool     `json:"affine"`
	Train  bool     `json:"train"`
	Spec   HeadSpec `json:"spec"`
}

func (c layerCase) build() (Module, error) {
	switch c.Layer {
	case "linear":
		return NewLinear(c.In, c.Out, c.Bias, nil), nil
	case "conv":
		return NewConv2d(c.In, c.Out, c.K, c.Stride, c.Pad, c.Bias, nil), nil
	case "bn1d", "bn2d":
		return NewBatchNorm(c.C, c.Affine), nil
	case "relu":
		return ReLU{}, nil
	case "maxpool":
		return MaxPool2d{Kernel: c.K, Stride: c.Stride, Pad: c.Pad}, nil
	case "avgpool":
		return AvgPool2d{Kernel: c.K, Stride: c.Stride, Pad: c.Pad}, nil
	case "gap":
		return NewSequential(GlobalAvgPool{}, Flatten{}), nil
	case "flatten":
		return Flatten{}, nil
	case "block":
		return NewBasicBlock(c.In, c.Out, c.Stride, nil), nil
	case "head":
		return BuildHead(c.Spec, nil)
	}
	return nil, fmt.Errorf("unknown layer %q", c.Layer)
}

func mustTensor(t testing.TB, f *safetensors.File, name string) *tensor.T {
	t.Helper()
	x, err := f.Tensor(name)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// setFrom loads a module's entries from "<prefix><name>" tensors of f.
func setFrom(t testing.TB, f *safetensors.File, m Module, prefix string) {
	t.Helper()
	m.Visit(prefix, func(e Entry) {
		if e.Count != nil {
			v, _, err := f.Int64s(e.Name)
			if err != nil {
				t.Fatal(err)
			}
			*e.Count = v[0]
			return
		}
		src := mustTensor(t, f, e.Name)
		if !src.SameShape(e.Tensor()) {
			t.Fatalf("%s: torch shape %v, ours %v", e.Name, src.Shape, e.Tensor().Shape)
		}
		copy(e.Tensor().Data, src.Data)
	})
}

func TestLayersGolden(t *testing.T) {
	f, err := safetensors.ReadFile(filepath.Join("testdata", "layers.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	var cases map[string]layerCase
	if err := json.Unmarshal([]byte(f.Metadata["cases"]), &cases); err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(cases))
	for n := range cases {
		names = append(names, n)
	}
	sort.Strings(names)
	tp := autodiff.NewTape()
	for _, name := range names {
		c := cases[name]
		t.Run(name, func(t *testing.T) {
			m, err := c.build()
			if err != nil {
				t.Fatal(err)
			}
			// Every torch state_dict entry must be one of ours, by name.
			var ours []string
			m.Visit(name+"/p/", func(e Entry) { ours = append(ours, e.Name) })
			var theirs []string
			for _, n := range f.Names() {
				if strings.HasPrefix(n, name+"/p/") {
					theirs = append(theirs, n)
				}
			}
			sort.Strings(ours)
			if strings.Join(ours, ",") != strings.Join(theirs, ",") {
				t.Fatalf("state_dict %v, torch %v", ours, theirs)
			}
			setFrom(t, f, m, name+"/p/")
			m.SetTrain(c.Train)

			tp.Reset()
			x := tp.Leaf(mustTensor(t, f, name+"/x"))
			y := m.Forward(tp, x)
			if !tensor.EqualShapes(y.Value.Shape, mustTensor(t, f, name+"/out").Shape) {
				t.Fatalf("output shape %v, torch %v", y.Value.Shape, mustTensor(t, f, name+"/out").Shape)
			}
			closeTo(t, "out", y.Value.Data, mustTensor(t, f, name+"/out").Data, 0, layerAtolScale)
			ZeroGrad(m)
			loss := tp.Sum(tp.Mul(y, tp.Input(mustTensor(t, f, name+"/gout"))))
			if err := tp.Backward(loss); err != nil {
				t.Fatal(err)
			}
			closeTo(t, "grad x", x.Grad.Data, mustTensor(t, f, name+"/gx").Data, 0, layerAtolScale)
			m.Visit("", func(e Entry) {
				switch {
				case e.Param != nil:
					closeTo(t, "grad "+e.Name, e.Param.Grad.Data, mustTensor(t, f, name+"/g/"+e.Name).Data, 0, layerAtolScale)
				case e.Count != nil:
					v, _, err := f.Int64s(name + "/after/" + e.Name)
					if err != nil {
						t.Fatal(err)
					}
					if *e.Count != v[0] {
						t.Errorf("%s = %d, torch %d", e.Name, *e.Count, v[0])
					}
				default:
					closeTo(t, e.Name+" after", e.Buffer.Data, mustTensor(t, f, name+"/after/"+e.Name).Data, 0, layerAtolScale)
				}
			})
		})
	}
}

// sampled checks a tensor stored as "<key>/norm" and "<key>/val" at
// SampleIndices(key, n, 256). The absolute floor uses scale if positive,
// else the RMS implied by the stored norm, i.e. of the whole tensor.
func sampled(t *testing.T, f *safetensors.File, key string, got []float32, scale float64) {
	t.Helper()
	norm := float64(mustTensor(t, f, key+"/norm").Data[0])
	if scale <= 0 {
		scale = norm / math.Sqrt(float64(len(got)))
	}
	var s float64
	for _, v := range got {
		s += float64(v) * float64(v)
	}
	if d := math.Abs(math.Sqrt(s) - norm); d > goldenRtol*norm+modelAtolScale*scale*math.Sqrt(float64(len(got))) {
		t.Errorf("%s: norm %g, torch %g (rel %.2g)", key, math.Sqrt(s), norm, d/norm)
	}
	idx := SampleIndices(key, len(got), 256)
	vals := make([]float32, len(idx))
	for i, j := range idx {
		vals[i] = got[j]
	}
	closeTo(t, key, vals, mustTensor(t, f, key+"/val").Data, scale, modelAtolScale)
}

// runningMeanScale is the absolute-error scale for a running_mean after one
// training step: momentum times the channels' batch standard deviation
// (recovered from the updated running_var = 0.9 + 0.1*var_unbiased), the
// size of the terms whose average it is. Its own RMS is useless as a scale
// where a BN without affine upstream makes the batch means vanish (the
// predictor's first BN sees zero-mean z: torch's value is rounding noise).
func runningMeanScale(runningVar []float32) float64 {
	var s float64
	for _, v := range runningVar {
		s += math.Max(float64(v)-(1-BNMomentum), 0) / BNMomentum
	}
	return BNMomentum * math.Sqrt(s/float64(len(runningVar)))
}

func hashInput(name string, shape ...int) *tensor.T {
	x := tensor.New(shape...)
	HashUniform(x.Data, name, 0, math.Sqrt(3))
	return x
}

func TestModelsGolden(t *testing.T) {
	for _, tag := range []string{"w1", "w2"} {
		t.Run(tag, func(t *testing.T) {
			f, err := safetensors.ReadFile(filepath.Join("testdata", "model_"+tag+".safetensors"))
			if err != nil {
				t.Fatal(err)
			}
			var batch int
			fmt.Sscan(f.Metadata["batch"], &batch)
			in, err := WorkloadInputShape(f.Metadata["workload"])
			if err != nil {
				t.Fatal(err)
			}
			shape := append([]int{batch}, in...)

			// (a) one view, L = sum(p * G).
			m := buildFixtureModel(t, f)
			tp := autodiff.NewTape()
			xt := hashInput("input.x", shape...)
			sampled(t, f, "input.x", xt.Data, 0)
			x := tp.Leaf(xt)
			feat, z, p := m.Forward(tp, x)
			sampled(t, f, "feat", feat.Value.Data, 0)
			closeTo(t, "z", z.Value.Data, mustTensor(t, f, "z").Data, 0, modelAtolScale)
			closeTo(t, "p", p.Value.Data, mustTensor(t, f, "p").Data, 0, modelAtolScale)
			g := tensor.New(p.Value.Shape...)
			HashUniform(g.Data, "upstream", 0, 1)
			if err := tp.Backward(tp.Sum(tp.Mul(p, tp.Input(g)))); err != nil {
				t.Fatal(err)
			}
			sampled(t, f, "grad/input.x", x.Grad.Data, 0)
			sampled(t, f, "grad/z", z.Grad.Data, 0)
			for _, part := range m.Parts() {
				entries := Entries(part.Module, part.Prefix)
				for i, e := range entries {
					switch {
					case e.Param != nil:
						sampled(t, f, "grad/"+e.Name, e.Param.Grad.Data, 0)
					case e.Count != nil:
						v, _, err := f.Int64s("after/" + e.Name)
						if err != nil {
							t.Fatal(err)
						}
						if *e.Count != v[0] {
							t.Errorf("%s = %d, torch %d", e.Name, *e.Count, v[0])
						}
					case e.Kind == KindRunningMean:
						sampled(t, f, "after/"+e.Name, e.Buffer.Data, runningMeanScale(entries[i+1].Buffer.Data))
					default:
						sampled(t, f, "after/"+e.Name, e.Buffer.Data, 0)
					}
				}
			}

			// (b) SimSiam loss over two views, fresh model.
			m = buildFixtureModel(t, f)
			tp.Reset()
			x1 := tp.Input(hashInput("input.x1", shape...))
			x2 := tp.Input(hashInput("input.x2", shape...))
			_, z1, p1 := m.Forward(tp, x1)
			_, z2, p2 := m.Forward(tp, x2)
			loss := tp.Scale(tp.Add(
				tp.Mean(tp.CosineSimilarity(p1, tp.Detach(z2))),
				tp.Mean(tp.CosineSimilarity(p2, tp.Detach(z1)))), -0.5)
			want := float64(mustTensor(t, f, "simsiam/loss").Data[0])
			if d := math.Abs(float64(loss.Item()) - want); d > 1e-5 {
				t.Errorf("simsiam loss %g, torch %g", loss.Item(), want)
			}
			if err := tp.Backward(loss); err != nil {
				t.Fatal(err)
			}
			for _, prm := range m.Params() {
				sampled(t, f, "simsiam/grad/"+prm.Name, prm.Var.Grad.Data, 0)
			}
		})
	}
}
