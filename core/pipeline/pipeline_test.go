package pipeline

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"

	"github.com/sslrun/sslrun/core/data/augment"
	"github.com/sslrun/sslrun/core/optim"
)

var update = flag.Bool("update", false, "rewrite golden files")

// minimal is a small valid pipeline the tests modify.
const minimal = `variable "epochs" {
  type    = number
  default = 2
}

locals {
  width = max(16, 8)
}

run {
  name       = "mini"
  seed       = 7
  epochs     = var.epochs
  batch_size = 128
}

dataset "train" {
  source = "cifar10"
}

dataset "test" {
  source = "cifar10"
  split  = "test"
}

augment {
  view {
    random_resized_crop {
      size  = [32]
      scale = [0.2, 1.0]
    }
    hflip {}
    normalize {
      mean = [0.5, 0.5, 0.5]
      std  = [0.25, 0.25, 0.25]
    }
  }
}

encoder {
  backbone = "convnet"
  widths   = [local.width, 32]
  strides  = [1, 2]
  projector {
    dims    = [64, 64]
    last_bn = "plain"
  }
  predictor {
    dims = [16, 64]
  }
}

loss "simsiam" {
  target = "z"
}

optimizer {
  name       = "sgd"
  lr         = 0.03
  lr_scaling = "linear"
}

evaluate "knn" {
  test = dataset.test
}
`

func parse(t *testing.T, src string, opts Options) (*Pipeline, hcl.Diagnostics, *Parser) {
	t.Helper()
	p := NewParser(opts)
	pl, diags := p.ParseSource("test.hcl", []byte(src))
	return pl, diags, p
}

func mustParse(t *testing.T, src string, opts Options) *Pipeline {
	t.Helper()
	pl, diags, p := parse(t, src, opts)
	if diags.HasErrors() {
		var buf bytes.Buffer
		p.WriteDiagnostics(&buf, diags, 0)
		t.Fatalf("unexpected errors:\n%s", buf.String())
	}
	return pl
}

func TestMinimalResolved(t *testing.T) {
	pl := mustParse(t, minimal, Options{})
	if pl.Study != nil || len(pl.Runs) != 1 {
		t.Fatalf("study %v, %d runs", pl.Study, len(pl.Runs))
	}
	r := pl.Runs[0]
	c := r.Config
	checks := []struct {
		name      string
		got, want any
	}{
		{"name", r.Name, "mini"},
		{"seed", c.Seed, int64(7)},
		{"epochs", c.Epochs, 2},
		{"lr scaled", c.Optimizer.LR, 0.03 * 128 / 256},
		{"base lr", c.Optimizer.BaseLR, 0.03},
		{"momentum default", c.Optimizer.Momentum, 0.9},
		{"in_channels from data", c.Encoder.Backbone.InChannels, 3},
		{"widths from local", fmt.Sprint(c.Encoder.Backbone.Widths), "[16 32]"},
		{"projector dims", fmt.Sprint(c.Encoder.Projector.Dims), "[32 64 64]"},
		{"predictor dims", fmt.Sprint(c.Encoder.Predictor.Dims), "[64 16 64]"},
		{"predictor bias", c.Encoder.Predictor.LastBias, true},
		{"views", len(c.Augment.Views), 2},
		{"hflip default p", c.Augment.Views[0].Steps[1].Params["p"], 0.5},
		{"loss default", string(c.Loss.ConfigJSON), `{"predictor":"mlp","stop_gradient":true,"target":"z"}`},
		{"knn k", c.Evaluations[0].K, 200},
		{"knn T", c.Evaluations[0].Temperature, 0.1},
		{"knn at start", c.Evaluations[0].AtStart, true},
		{"knn train default", c.Evaluations[0].Train, "train"},
		{"schedule default", c.Schedule.Name, "warmup_cosine"},
		{"checkpoint keep", c.Checkpoint.Keep, 1},
		{"database", c.Database, "sslrun.db"},
		{"param lr", r.Params["optimizer.lr"], 0.015},
		{"param int", r.Params["epochs"], int64(2)},
		{"param float stays float", r.Params["schedule.min_lr"], 0.0},
		{"param plugin", r.Params["loss.config.target"], "z"},
		{"param list", r.Params["encoder.backbone.widths"], "[16,32]"},
		{"param step", r.Params["augment.views.0.steps.0.params.scale"], "[0.2,1]"},
	}
	for _, c := range checks {
		if fmt.Sprint(c.got) != fmt.Sprint(c.want) || fmt.Sprintf("%T", c.got) != fmt.Sprintf("%T", c.want) {
			t.Errorf("%s: got %v (%T), want %v (%T)", c.name, c.got, c.got, c.want, c.want)
		}
	}
	if len(r.Hash) != 64 {
		t.Errorf("hash %q", r.Hash)
	}
	// Determinism: a second parse gives byte-identical JSON.
	again := mustParse(t, minimal, Options{})
	if !bytes.Equal(again.Runs[0].JSON, r.JSON) {
		t.Errorf("JSON differs between parses")
	}
}

func TestAugmentPipelines(t *testing.T) {
	// The SimCLR view written in HCL must equal core/data/augment's recipe.
	src := strings.Replace(minimal, `    random_resized_crop {
      size  = [32]
      scale = [0.2, 1.0]
    }
    hflip {}
    normalize {
      mean = [0.5, 0.5, 0.5]
      std  = [0.25, 0.25, 0.25]
    }`, `    random_resized_crop {
      size  = [32]
      scale = [0.2, 1.0]
    }
    hflip {
      p = 0.5
    }
    color_jitter {
      brightness = 0.4
      contrast   = 0.4
      saturation = 0.4
      hue        = 0.1
      p          = 0.8
    }
    grayscale {
      p = 0.2
    }
    normalize {
      mean = [0.4914, 0.4822, 0.4465]
      std  = [0.2470, 0.2435, 0.2616]
    }`, 1)
	pl := mustParse(t, src, Options{})
	ps := pl.Runs[0].Config.Augment.Pipelines()
	want := augment.SimCLRView(32, augment.CIFAR10Mean, augment.CIFAR10Std).String()
	for i, p := range ps {
		if p.String() != want {
			t.Errorf("view %d:\n got %s\nwant %s", i, p, want)
		}
		if c, h, w := p.OutShape(3, 32, 32); c != 3 || h != 32 || w != 32 {
			t.Errorf("view %d out shape %d %d %d", i, c, h, w)
		}
	}
}

func TestOptimizerAndSchedule(t *testing.T) {
	src := strings.Replace(minimal, `  lr_scaling = "linear"
}`, `  lr_scaling = "linear"
  weight_decay = 5e-4
  predictor_fixed_lr = true
}

schedule {
  warmup_epochs   = 1
  warmup_start_lr = 0.001
}`, 1)
	src = strings.Replace(src, "batch_size = 128", "batch_size = 512", 1)
	pl := mustParse(t, src, Options{})
	o := pl.Runs[0].Config.Optimizer
	if o.LR != 0.06 || o.Algorithm() != optim.SGD {
		t.Errorf("lr %v alg %v", o.LR, o.Algorithm())
	}
	g := o.Group("backbone")
	if g.Momentum != 0.9 || g.WeightDecay != 5e-4 || g.Static {
		t.Errorf("group %+v", g)
	}
	pg := o.PredictorGroup()
	if !pg.Static || pg.FixedLR != 0.06 {
		t.Errorf("predictor group %+v", pg)
	}
	s, err := pl.Runs[0].Config.Schedule.Build(o.LR, 2, 10)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.LR(0); got != 0.001 {
		t.Errorf("lr at step 0: %v", got)
	}
	if got := s.LR(10); got != 0.06 {
		t.Errorf("lr at step 10 (end of warmup): %v", got)
	}
}

func TestJSONSyntax(t *testing.T) {
	native := NewParser(Options{})
	a, diags := native.ParseFiles("../../pipelines/quickstart.hcl")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	js := NewParser(Options{})
	b, diags := js.ParseFiles("testdata/quickstart.hcl.json")
	if diags.HasErrors() {
		var buf bytes.Buffer
		js.WriteDiagnostics(&buf, diags, 0)
		t.Fatal(buf.String())
	}
	if !bytes.Equal(a.Runs[0].JSON, b.Runs[0].JSON) || a.Runs[0].Hash != b.Runs[0].Hash {
		t.Errorf("JSON syntax resolves differently:\nhcl  %s\njson %s", a.Runs[0].JSON, b.Runs[0].JSON)
	}
}

func TestVariables(t *testing.T) {
	dir := t.TempDir()
	varFile := filepath.Join(dir, "long.hclvars")
	if err := os.WriteFile(varFile, []byte("epochs = 30\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	src := strings.Replace(minimal, `locals {`, `variable "quick" {
  type    = bool
  default = false
}

variable "tag" {
  type    = string
  default = "x"
}

locals {
  epochs = var.quick ? 1 : var.epochs
  label  = format("%s-%d", var.tag, local.epochs)
`, 1)
	src = strings.Replace(src, "epochs     = var.epochs", "epochs     = local.epochs\n  tags       = { label = local.label }", 1)
	tests := []struct {
		name   string
		opts   Options
		epochs int
		label  string
	}{
		{"defaults", Options{}, 2, "x-2"},
		{"var file", Options{VarFiles: []string{varFile}}, 30, "x-30"},
		{"var beats var file", Options{VarFiles: []string{varFile}, Vars: map[string]string{"epochs": "4"}}, 4, "x-4"},
		{"bool and string vars", Options{Vars: map[string]string{"quick": "true", "tag": "quick run"}}, 1, "quick run-1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pl := mustParse(t, src, tc.opts)
			c := pl.Runs[0].Config
			if c.Epochs != tc.epochs || c.Tags["label"] != tc.label {
				t.Errorf("epochs %d label %q, want %d %q", c.Epochs, c.Tags["label"], tc.epochs, tc.label)
			}
		})
	}
}

func TestStudy(t *testing.T) {
	src := minimal + `
variable "target" {
  type    = string
  default = "z"
}

study "ablation" {
  matrix {
    target = ["z", "p"]
    seed   = [0, 1]
  }
  run "sg" {}
  run "nosg" {
    epochs = 3
    loss "simsiam" {
      stop_gradient = false
    }
  }
}
`
	src = strings.Replace(src, `  target = "z"`, `  target = var.target`, 1)
	pl := mustParse(t, src, Options{})
	if pl.Study == nil || pl.Study.Name != "ablation" {
		t.Fatalf("study %+v", pl.Study)
	}
	var names []string
	hashes := map[string]bool{}
	for _, r := range pl.Runs {
		names = append(names, r.Name)
		hashes[r.Hash] = true
		if r.Study != "ablation" {
			t.Errorf("%s: study %q", r.Name, r.Study)
		}
		wantSG := strings.HasPrefix(r.Name, "sg-")
		if sg := r.Config.Loss.Config.GetAttr("stop_gradient").True(); sg != wantSG {
			t.Errorf("%s: stop_gradient %v", r.Name, sg)
		}
		if tgt := r.Config.Loss.Config.GetAttr("target").AsString(); tgt != r.Matrix["target"] {
			t.Errorf("%s: target %s, matrix %v", r.Name, tgt, r.Matrix)
		}
		if r.Config.Seed != r.Matrix["seed"] {
			t.Errorf("%s: seed %d, matrix %v", r.Name, r.Config.Seed, r.Matrix)
		}
		wantEpochs := 2
		if !wantSG {
			wantEpochs = 3
		}
		if r.Config.Epochs != wantEpochs {
			t.Errorf("%s: epochs %d", r.Name, r.Config.Epochs)
		}
		// Overriding stop_gradient keeps the other loss options.
		if r.Config.Loss.Config.GetAttr("predictor").AsString() != "mlp" {
			t.Errorf("%s: loss options lost", r.Name)
		}
	}
	want := "sg-z-seed0 sg-z-seed1 sg-p-seed0 sg-p-seed1 nosg-z-seed0 nosg-z-seed1 nosg-p-seed0 nosg-p-seed1"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("names\n got %s\nwant %s", got, want)
	}
	if len(hashes) != 8 {
		t.Errorf("%d distinct hashes, want 8", len(hashes))
	}
}

type fakeProvider struct{}

func (fakeProvider) Schema(kind, name string) (hcldec.Spec, error) {
	if kind == KindLoss && name == "mse" {
		return hcldec.ObjectSpec{"scale": &hcldec.AttrSpec{Name: "scale", Type: cty.Number, Required: true}}, nil
	}
	return nil, fmt.Errorf("%s %s: %w", kind, name, ErrUnknownPlugin)
}

func (fakeProvider) Names(kind string) []string {
	if kind == KindLoss {
		return []string{"mse"}
	}
	return nil
}

func TestSchemaProviderChain(t *testing.T) {
	src := strings.Replace(minimal, "loss \"simsiam\" {\n  target = \"z\"\n}", "loss \"mse\" {\n  scale = 2\n}", 1)
	opts := Options{Schemas: Chain{fakeProvider{}, StaticSchemas()}}
	pl := mustParse(t, src, opts)
	if got := string(pl.Runs[0].Config.Loss.ConfigJSON); got != `{"scale":2}` {
		t.Errorf("config %s", got)
	}
	// The live plugin's schema validates its block.
	_, diags, _ := parse(t, strings.Replace(src, "scale = 2", "scael = 2", 1), opts)
	if !strings.Contains(details(diags), `Did you mean "scale"?`) {
		t.Errorf("diags: %v", diags)
	}
	// Without the live provider the plugin is unknown.
	_, diags, _ = parse(t, src, Options{})
	if !strings.Contains(details(diags), `There is no loss plugin named "mse"`) {
		t.Errorf("diags: %v", diags)
	}
}

func details(diags hcl.Diagnostics) string {
	var b strings.Builder
	for _, d := range diags {
		b.WriteString(d.Summary + ": " + d.Detail + "\n")
	}
	return b.String()
}

// posOf returns the 1-based line and column of the first occurrence of at
// in src.
func posOf(t *testing.T, src, at string) (int, int) {
	t.Helper()
	i := strings.Index(src, at)
	if i < 0 || strings.Count(src, at) != 1 {
		t.Fatalf("marker %q must occur exactly once", at)
	}
	line := strings.Count(src[:i], "\n") + 1
	col := i - strings.LastIndex(src[:i], "\n")
	return line, col
}

func TestDiagnostics(t *testing.T) {
	tests := []struct {
		name     string
		old, new string // edit applied to minimal
		opts     Options
		at       string // where the error must point (unique in the edited source)
		summary  string
		detail   string // substring of the detail
	}{
		{"typo argument", "batch_size = 128", "batchsize = 128", Options{}, "batchsize", "Unsupported argument", `Did you mean "batch_size"?`},
		{"typo block", "checkpoint", "", Options{}, "", "", ""}, // placeholder replaced below
		{"wrong type", "seed       = 7", `seed       = "seven"`, Options{}, `seven"`, "Unsuitable value type", "a number is required"},
		{"bad variable reference", "epochs     = var.epochs", "epochs     = var.epochz", Options{}, ".epochz", "Unsupported attribute", `Did you mean "epochs"?`},
		{"bad local reference", "[local.width, 32]", "[local.widht, 32]", Options{}, ".widht", "Unsupported attribute", `Did you mean "width"?`},
		{"bad dataset reference", "test = dataset.test", "test = dataset.tset", Options{}, ".tset", "Unsupported attribute", `Did you mean "test"?`},
		{"unknown root", "epochs     = var.epochs", "epochs     = vars.epochs", Options{}, "vars.epochs", "Unknown variable", `Did you mean "var"?`},
		{"unknown function", "max(16, 8)", "maxx(16, 8)", Options{}, "maxx", "Call to unknown function", `Did you mean "max"?`},
		{"unknown plugin", `loss "simsiam"`, `loss "simsaim"`, Options{}, `"simsaim"`, "Unknown loss plugin", `Did you mean "simsiam"?`},
		{"plugin option typo", `target = "z"`, `traget = "z"`, Options{}, "traget", "Unsupported argument", `Did you mean "target"?`},
		{"plugin option value", `target = "z"`, `target = "zz"`, Options{}, `"zz"`, "Invalid value", `Did you mean "z"?`},
		{"plugin option type", `target = "z"`, `target = ["z"]`, Options{}, `["z"]`, "Incorrect attribute value type", "string required"},
		{"scale min > max", "scale = [0.2, 1.0]", "scale = [0.9, 0.2]", Options{}, "[0.9, 0.2]", "Invalid range", "scale min 0.9 is greater than max 0.2"},
		{"probability", "hflip {}", "hflip {\n      p = 1.5\n    }", Options{}, "1.5", "Invalid probability", "[0, 1]"},
		{"backbone name", `backbone = "convnet"`, `backbone = "resnet19"`, Options{}, `"resnet19"`, "Invalid value", `Did you mean "resnet18"?`},
		{"lr scaling", `lr_scaling = "linear"`, `lr_scaling = "linaer"`, Options{}, `"linaer"`, "Invalid value", `Did you mean "linear"?`},
		{"lars option on sgd", `lr_scaling = "linear"`, "lr_scaling = \"linear\"\n  eta = 0.02", Options{}, "0.02", "Unexpected argument", "eta applies to lars only"},
		{"unknown evaluation", `evaluate "knn"`, `evaluate "kn"`, Options{}, `"kn"`, "Unknown evaluation", `Did you mean "knn"?`},
		{"eval dataset string", "test = dataset.test", `test = "tst"`, Options{}, `"tst"`, "Unknown dataset", `Did you mean "test"?`},
		{"channels mismatch", `backbone = "convnet"`, "backbone = \"convnet\"\n  in_channels = 1", Options{}, "1\n", "Input size mismatch", "3 channels"},
		{"predictor mismatch", `target = "z"`, "target = \"z\"\n  predictor = \"bias\"", Options{}, `"bias"`, "Predictor mismatch", `expects predictor = "bias"`},
		{"undeclared -var", "", "", Options{Vars: map[string]string{"epoch": "3"}}, "", "Value for undeclared variable", `Did you mean "epochs"?`},
		{"bad -var type", "", "", Options{Vars: map[string]string{"epochs": "many"}}, "", "Invalid value for variable", "a number is required"},
		{"missing required variable", "  default = 2\n", "", Options{}, `variable "epochs"`, "No value for required variable", "-var epochs="},
		{"duplicate block", `dataset "test" {`, "dataset \"train\" {\n  source = \"mnist\"\n}\n\ndataset \"test\" {", Options{}, "", "Duplicate dataset block", "already defined"},
		{"syntax error", "batch_size = 128", "batch_size = 128 +", Options{}, "", "Invalid expression", ""},
		// Sizes are bounded at parse time: views = 1e12 used to allocate
		// until the process ran out of memory.
		{"views over the cap", "augment {\n  view {", "augment {\n  views = 65\n  view {", Options{}, "65\n", "Invalid value", "views must be at most 64, got 65"},
		{"views absurd", "augment {\n  view {", "augment {\n  views = 1000000000000\n  view {", Options{}, "1000000000000", "Invalid value", "views must be at most 64"},
		{"view blocks over the cap", "augment {\n  view {", "augment {\n" + strings.Repeat("  view {}\n", 64) + "  view {} # 65\n  view {", Options{}, "view {} # 65", "Too many view blocks", "At most 64 views are allowed, got 66 view blocks."},
		{"width over the cap", "[local.width, 32]", "[local.width, 100000]", Options{}, "100000]", "Invalid value", "widths must be between 1 and 65536, got 100000"},
		{"zero width", "[local.width, 32]", "[local.width, 0]", Options{}, "0]\n  strides", "Invalid value", "widths must be between 1 and 65536, got 0"},
		{"negative stride", "strides  = [1, 2]", "strides  = [1, -2]", Options{}, "-2]", "Invalid value", "strides must be between 1 and 65536, got -2"},
		{"empty widths", "[local.width, 32]", "[]", Options{}, "[]", "Invalid value", "widths must not be empty"},
		{"empty strides", "strides  = [1, 2]", "strides  = []", Options{}, "[]", "Invalid value", "strides must not be empty"},
		{"too many stages", "strides  = [1, 2]", "strides  = range(1, 101)\n  blocks   = range(1, 101)", Options{}, "range(1, 101)\n  blocks", "Invalid value", "strides must have at most 64 entries, got 100"},
		{"stem width over the cap", `backbone = "convnet"`, "backbone = \"convnet\"\n  stem_width = 70000", Options{}, "70000", "Invalid value", "stem_width must be between 1 and 65536, got 70000"},
		{"projector dim over the cap", "dims    = [64, 64]", "dims    = [64, 1000000]", Options{}, "1000000]", "Invalid dims", "dims must be between 1 and 65536, got 1000000"},
		{"empty projector dims", "dims    = [64, 64]", "dims    = []", Options{}, "[]", "Missing dims", "needs dims"},
	}
	tests[1] = struct {
		name, old, new string
		opts           Options
		at             string
		summary        string
		detail         string
	}{"typo block", "evaluate \"knn\"", "evalute \"knn\"", Options{}, "evalute", "Unsupported block type", `Did you mean "evaluate"?`}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := minimal
			if tc.old != "" {
				if !strings.Contains(src, tc.old) {
					t.Fatalf("edit %q not found", tc.old)
				}
				src = strings.Replace(src, tc.old, tc.new, 1)
			}
			pl, diags, p := parse(t, src, tc.opts)
			if pl != nil || !diags.HasErrors() {
				t.Fatalf("no error")
			}
			var d *hcl.Diagnostic
			for _, x := range diags {
				if x.Summary == tc.summary {
					d = x
					break
				}
			}
			var buf bytes.Buffer
			p.WriteDiagnostics(&buf, diags, 0)
			if d == nil {
				t.Fatalf("no %q diagnostic in:\n%s", tc.summary, buf.String())
			}
			if !strings.Contains(d.Detail, tc.detail) {
				t.Errorf("detail %q does not contain %q", d.Detail, tc.detail)
			}
			if tc.at != "" {
				line, col := posOf(t, src, tc.at)
				if d.Subject == nil || d.Subject.Filename != "test.hcl" || d.Subject.Start.Line != line || d.Subject.Start.Column != col {
					t.Errorf("subject %v, want test.hcl:%d,%d\n%s", d.Subject, line, col, buf.String())
				}
			}
			if !strings.Contains(buf.String(), "Error: "+tc.summary) {
				t.Errorf("text output lacks the error:\n%s", buf.String())
			}
		})
	}
}

// broken has one error of each kind; all must be reported in one pass.
const broken = `variable "epochs" {
  type    = number
  default = 2
}

run {
  epochs    = var.epochz
  batchsize = 128
}

dataset "train" {
  source = "cifar-10"
}

augment {
  view {
    random_resized_crop {
      size  = [32]
      scale = [0.9, 0.2]
    }
  }
}

encoder {
  backbone = "convnet"
  projector {
    dims = "64"
  }
}

loss "simsaim" {}

optimizer {
  name       = "sgd"
  lr         = 0.03
  lr_scaling = "linear"
}

evaluate "knn" {
  k = 20
}
`

func TestDiagnosticsGolden(t *testing.T) {
	p := NewParser(Options{})
	pl, diags := p.ParseSource("broken.hcl", []byte(broken))
	if pl != nil {
		t.Fatal("parsed a broken pipeline")
	}
	var buf bytes.Buffer
	if err := p.WriteDiagnostics(&buf, diags, 0); err != nil {
		t.Fatal(err)
	}
	if n := len(diags.Errs()); n < 7 {
		t.Errorf("only %d errors reported in one pass:\n%s", n, buf.String())
	}
	golden := filepath.Join("testdata", "broken.golden")
	if *update {
		if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("diagnostics differ from %s (go test -update to accept):\n%s", golden, buf.String())
	}
}

func TestFormat(t *testing.T) {
	tests := []struct {
		name, in, want string
		wantErr        bool
	}{
		{"align and indent", "run {\nepochs = 1\n    batch_size=2\n}\n", "run {\n  epochs     = 1\n  batch_size = 2\n}\n", false},
		{"already formatted", "run {\n  epochs = 1\n}\n", "run {\n  epochs = 1\n}\n", false},
		{"json", `{"run": {"epochs": 1}}`, "{\n  \"run\": {\n    \"epochs\": 1\n  }\n}\n", false},
		{"syntax error", "run {\n  epochs = \n", "run {\n  epochs = \n", true},
		{"bad json", `{"run": }`, `{"run": }`, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := Format([]byte(tc.in))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v", err)
			}
			if string(out) != tc.want {
				t.Errorf("got %q, want %q", out, tc.want)
			}
		})
	}
}

func TestStudyAndLocalDiagnostics(t *testing.T) {
	tests := []struct {
		name, extra, summary, detail string
	}{
		{"unknown axis", "study \"s\" {\n  matrix {\n    seeds = [0, 1]\n  }\n}\n", "Unknown matrix axis", `Did you mean "seed"?`},
		{"axis not a list", "study \"s\" {\n  matrix {\n    seed = 1\n  }\n}\n", "Invalid matrix axis", "non-empty list"},
		{"empty study", "study \"s\" {}\n", "Empty study", "matrix"},
		{"variant typo", "study \"s\" {\n  run \"a\" {\n    epoch = 3\n  }\n}\n", "Unsupported argument", `Did you mean "epochs"?`},
		{"duplicate variant names", "study \"s\" {\n  run \"a\" {}\n  run \"a\" {}\n}\n", "Duplicate run block", "already defined"},
		{"cyclic locals", "locals {\n  a = local.b\n  b = local.a\n}\n", "Cyclic local value", "depends on itself"},
		{"too many variants", "study \"s\" {\n  matrix {\n    seed = range(101)\n    epochs = range(1, 101)\n  }\n}\n", "Too many study variants", "10100 variants (1 run x 101 seed x 100 epochs); at most 10000"},
		{"too many variants, huge axes", "study \"s\" {\n  run \"a\" {}\n  run \"b\" {}\n  matrix {\n    seed = range(1000)\n    epochs = range(1, 1001)\n    batch_size = range(1, 1001)\n  }\n}\n", "Too many study variants", "2000000000 variants (2 runs x 1000 seed x 1000 epochs x 1000 batch_size); at most 10000"},
		{"variant override error", "study \"s\" {\n  run \"a\" {\n    optimizer {\n      lr = -1\n    }\n  }\n}\n", "Invalid value", "lr must be positive"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, diags, _ := parse(t, minimal+"\n"+tc.extra, Options{})
			got := details(diags)
			if !strings.Contains(got, tc.summary+": ") || !strings.Contains(got, tc.detail) {
				t.Errorf("want %s / %s, got:\n%s", tc.summary, tc.detail, got)
			}
			for _, d := range diags {
				if d.Summary == tc.summary && (d.Subject == nil || d.Subject.Start.Line == 0) {
					t.Errorf("%s has no source range", d.Summary)
				}
			}
		})
	}
}
