package nn

import (
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/sslrun/sslrun/core/autodiff"
	"github.com/sslrun/sslrun/core/safetensors"
	"github.com/sslrun/sslrun/core/tensor"
	"github.com/sslrun/sslrun/internal/testenv"
)

const torchPython = "/usr/bin/python3"

// haveTorch reports whether Debian's python with torch is installed (not in
// CI).
func haveTorch() bool {
	return exec.Command(torchPython, "-c", "import torch").Run() == nil
}

// TestTorchLoadsGoWeights saves Go models with Model.Save, has
// tools/golden/check_nn_load.py load them into the torch models with
// load_state_dict(strict=True) and compare the forward passes (evaluation
// mode with the saved running statistics, and training mode). The full W3
// model (22.7M parameters) runs only with SSLRUN_LONG=1; its names and
// shapes are checked without torch by TestStateDictMatchesTorch.
func TestTorchLoadsGoWeights(t *testing.T) {
	if !haveTorch() {
		t.Skip("no torch at " + torchPython)
	}
	w1, err := Workload("mlp-mnist")
	if err != nil {
		t.Fatal(err)
	}
	type tcase struct {
		name  string
		spec  ModelSpec
		input []int
	}
	cases := []tcase{
		{"mlp-mnist", w1, []int{784}},
		{"resnet34-mnist-bias", ModelSpec{
			Backbone:  BackboneSpec{Arch: "resnet34", InChannels: 1, Widths: []int{8, 16, 16, 32}},
			Projector: HeadSpec{Dims: []int{32, 16, 16}, LastBN: LastBNAffine},
			Predictor: HeadSpec{Kind: "bias", Dims: []int{16}},
		}, []int{1, 6, 6}},
		{"convnet-cifar-narrow", ModelSpec{
			Backbone:  BackboneSpec{Arch: "convnet", InChannels: 3, Widths: []int{8, 16, 16, 32}, Strides: []int{1, 2, 2, 2}},
			Projector: HeadSpec{Dims: []int{32, 32, 32}, LastBN: LastBNPlain},
			Predictor: HeadSpec{Kind: "identity"},
		}, []int{3, 8, 8}},
	}
	if os.Getenv(testenv.LongEnv) != "" {
		w3, err := Workload("resnet18-cifar")
		if err != nil {
			t.Fatal(err)
		}
		cases = append(cases, tcase{"resnet18-cifar", w3, []int{3, 16, 16}})
	}
	dir := t.TempDir()
	var args []string
	for _, c := range cases {
		m, err := Build(c.spec, rand.New(rand.NewPCG(3, 4)))
		if err != nil {
			t.Fatal(err)
		}
		// Non-default running statistics and counters so that evaluation
		// mode and the int64 buffers are exercised.
		for i, p := range m.Parts() {
			HashInit(p.Module, p.Prefix, true)
			p.Module.Visit("", func(e Entry) {
				if e.Count != nil {
					*e.Count = int64(10 + i)
				}
			})
		}
		state := filepath.Join(dir, c.name+".safetensors")
		if err := m.Save(state, map[string]string{"test": c.name}); err != nil {
			t.Fatal(err)
		}
		// Batch 16: training-mode BN over very few values per channel is
		// so ill-conditioned that float32 rounding differences grow past
		// the script's 1e-4 tolerance (seen at batch 4 with 1x1 maps).
		x := randn(5, append([]int{16}, c.input...)...)
		io := map[string]*tensor.T{"x": x}
		tp := autodiff.NewTape()
		for _, mode := range []string{"eval", "train"} {
			m.SetTrain(mode == "train")
			tp.Reset()
			restore := tp.NoGrad()
			feat, z, p := m.Forward(tp, tp.Input(x))
			restore()
			io[mode+"/feat"], io[mode+"/z"], io[mode+"/p"] = feat.Value.Clone(), z.Value.Clone(), p.Value.Clone()
		}
		ioPath := filepath.Join(dir, c.name+"-io.safetensors")
		if err := safetensors.WriteFile(ioPath, io, nil); err != nil {
			t.Fatal(err)
		}
		args = append(args, state, ioPath)
	}
	script := filepath.Join("..", "..", "tools", "golden", "check_nn_load.py")
	out, err := exec.Command(torchPython, append([]string{script}, args...)...).CombinedOutput()
	t.Logf("check_nn_load.py:\n%s", out)
	if err != nil {
		t.Fatalf("check_nn_load.py: %v", err)
	}
}
