package nn

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sslrun/sslrun/core/safetensors"
	"github.com/sslrun/sslrun/core/tensor"
)

// stateKeys is testdata/state_keys.json, written by tools/golden/gen_nn.py
// from the torch models: model name -> spec and state_dict (name, shape,
// dtype) in order.
type stateKeys map[string]struct {
	Spec ModelSpec            `json:"spec"`
	Keys [][3]json.RawMessage `json:"keys"`
}

func TestStateDictMatchesTorch(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "state_keys.json"))
	if err != nil {
		t.Fatal(err)
	}
	var models stateKeys
	if err := json.Unmarshal(raw, &models); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"mlp-mnist", "convnet-cifar", "resnet18-cifar", "resnet34-mnist", "convnet-mnist"} {
		t.Run(name, func(t *testing.T) {
			ref, ok := models[name]
			if !ok {
				t.Fatalf("no %s in state_keys.json", name)
			}
			spec := ref.Spec
			if w, err := Workload(name); err == nil {
				// The Go workload table must equal the spec gen_nn.py
				// checked against torch_baseline.build_models.
				a, _ := json.Marshal(w)
				b, _ := json.Marshal(ref.Spec)
				if string(a) != string(b) {
					t.Errorf("Workload(%q) = %s, gen_nn.py has %s", name, a, b)
				}
			}
			m, err := Build(spec, nil)
			if err != nil {
				t.Fatal(err)
			}
			var got []Entry
			for _, p := range m.Parts() {
				got = append(got, Entries(p.Module, p.Prefix)...)
			}
			if len(got) != len(ref.Keys) {
				t.Errorf("%d state_dict entries, torch has %d", len(got), len(ref.Keys))
			}
			for i := 0; i < len(got) && i < len(ref.Keys); i++ {
				var n, dt string
				var shape []int
				json.Unmarshal(ref.Keys[i][0], &n)
				json.Unmarshal(ref.Keys[i][1], &shape)
				json.Unmarshal(ref.Keys[i][2], &dt)
				wantDT := "float32"
				if got[i].Count != nil {
					wantDT = "int64"
				}
				if got[i].Name != n || !tensor.EqualShapes(got[i].Shape(), shape) || wantDT != dt {
					t.Errorf("entry %d: %s%v %s, torch %s%v %s", i, got[i].Name, got[i].Shape(), wantDT, n, shape, dt)
				}
			}
		})
	}
}

func TestInitMatchesPyTorchDistribution(t *testing.T) {
	spec, err := Workload("convnet-cifar")
	if err != nil {
		t.Fatal(err)
	}
	m, err := Build(spec, rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range m.Parts() {
		p.Module.Visit(p.Prefix, func(e Entry) {
			switch e.Kind {
			case KindWeight, KindBias:
				b := 1 / math.Sqrt(float64(e.FanIn))
				d := e.Param.Value.Data
				var s, s2 float64
				for _, v := range d {
					if math.Abs(float64(v)) > b {
						t.Fatalf("%s: |%g| > bound %g", e.Name, v, b)
					}
					s += float64(v)
					s2 += float64(v) * float64(v)
				}
				n := float64(len(d))
				mean, vr := s/n, s2/n-(s/n)*(s/n)
				// U(-b,b): mean 0 (sd b/sqrt(3n)), variance b²/3 (sd of the
				// estimate b²·sqrt(4/45/n)); allow 5 standard deviations.
				if math.Abs(mean) > 5*b/math.Sqrt(3*n) || math.Abs(vr-b*b/3) > 5*b*b*math.Sqrt(4.0/45/n) {
					t.Errorf("%s: mean %g var %g, want 0 and %g (n=%d)", e.Name, mean, vr, b*b/3, len(d))
				}
			case KindNormWeight, KindRunningVar:
				for _, v := range e.Tensor().Data {
					if v != 1 {
						t.Fatalf("%s = %g, want 1", e.Name, v)
					}
				}
			case KindNormBias, KindRunningMean:
				for _, v := range e.Tensor().Data {
					if v != 0 {
						t.Fatalf("%s = %g, want 0", e.Name, v)
					}
				}
			case KindNumBatches:
				if *e.Count != 0 {
					t.Fatalf("%s = %d", e.Name, *e.Count)
				}
			}
		})
	}
	if got := DefaultBound(27); math.Abs(got-math.Sqrt(3.0/27)*math.Sqrt(2.0/6)) > 1e-15 {
		t.Errorf("DefaultBound(27) = %g, want gain*sqrt(3/fan_in) with gain sqrt(2/(1+5))", got)
	}
}

func TestHashMatchesPython(t *testing.T) {
	// Printed by gen_nn.py: hash_uniform("backbone.0.weight", (4,), 0, 1).
	want := []float32{0.47482073307037354, -0.610080361366272, 0.37219369411468506, -0.7954434156417847}
	got := make([]float32, 4)
	HashUniform(got, "backbone.0.weight", 0, 1)
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("HashUniform[%d] = %v, python %v", i, got[i], want[i])
		}
	}
	for _, tag := range []string{"w1", "w2"} {
		f, err := safetensors.ReadFile(filepath.Join("testdata", "model_"+tag+".safetensors"))
		if err != nil {
			t.Fatal(err)
		}
		m := buildFixtureModel(t, f)
		for _, p := range m.Params() {
			ref, err := f.Tensor("param/" + p.Name)
			if err != nil {
				t.Fatal(err)
			}
			for i, v := range ref.Data {
				if p.Var.Value.Data[i] != v {
					t.Fatalf("%s: %s[%d] = %v, python %v", tag, p.Name, i, p.Var.Value.Data[i], v)
				}
			}
		}
	}
}

// buildFixtureModel builds the model of a model_w*.safetensors fixture with
// the hash weights.
func buildFixtureModel(t testing.TB, f *safetensors.File) *Model {
	t.Helper()
	var spec ModelSpec
	if err := json.Unmarshal([]byte(f.Metadata["spec"]), &spec); err != nil {
		t.Fatal(err)
	}
	m, err := Build(spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range m.Parts() {
		HashInit(p.Module, p.Prefix, false)
	}
	return m
}

func TestSampleIndices(t *testing.T) {
	idx := SampleIndices("grad/backbone.0.weight", 784*1024, 256)
	step := 784 * 1024 / 256
	for j, i := range idx {
		if i < j*step || i >= (j+1)*step {
			t.Fatalf("index %d = %d outside [%d, %d)", j, i, j*step, (j+1)*step)
		}
	}
	if got := SampleIndices("x", 5, 256); len(got) != 5 || got[4] != 4 {
		t.Errorf("small tensor: %v", got)
	}
}

func smallModel(t testing.TB, seed uint64) *Model {
	t.Helper()
	spec := ModelSpec{
		Backbone:  BackboneSpec{Arch: "resnet18", InChannels: 1, Widths: []int{4, 8, 8, 8}, Blocks: []int{1, 1, 1, 1}},
		Projector: HeadSpec{Dims: []int{8, 6, 6}, LastBN: LastBNPlain},
		Predictor: HeadSpec{Dims: []int{6, 3, 6}, LastBias: true},
	}
	m, err := Build(spec, rand.New(rand.NewPCG(seed, 0)))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestCloneIsDeep(t *testing.T) {
	m := smallModel(t, 1)
	for _, p := range m.Parts() {
		HashInit(p.Module, p.Prefix, true)
	}
	c := m.Clone()
	a, b := Entries(m.Backbone, ""), Entries(c.Backbone, "")
	if len(a) != len(b) {
		t.Fatalf("clone has %d entries, original %d", len(b), len(a))
	}
	for i := range a {
		if a[i].Name != b[i].Name || a[i].Kind != b[i].Kind {
			t.Fatalf("entry %d: %s/%v vs %s/%v", i, a[i].Name, a[i].Kind, b[i].Name, b[i].Kind)
		}
		if a[i].Count != nil {
			if a[i].Count == b[i].Count {
				t.Fatalf("%s: counter shared", a[i].Name)
			}
			continue
		}
		ta, tb := a[i].Tensor(), b[i].Tensor()
		if &ta.Data[0] == &tb.Data[0] {
			t.Fatalf("%s: memory shared", a[i].Name)
		}
		for j := range ta.Data {
			if ta.Data[j] != tb.Data[j] {
				t.Fatalf("%s: values differ", a[i].Name)
			}
		}
		if a[i].Param != nil && (a[i].Param.Name != b[i].Param.Name || a[i].Param.Grad == b[i].Param.Grad) {
			t.Fatalf("%s: clone param name %q, grad shared %v", a[i].Name, b[i].Param.Name, a[i].Param.Grad == b[i].Param.Grad)
		}
	}
	m.SetTrain(false)
	if !c.Backbone.(*Sequential).At(1).(*BatchNorm).Training() {
		t.Error("SetTrain on the original changed the clone")
	}
}

func TestParamKinds(t *testing.T) {
	m := smallModel(t, 1)
	counts := map[Kind]int{}
	for _, p := range m.Params() {
		counts[p.Kind]++
		if p.Var.Name != p.Name {
			t.Errorf("Var.Name %q, state_dict name %q", p.Var.Name, p.Name)
		}
		wantBiasOrNorm := strings.HasSuffix(p.Name, ".bias") || strings.Contains(p.Name, "bn") ||
			p.Name == "backbone.1.weight" || strings.HasSuffix(p.Name, "shortcut.1.weight") ||
			p.Name == "projector.1.weight" || p.Name == "predictor.1.weight"
		if p.Kind.IsBiasOrNorm() != wantBiasOrNorm {
			t.Errorf("%s: kind %v", p.Name, p.Kind)
		}
	}
	// resnet18 with 1 block per stage: 1 stem conv + 4 blocks x 2 convs +
	// 3 shortcuts (the first stage keeps 4 channels at stride 1), plus
	// 2 + 2 Linear weights.
	if counts[KindWeight] != 12+4 || counts[KindBias] != 1 || counts[KindNormWeight] != counts[KindNormBias] {
		t.Errorf("kind counts %v", counts)
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	m := smallModel(t, 1)
	for _, p := range m.Parts() {
		HashInit(p.Module, p.Prefix, true)
	}
	bn := m.Backbone.(*Sequential).At(1).(*BatchNorm)
	bn.NumBatchesTracked = 7
	path := filepath.Join(t.TempDir(), "m.safetensors")
	if err := m.Save(path, map[string]string{"epoch": "3"}); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if e, _ := f.Entry("backbone.1.num_batches_tracked"); e.DType != "I64" || len(e.Shape) != 0 {
		t.Errorf("num_batches_tracked stored as %s%v, want I64[]", e.DType, e.Shape)
	}
	if e, _ := f.Entry("backbone.0.weight"); e.DType != "F32" {
		t.Errorf("weight stored as %s", e.DType)
	}
	n := smallModel(t, 2)
	md, err := n.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if md["epoch"] != "3" || md["spec"] == "" {
		t.Errorf("metadata %v", md)
	}
	a, b := Entries(m.Backbone, ""), Entries(n.Backbone, "")
	for _, pa := range [][2][]Entry{{a, b}, {Entries(m.Predictor, ""), Entries(n.Predictor, "")}} {
		for i := range pa[0] {
			x, y := pa[0][i], pa[1][i]
			if x.Count != nil {
				if *x.Count != *y.Count {
					t.Errorf("%s: %d vs %d", x.Name, *x.Count, *y.Count)
				}
				continue
			}
			for j := range x.Tensor().Data {
				if x.Tensor().Data[j] != y.Tensor().Data[j] {
					t.Fatalf("%s[%d] differs after load", x.Name, j)
				}
			}
		}
	}
}

func TestLoadIsStrict(t *testing.T) {
	m := smallModel(t, 1)
	dir := t.TempDir()
	f32, i64, err := StateDict(m.Parts()...)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, edit func(f map[string]*tensor.T, i map[string]safetensors.Int64)) string {
		f := map[string]*tensor.T{}
		for k, v := range f32 {
			f[k] = v
		}
		i := map[string]safetensors.Int64{}
		for k, v := range i64 {
			i[k] = v
		}
		edit(f, i)
		p := filepath.Join(dir, name)
		if err := safetensors.WriteFileMixed(p, f, i, nil); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		name, want string
		edit       func(f map[string]*tensor.T, i map[string]safetensors.Int64)
	}{
		{"missing", "missing keys: backbone.0.weight", func(f map[string]*tensor.T, _ map[string]safetensors.Int64) {
			delete(f, "backbone.0.weight")
		}},
		{"unexpected", "unexpected keys: extra", func(f map[string]*tensor.T, _ map[string]safetensors.Int64) {
			f["extra"] = tensor.New(1)
		}},
		{"shape", "backbone.0.weight: file F32[4 1 3 2]", func(f map[string]*tensor.T, _ map[string]safetensors.Int64) {
			f["backbone.0.weight"] = tensor.New(4, 1, 3, 2)
		}},
		{"counter as float", "", func(f map[string]*tensor.T, i map[string]safetensors.Int64) {
			delete(i, "backbone.1.num_batches_tracked")
			f["backbone.1.num_batches_tracked"] = &tensor.T{Shape: []int{}, Data: []float32{5}}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := smallModel(t, 3)
			_, err := n.Load(write(c.name, c.edit))
			switch {
			case c.want == "" && err != nil:
				t.Fatal(err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("error %v, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestBuildErrors(t *testing.T) {
	cases := []ModelSpec{
		{Backbone: BackboneSpec{Arch: "vgg"}},
		{Backbone: BackboneSpec{Arch: "convnet", Widths: []int{8}, Strides: []int{1, 2}}},
		{Backbone: BackboneSpec{Arch: "mlp", InDim: 4, Widths: []int{8}}, Projector: HeadSpec{Dims: []int{7, 4}}},
		{Backbone: BackboneSpec{Arch: "mlp", InDim: 4, Widths: []int{8}}, Projector: HeadSpec{Dims: []int{8, 4}, LastBN: "maybe"},
			Predictor: HeadSpec{Kind: "identity"}},
		{Backbone: BackboneSpec{Arch: "mlp", InDim: 4, Widths: []int{8}}, Projector: HeadSpec{Dims: []int{8, 4}},
			Predictor: HeadSpec{Kind: "conv"}},
	}
	for i, s := range cases {
		if _, err := Build(s, nil); err == nil {
			t.Errorf("case %d: Build(%+v) succeeded", i, s)
		}
	}
	if _, err := Workload("nope"); err == nil {
		t.Error("Workload(nope) succeeded")
	}
}

func TestNamedSequentialAndParts(t *testing.T) {
	m := smallModel(t, 1)
	f, err := NewNamedSequential([]string{"backbone", "projector"}, []Module{m.Backbone, m.Projector})
	if err != nil {
		t.Fatal(err)
	}
	es := Entries(f, "")
	if es[0].Name != "backbone.0.weight" || es[len(es)-1].Name != "projector.4.num_batches_tracked" {
		t.Errorf("names %s ... %s", es[0].Name, es[len(es)-1].Name)
	}
	if _, err := NewNamedSequential([]string{"a"}, nil); err == nil {
		t.Error("NewNamedSequential accepted mismatched lengths")
	}
	if _, _, err := StateDict(Part{"x.", m.Backbone}, Part{"x.", m.Backbone}); err == nil {
		t.Error("StateDict accepted duplicate names")
	}
	if got, want := NumParams(m.Predictor), 6*3+3+3+3*6+6; got != want {
		t.Errorf("NumParams(predictor) = %d, want %d", got, want)
	}
}
