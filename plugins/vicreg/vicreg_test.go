package main

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"

	"github.com/sslrun/sslrun/core/plugin"
	"github.com/sslrun/sslrun/core/safetensors"
	"github.com/sslrun/sslrun/core/tensor"
	"github.com/sslrun/sslrun/internal/testenv"
)

// config is the configuration object the host would decode from a block
// with these values.
func config(o options) cty.Value {
	return cty.ObjectVal(map[string]cty.Value{
		"sim_loss_weight": cty.NumberFloatVal(o.SimWeight), "var_loss_weight": cty.NumberFloatVal(o.VarWeight),
		"cov_loss_weight": cty.NumberFloatVal(o.CovWeight), "gamma": cty.NumberFloatVal(o.Gamma), "eps": cty.NumberFloatVal(o.Eps),
	})
}

func metaFloat(t *testing.T, md map[string]string, k string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(md[k], 64)
	if err != nil {
		t.Fatalf("metadata %s: %v", k, err)
	}
	return v
}

func tensorOf(t *testing.T, f *safetensors.File, name string) *tensor.T {
	t.Helper()
	x, err := f.Tensor(name)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// TestGolden compares the loss, its three terms and the gradients with
// PyTorch 1.13 (tools/golden/gen_vicreg.py: solo-learn's vicreg_loss_func
// with lightly's gamma).
func TestGolden(t *testing.T) {
	for _, name := range []string{"default", "collapsing", "spread", "options"} {
		t.Run(name, func(t *testing.T) {
			f, err := safetensors.ReadFile(filepath.Join("testdata", name+".safetensors"))
			if err != nil {
				t.Fatal(err)
			}
			o := options{SimWeight: metaFloat(t, f.Metadata, "sim_coeff"), VarWeight: metaFloat(t, f.Metadata, "std_coeff"),
				CovWeight: metaFloat(t, f.Metadata, "cov_coeff"), Gamma: metaFloat(t, f.Metadata, "gamma"), Eps: metaFloat(t, f.Metadata, "eps")}
			l := newLoss()
			if name == "default" {
				if o != defaults() {
					t.Fatalf("fixture options %+v are not the defaults %+v", o, defaults())
				}
			} else if err := l.Configure(context.Background(), config(o)); err != nil {
				t.Fatal(err)
			}
			res, err := l.Compute(context.Background(), plugin.LossInputs{Tensors: map[string]*tensor.T{
				"z1": tensorOf(t, f, "z1"), "z2": tensorOf(t, f, "z2")}})
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]float64{"loss": res.Loss}
			for _, m := range res.Metrics {
				got[m.Name] = m.Value
			}
			for _, k := range []string{"loss", "invariance", "variance", "covariance"} {
				if msg := testenv.Mismatch([]float32{float32(got[k])}, tensorOf(t, f, k).Data, testenv.RelTol, testenv.AbsTol); msg != "" {
					t.Errorf("%s: %s", k, msg)
				}
			}
			for _, z := range []string{"z1", "z2"} {
				if msg := testenv.Mismatch(res.Grads[z].Data, tensorOf(t, f, "grad."+z).Data, testenv.RelTol, testenv.AbsTol); msg != "" {
					t.Errorf("grad %s: %s", z, msg)
				}
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	o := defaults()
	o.Eps = 0
	err := newLoss().Configure(context.Background(), config(o))
	var ae *plugin.AttrError
	if !errors.As(err, &ae) || ae.Attr != "eps" {
		t.Fatalf("err = %v, want an AttrError on eps", err)
	}
	_, err = newLoss().Compute(context.Background(), plugin.LossInputs{Tensors: map[string]*tensor.T{
		"z1": tensor.New(1, 4), "z2": tensor.New(1, 4)}})
	if err == nil || !strings.Contains(err.Error(), "N >= 2") {
		t.Fatalf("err = %v", err)
	}
}

// TestTutorialIsThisFile keeps docs/writing-a-loss-plugin.md honest: its
// first Go code block is main.go, byte for byte.
func TestTutorialIsThisFile(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "writing-a-loss-plugin.md"))
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := bytes.Cut(doc, []byte("```go\n"))
	if !ok {
		t.Fatal("the tutorial has no ```go block")
	}
	block, _, ok := bytes.Cut(rest, []byte("```\n"))
	if !ok {
		t.Fatal("the tutorial's ```go block is not closed")
	}
	if !bytes.Equal(block, src) {
		t.Fatal("docs/writing-a-loss-plugin.md's code block differs from plugins/vicreg/main.go: paste the file into the tutorial")
	}
}

func randn(rng *rand.Rand, x *tensor.T) {
	for i := range x.Data {
		x.Data[i] = float32(rng.NormFloat64())
	}
}

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// build compiles this plugin once per test binary into a plugins directory
// under the name the host discovers, as a user would.
func build(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "vicreg-plugin-")
		if buildErr != nil {
			return
		}
		exe := filepath.Join(buildDir, plugin.ExternalPrefix+"vicreg")
		out, err := exec.Command("go", "build", "-o", exe, "github.com/sslrun/sslrun/plugins/vicreg").CombinedOutput()
		if err != nil {
			buildErr = errors.New("go build: " + err.Error() + "\n" + string(out))
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildDir
}

// skipShort skips the tests that build the plugin under -short. With a warm
// build cache (the test binary has just compiled the same packages) the build
// only links: about 6 s on the shared 2-core VM, so it stays in the default
// suite.
func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the plugin binary; skipped with -short")
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// TestExternal builds the plugin as its own binary, pins it in a lock file,
// launches it with that checksum and requires the in-process results.
func TestExternal(t *testing.T) {
	skipShort(t)
	dir := build(t)
	path, err := plugin.Resolve("vicreg", dir)
	if err != nil {
		t.Fatal(err)
	}
	lockPath := plugin.LockPath(filepath.Join(t.TempDir(), "pipeline.hcl"))
	lock, err := plugin.ReadLock(lockPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := lock.Pin("vicreg", path); err != nil {
		t.Fatal(err)
	}
	if err := lock.Write(lockPath); err != nil {
		t.Fatal(err)
	}
	if lock, err = plugin.ReadLock(lockPath); err != nil {
		t.Fatal(err)
	}
	sum, err := lock.Checksum("vicreg")
	if err != nil {
		t.Fatal(err)
	}
	h, err := plugin.NewHost(plugin.HostOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ctx := context.Background()
	ext, err := h.Launch(ctx, plugin.LaunchSpec{Name: "vicreg", Path: lock.Plugins["vicreg"].Path, SHA256: sum})
	if err != nil {
		t.Fatal(err)
	}
	local, err := h.InProcess(newLoss().Plugin("vicreg", "0.1.0"))
	if err != nil {
		t.Fatal(err)
	}
	if info := ext.Info(); info.Name != "vicreg" || info.Version != "0.1.0" {
		t.Fatalf("info %+v", info)
	}
	body, diags := hclsyntax.ParseConfig([]byte("cov_loss_weight = 2\ngamma = 0.5\n"), "pipeline.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	for _, c := range []*plugin.Client{ext, local} {
		if diags := c.ConfigureBody(ctx, body.Body, nil); diags.HasErrors() {
			t.Fatal(diags)
		}
	}
	spec, err := ext.Loss().Spec(ctx)
	if err != nil || strings.Join(spec.Inputs, ",") != "z1,z2" || spec.Target != plugin.TargetNone {
		t.Fatalf("spec %+v err %v", spec, err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for step := int64(0); step < 2; step++ {
		if err := h.Reset(); err != nil {
			t.Fatal(err)
		}
		in := map[string]*tensor.T{}
		for _, n := range []string{"z1", "z2"} {
			x, err := h.NewTensor(128, 64)
			if err != nil {
				t.Fatal(err)
			}
			randn(rng, x)
			in[n] = x
		}
		want, err := local.Loss().Compute(ctx, plugin.LossInputs{Step: plugin.Step{Step: step}, Tensors: in})
		if err != nil {
			t.Fatal(err)
		}
		wantLoss, wantGrads := want.Loss, map[string]*tensor.T{"z1": want.Grads["z1"].Clone(), "z2": want.Grads["z2"].Clone()}
		got, err := ext.Loss().Compute(ctx, plugin.LossInputs{Step: plugin.Step{Step: step}, Tensors: in})
		if err != nil {
			t.Fatal(err)
		}
		if got.Loss != wantLoss {
			t.Errorf("step %d: loss %v in the subprocess, %v in process", step, got.Loss, wantLoss)
		}
		for n, w := range wantGrads {
			if msg := testenv.Mismatch(got.Grads[n].Data, w.Data, 0, 0); msg != "" {
				t.Errorf("step %d: grad %s: %s", step, n, msg)
			}
		}
		if len(got.Metrics) != 3 || got.Metrics[0].Name != "covariance" {
			t.Errorf("metrics %+v", got.Metrics)
		}
	}
	// The schema reaches the host: a bad value is an HCL diagnostic.
	bad, _ := hclsyntax.ParseConfig([]byte("gama = 1\n"), "pipeline.hcl", hcl.InitialPos)
	if diags := ext.ConfigureBody(ctx, bad.Body, nil); !diags.HasErrors() || !strings.Contains(diags.Error(), "gamma") {
		t.Errorf("diags %v, want a suggestion of gamma", diags)
	}
}

// TestExternalWrongChecksum refuses to start the built plugin under a
// checksum it does not have.
func TestExternalWrongChecksum(t *testing.T) {
	skipShort(t)
	path := filepath.Join(build(t), plugin.ExternalPrefix+"vicreg")
	sum, err := plugin.HashFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum[len(sum)-1] ^= 1
	h, err := plugin.NewHost(plugin.HostOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	_, err = h.Launch(context.Background(), plugin.LaunchSpec{Name: "vicreg", Path: path, SHA256: sum})
	if !errors.Is(err, plugin.ErrChecksum) {
		t.Fatalf("err = %v, want ErrChecksum", err)
	}
}
