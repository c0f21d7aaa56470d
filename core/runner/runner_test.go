package runner

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/zclconf/go-cty/cty"

	"github.com/sslrun/sslrun/core/autodiff"
	"github.com/sslrun/sslrun/core/plugin"
	"github.com/sslrun/sslrun/core/plugin/lossdk"
	"github.com/sslrun/sslrun/core/plugin/nnencoder"
	"github.com/sslrun/sslrun/core/safetensors"
	"github.com/sslrun/sslrun/core/train"
)

// The tests bundle their own plugins under the bundled names (core must
// not import plugins/): the encoder of core/plugin/nnencoder, a
// SimSiam-style negative cosine with stop-gradient, a BYOL-style loss and
// an analyzer measuring the mean row norm of z and of the loss's gradient
// on p. The test binary serves them when the runner re-executes it
// (TestMain). Failures are injected through the environment, which
// subprocess plugins inherit:
//
//	SSLRUN_TEST_FAIL=panic@3    the loss panics at step 3 (exit, hang: it
//	                            exits the process or never answers)
//	SSLRUN_TEST_COLLAPSE_AT=3   the analyzer reports collapse from step 3
const (
	envFail     = "SSLRUN_TEST_FAIL"
	envCollapse = "SSLRUN_TEST_COLLAPSE_AT"
)

func TestMain(m *testing.M) {
	plugin.Bundled[EncoderPlugin] = nnencoder.Plugin
	plugin.Bundled["simsiam"] = func() plugin.Plugin {
		return testLoss(plugin.LossSpec{Predictor: true, Target: plugin.TargetStopGrad, Inputs: []string{"z1", "z2", "p1", "p2"}},
			[]string{"z1", "z2"}, func(tp *autodiff.Tape, in map[string]*autodiff.Var) *autodiff.Var {
				a := tp.Mean(tp.CosineSimilarity(in["p1"], in["z2"]))
				b := tp.Mean(tp.CosineSimilarity(in["p2"], in["z1"]))
				return tp.Scale(tp.Add(a, b), -0.5)
			}).Plugin("simsiam", "0.0.1")
	}
	plugin.Bundled["byol"] = func() plugin.Plugin {
		return testLoss(plugin.LossSpec{Predictor: true, Target: plugin.TargetEMA, TauBase: 0.9, TauFinal: 1, Inputs: []string{"p1", "p2", "t1", "t2"}},
			[]string{"t1", "t2"}, func(tp *autodiff.Tape, in map[string]*autodiff.Var) *autodiff.Var {
				a := tp.Mean(tp.CosineSimilarity(in["p1"], in["t2"]))
				b := tp.Mean(tp.CosineSimilarity(in["p2"], in["t1"]))
				return tp.AddScalar(tp.Scale(tp.Add(a, b), -2), 4)
			}).Plugin("byol", "0.0.1")
	}
	plugin.Bundled["decompose"] = func() plugin.Plugin {
		return plugin.Plugin{Name: "decompose", Version: "0.0.1", Analyzer: normAnalyzer{},
			Schema: plugin.Schema{Attributes: []plugin.Attribute{{Name: "tensors", Type: cty.List(cty.String), Default: cty.ListValEmpty(cty.String)}}}}
	}
	plugin.ServeIfBundled()
	os.Exit(m.Run())
}

// testLoss is a lossdk loss that fails as SSLRUN_TEST_FAIL says.
func testLoss(spec plugin.LossSpec, noGrad []string, f func(tp *autodiff.Tape, in map[string]*autodiff.Var) *autodiff.Var) *lossdk.Func {
	return &lossdk.Func{LossSpec: spec, NoGrad: noGrad,
		Forward: func(tp *autodiff.Tape, in map[string]*autodiff.Var, st plugin.Step) (*autodiff.Var, map[string]float64, error) {
			if mode, at, ok := strings.Cut(os.Getenv(envFail), "@"); ok && at == strconv.FormatInt(st.Step, 10) {
				switch mode {
				case "panic":
					panic("test loss bug")
				case "exit":
					os.Exit(3)
				case "hang":
					select {}
				case "sleep":
					time.Sleep(time.Second)
				}
			}
			return f(tp, in), nil, nil
		}}
}

type normAnalyzer struct{}

func (normAnalyzer) Observe(ctx context.Context, in plugin.StepTensors) ([]plugin.Metric, []plugin.Array, error) {
	z, g := in.Tensors["z1"], in.Tensors["grad/p1"]
	if z == nil || g == nil || in.Tensors["p1"] == nil {
		return nil, nil, fmt.Errorf("missing z1, p1 or the gradient on p1 (have %d tensors)", len(in.Tensors))
	}
	var zn, gn float64
	for _, v := range z.Data {
		zn += float64(v) * float64(v)
	}
	for _, v := range g.Data {
		gn += float64(v) * float64(v)
	}
	row := plugin.NewTensor(ctx, z.Shape[1])
	copy(row.Data, z.Data[:z.Shape[1]])
	ms := []plugin.Metric{{Name: "z_norm", Value: math.Sqrt(zn)}, {Name: "grad_norm", Value: math.Sqrt(gn)}}
	if at, err := strconv.ParseInt(os.Getenv(envCollapse), 10, 64); err == nil && in.Step.Step >= at {
		ms = append(ms, plugin.Metric{Name: plugin.MetricCollapsed, Value: 1, Context: map[string]string{"reason": "test collapse"}})
	}
	return ms, []plugin.Array{{Name: "z_row0", T: row, Context: map[string]string{"tensor": "z"}}}, nil
}

func (normAnalyzer) Evaluate(_ context.Context, in plugin.EvalSet) ([]plugin.Metric, []plugin.Array, error) {
	e := in.Tensors["embeddings"]
	if e == nil {
		return nil, nil, fmt.Errorf("no embeddings")
	}
	var s float64
	for _, v := range e.Data {
		s += float64(v) * float64(v)
	}
	return []plugin.Metric{{Name: "eval_norm", Value: math.Sqrt(s), Context: map[string]string{"set": in.Name}}}, nil, nil
}

// memRecorder keeps every metric logged, as "step key value" lines.
type memRecorder struct{ lines *[]string }

func memRecorders(lines *[]string) RecorderFactory {
	return func(context.Context, RunInfo) (Recorder, error) { return memRecorder{lines}, nil }
}

func (m memRecorder) ID() string { return "" }
func (m memRecorder) LogMetrics(step int64, epoch float64, ms []Metric) error {
	for _, x := range ms {
		*m.lines = append(*m.lines, fmt.Sprintf("%d %g %s %x", step, epoch, x.Key, math.Float64bits(x.Value)))
	}
	return nil
}
func (m memRecorder) LogArray(int64, float64, Array) error { return nil }
func (m memRecorder) LogEval(e EvalRecord) error {
	*m.lines = append(*m.lines, fmt.Sprintf("eval %d %s %v", e.Epoch, e.Protocol, e.Top1))
	return nil
}
func (m memRecorder) LogArtifact(string, string, int64) error { return nil }
func (m memRecorder) Finish(Status, bool, error) error        { return nil }

// tinyPipeline is a SimSiam pipeline on 1024 MNIST images with a small MLP:
// 8 steps per epoch.
const tinyPipeline = `
variable "epochs" {
  type    = number
  default = 2
}
variable "lr" {
  type    = number
  default = 0.05
}
run {
  name       = "tiny"
  seed       = 3
  epochs     = var.epochs
  batch_size = 128
}
dataset "train" {
  source = "mnist"
  limit  = 1024
}
dataset "test" {
  source = "mnist"
  split  = "test"
  limit  = 200
}
augment {
  view {
    random_resized_crop {
      size  = [28]
      scale = [0.3, 1.0]
    }
    normalize {
      mean = [0.1307]
      std  = [0.3081]
    }
  }
}
encoder {
  backbone = "mlp"
  widths   = [48]
  projector {
    dims    = [32, 32]
    last_bn = "plain"
  }
  predictor {
    dims = [8, 32]
  }
}
loss "simsiam" {}
optimizer {
  name               = "sgd"
  lr                 = var.lr
  lr_scaling         = "linear"
  momentum           = 0.9
  weight_decay       = 5e-4
  predictor_fixed_lr = true
}
analyzer "decompose" {
  every = 3
}
evaluate "knn" {
  train = dataset.train
  test  = dataset.test
  k     = 10
}
checkpoint {
  every_epochs = 1
}
`

const stepsPerEpoch = 8

// setup writes the pipeline into a fresh directory and parses it.
func setup(t *testing.T, vars map[string]string) (Source, Options, []*Result) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "tiny.hcl")
	text := tinyPipeline
	if vars["loss"] == "byol" {
		text = strings.Replace(text, `loss "simsiam" {}`, `loss "byol" {}`, 1)
	}
	delete(vars, "loss")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return Source{Files: []string{path}, Vars: vars}, Options{Dir: dir, Log: zerolog.Nop(), InProcess: true}, nil
}

func runTiny(t *testing.T, ctx context.Context, vars map[string]string, mod func(*Options)) (*Result, error) {
	t.Helper()
	src, opts, _ := setup(t, vars)
	if mod != nil {
		mod(&opts)
	}
	var diag strings.Builder
	pl, err := Parse(src, opts, &diag)
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, diag.String())
	}
	return Train(ctx, pl.Runs[0], src, opts)
}

// weights reads a checkpoint's tensors.
func weights(t *testing.T, path string) map[string][]float32 {
	t.Helper()
	f, err := safetensors.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]float32{}
	for _, n := range f.Names() {
		if e, _ := f.Entry(n); e.DType != "F32" {
			continue
		}
		x, err := f.Tensor(n)
		if err != nil {
			t.Fatal(err)
		}
		out[n] = x.Data
	}
	return out
}

func sameBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

func TestTrainIsDeterministic(t *testing.T) {
	r1, err := runTiny(t, context.Background(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := runTiny(t, context.Background(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r1.Status != StatusFinished || r1.Steps != 2*stepsPerEpoch || len(r1.Losses) != 2*stepsPerEpoch {
		t.Fatalf("run 1: status %s, %d steps, %d losses", r1.Status, r1.Steps, len(r1.Losses))
	}
	if !sameBits(r1.Losses, r2.Losses) {
		t.Errorf("loss sequences differ:\n%v\n%v", r1.Losses, r2.Losses)
	}
	// kNN at epoch 0 (random init), 1 and 2.
	if len(r1.Evals) != 3 || r1.Evals[0].Epoch != 0 || r1.Evals[2].Epoch != 2 {
		t.Fatalf("evaluations %+v, want kNN at epochs 0, 1, 2", r1.Evals)
	}
	for i := range r1.Evals {
		if r1.Evals[i].Top1 != r2.Evals[i].Top1 {
			t.Errorf("kNN %d: %v vs %v", i, r1.Evals[i].Top1, r2.Evals[i].Top1)
		}
	}
	w1, w2 := weights(t, r1.Checkpoint), weights(t, r2.Checkpoint)
	for k, v := range w1 {
		if !sameBits(v, w2[k]) {
			t.Errorf("final weights %s differ", k)
		}
	}
}

func TestResumeEqualsUninterrupted(t *testing.T) {
	fulls := map[string]*Result{}
	fullLines := map[string][]string{}
	for _, loss := range []string{"simsiam", "byol"} {
		var lines []string
		r, err := runTiny(t, context.Background(), map[string]string{"loss": loss}, func(o *Options) { o.Recorder = memRecorders(&lines) })
		if err != nil {
			t.Fatal(err)
		}
		fulls[loss], fullLines[loss] = r, lines
	}
	for _, tc := range []struct {
		name, loss string
		stop       int64
	}{
		{"epoch boundary", "simsiam", stepsPerEpoch},
		{"mid epoch", "simsiam", stepsPerEpoch + 3},
		{"first epoch", "simsiam", 2},
		{"byol mid epoch", "byol", stepsPerEpoch + 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			full := fulls[tc.loss]
			var lines []string
			part, err := runTiny(t, context.Background(), map[string]string{"loss": tc.loss}, func(o *Options) {
				o.StopAfterSteps = tc.stop
				o.Recorder = memRecorders(&lines)
			})
			if !errors.Is(err, ErrInterrupted) {
				t.Fatalf("stopped run: err %v, want ErrInterrupted", err)
			}
			if part.Status != StatusKilled || !part.Resumable || part.Steps != tc.stop {
				t.Fatalf("stopped run: status %s resumable %v steps %d", part.Status, part.Resumable, part.Steps)
			}
			st, err := readState(part.Dir)
			if err != nil {
				t.Fatal(err)
			}
			if st.Status != StatusKilled || !st.Resumable || st.Step != tc.stop || st.Checkpoint == "" {
				t.Fatalf("run.json after stop: %+v", st)
			}
			rest, err := Resume(context.Background(), part.Dir, Options{Log: zerolog.Nop(), Recorder: memRecorders(&lines), InProcess: true}, nil)
			if err != nil {
				t.Fatalf("resume: %v", err)
			}
			// Every metric (per-step loss, lr, tau, epoch means, analyzer
			// metrics) and evaluation, in order, bit for bit.
			if !slices.Equal(lines, fullLines[tc.loss]) {
				for i := range min(len(lines), len(fullLines[tc.loss])) {
					if lines[i] != fullLines[tc.loss][i] {
						t.Fatalf("recorded metric %d: %q, uninterrupted run %q", i, lines[i], fullLines[tc.loss][i])
					}
				}
				t.Fatalf("%d metrics recorded, uninterrupted run %d", len(lines), len(fullLines[tc.loss]))
			}
			if rest.Status != StatusFinished || rest.Steps != full.Steps {
				t.Fatalf("resumed run: status %s steps %d", rest.Status, rest.Steps)
			}
			got := append(append([]float32(nil), part.Losses...), rest.Losses...)
			if !sameBits(got, full.Losses) {
				t.Errorf("losses differ from the uninterrupted run:\n got %v\nwant %v", got, full.Losses)
			}
			if got, want := rest.FinalLoss(), full.FinalLoss(); math.Float32bits(got) != math.Float32bits(want) {
				t.Errorf("final loss %v, want %v", got, want)
			}
			wf, wr := weights(t, full.Checkpoint), weights(t, rest.Checkpoint)
			for k, v := range wf {
				if !sameBits(v, wr[k]) {
					t.Errorf("final weights %s differ", k)
				}
			}
			last := rest.Evals[len(rest.Evals)-1]
			if want := full.Evals[len(full.Evals)-1]; last.Top1 != want.Top1 {
				t.Errorf("final kNN %v, want %v", last.Top1, want.Top1)
			}
			if _, err := Resume(context.Background(), part.Dir, Options{Log: zerolog.Nop(), InProcess: true}, nil); !IsConfigError(err) {
				t.Errorf("resuming a finished run: %v, want a ConfigError", err)
			}
		})
	}
}

func TestNonFiniteLossStops(t *testing.T) {
	res, err := runTiny(t, context.Background(), map[string]string{"lr": "1e30"}, nil)
	var se *StepError
	if !errors.As(err, &se) {
		t.Fatalf("err = %v, want a *StepError", err)
	}
	var nf *train.NonFiniteLossError
	if !errors.As(err, &nf) {
		t.Errorf("err = %v, want it to wrap *train.NonFiniteLossError", err)
	}
	if se.LastFiniteStep != se.Step-1 || se.Step < 1 {
		t.Errorf("step %d, last finite step %d", se.Step, se.LastFiniteStep)
	}
	if msg := err.Error(); !strings.Contains(msg, fmt.Sprintf("step %d", se.Step)) || !strings.Contains(msg, "last finite loss") {
		t.Errorf("message %q does not name the step and the last finite loss", msg)
	}
	if res.Status != StatusFailed || res.Resumable {
		t.Errorf("status %s resumable %v", res.Status, res.Resumable)
	}
	st, _ := readState(res.Dir)
	if st == nil || st.Status != StatusFailed || st.Error == "" {
		t.Errorf("run.json: %+v", st)
	}
}

func TestCancelWritesCheckpoint(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var seen []int64
	res, err := runTiny(t, ctx, nil, func(o *Options) {
		o.OnStep = func(e StepEvent) {
			seen = append(seen, e.Step)
			if e.Step == 5 {
				cancel() // like Ctrl-C during step 5
			}
		}
	})
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("err = %v, want ErrInterrupted", err)
	}
	if !slices.Equal(seen, []int64{0, 1, 2, 3, 4, 5}) {
		t.Errorf("steps taken %v: the run must stop after the current step", seen)
	}
	if res.Status != StatusKilled || !res.Resumable || res.Steps != 6 {
		t.Fatalf("status %s resumable %v steps %d", res.Status, res.Resumable, res.Steps)
	}
	st, err := readState(res.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Checkpoint != "ckpt-0-6" || st.Epoch != 0 || st.Batch != 6 || !st.Resumable {
		t.Fatalf("run.json: %+v", st)
	}
	if _, err := os.Stat(filepath.Join(res.Dir, st.Checkpoint+weightsSuffix)); err != nil {
		t.Error(err)
	}
}

// TestCancelDuringStep interrupts while step 3 is inside the plugins (the
// loss subprocess takes a second): the step still completes, and the run
// stops after it as on a cancel between steps.
func TestCancelDuringStep(t *testing.T) {
	t.Setenv(envFail, "sleep@3")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res, err := runTiny(t, ctx, nil, func(o *Options) {
		o.InProcess = false
		o.OnStep = func(e StepEvent) {
			if e.Step == 2 {
				time.AfterFunc(300*time.Millisecond, cancel)
			}
		}
	})
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("err = %v, want ErrInterrupted", err)
	}
	if res.Status != StatusKilled || !res.Resumable || res.Steps != 4 {
		t.Fatalf("status %s resumable %v steps %d, want KILLED, resumable, 4 steps", res.Status, res.Resumable, res.Steps)
	}
	if st, err := readState(res.Dir); err != nil || st.Checkpoint != "ckpt-0-4" {
		t.Fatalf("run.json %+v, %v", st, err)
	}
}

func TestStopOnCollapse(t *testing.T) {
	t.Setenv(envCollapse, "3")
	_, err := runTiny(t, context.Background(), nil, func(o *Options) { o.StopOnCollapse = true })
	var ce *CollapseError
	if !errors.As(err, &ce) || ce.Step != 3 {
		t.Fatalf("err = %v, want a CollapseError at step 3", err)
	}
}

func TestEvaluateCheckpoint(t *testing.T) {
	res, err := runTiny(t, context.Background(), map[string]string{"epochs": "1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := Evaluate(context.Background(), res.Dir, "knn", Options{Log: zerolog.Nop(), InProcess: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := res.Evals[len(res.Evals)-1]; rec.Top1 != want.Top1 || rec.Epoch != 1 {
		t.Errorf("eval of the checkpoint: %+v, the run measured %+v", rec, want)
	}
	// No linear block in the pipeline: the defaults on "train" and "test".
	lin, err := Evaluate(context.Background(), res.Dir, "linear", Options{Log: zerolog.Nop(), InProcess: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if lin.Protocol != "linear" || lin.N != 200 || lin.Top1 < 0.2 || lin.Options["epochs"] != "100" {
		t.Errorf("linear probe: %+v", lin)
	}
	if _, err := Evaluate(context.Background(), res.Dir, "svm", Options{InProcess: true}, nil); !IsConfigError(err) {
		t.Errorf("unknown protocol: %v, want a ConfigError", err)
	}
}

func TestUnregisteredLossIsConfigError(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "p.hcl")
	src := strings.Replace(tinyPipeline, `loss "simsiam" {}`, `loss "triplet" {}`, 1)
	src = strings.Replace(src, `analyzer "decompose" {
  every = 3
}`, "", 1)
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	var diag strings.Builder
	_, err := Parse(Source{Files: []string{path}}, Options{InProcess: true}, &diag)
	if !IsConfigError(err) {
		t.Fatalf("err = %v, want a ConfigError", err)
	}
	if !strings.Contains(diag.String(), `no loss plugin named "triplet"`) || !strings.Contains(diag.String(), "p.hcl:") {
		t.Errorf("diagnostics do not name the plugin and the file:\n%s", diag.String())
	}
}

// TestResumeAfterCrash resumes a run whose run.json still says RUNNING: a
// live owner process blocks it, a dead one does not.
func TestResumeAfterCrash(t *testing.T) {
	part, err := runTiny(t, context.Background(), nil, func(o *Options) { o.StopAfterSteps = 5 })
	if !errors.Is(err, ErrInterrupted) {
		t.Fatal(err)
	}
	st, err := readState(part.Dir)
	if err != nil {
		t.Fatal(err)
	}
	st.Status, st.Resumable, st.PID = StatusRunning, false, 1 // pid 1 is alive
	if err := writeState(part.Dir, st); err != nil {
		t.Fatal(err)
	}
	if _, err := Resume(context.Background(), part.Dir, Options{Log: zerolog.Nop(), InProcess: true}, nil); !IsConfigError(err) || !strings.Contains(err.Error(), "still being trained") {
		t.Fatalf("resume of a live run: %v", err)
	}
	st.PID = 1<<22 + 12345 // above the default pid_max: no such process
	if err := writeState(part.Dir, st); err != nil {
		t.Fatal(err)
	}
	res, err := Resume(context.Background(), part.Dir, Options{Log: zerolog.Nop(), InProcess: true}, nil)
	if err != nil || res.Status != StatusFinished || res.Steps != 2*stepsPerEpoch {
		t.Fatalf("resume after a crash: %v, %+v", err, res)
	}
}

func TestPanicFailsRun(t *testing.T) {
	t.Setenv(envFail, "panic@0")
	res, err := runTiny(t, context.Background(), nil, nil)
	if err == nil || !strings.Contains(err.Error(), "test loss bug") {
		t.Fatalf("err = %v, want the panic", err)
	}
	st, _ := readState(res.Dir)
	if res.Status != StatusFailed || st == nil || st.Status != StatusFailed {
		t.Errorf("status %s, run.json %+v", res.Status, st)
	}
}

// TestSubprocessMatchesInProcess trains with every plugin as a subprocess
// (the test binary re-executed, as sslrun re-executes itself) and in
// process, and requires the same run bit for bit: every recorded metric
// and evaluation, the losses and the final weights.
func TestSubprocessMatchesInProcess(t *testing.T) {
	for _, loss := range []string{"simsiam", "byol"} {
		t.Run(loss, func(t *testing.T) {
			var res [2]*Result
			var lines [2][]string
			for i, inProcess := range []bool{true, false} {
				r, err := runTiny(t, context.Background(), map[string]string{"loss": loss, "epochs": "1"}, func(o *Options) {
					o.InProcess = inProcess
					o.Recorder = memRecorders(&lines[i])
				})
				if err != nil {
					t.Fatalf("in process %v: %v", inProcess, err)
				}
				res[i] = r
			}
			if !sameBits(res[0].Losses, res[1].Losses) {
				t.Errorf("losses differ:\n in process  %v\n subprocess  %v", res[0].Losses, res[1].Losses)
			}
			if !slices.Equal(lines[0], lines[1]) {
				t.Errorf("recorded metrics differ (%d vs %d lines)", len(lines[0]), len(lines[1]))
			}
			w0, w1 := weights(t, res[0].Checkpoint), weights(t, res[1].Checkpoint)
			if len(w0) == 0 || len(w0) != len(w1) {
				t.Fatalf("checkpoints hold %d and %d tensors", len(w0), len(w1))
			}
			for k, v := range w0 {
				if !sameBits(v, w1[k]) {
					t.Errorf("final weights %s differ", k)
				}
			}
		})
	}
}

// children lists this process's child processes.
func children(t *testing.T) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so cut at ')'.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(os.Getpid()) {
			out = append(out, pid)
		}
	}
	return out
}

// memfds counts this process's shared-memory descriptors and mappings.
func memfds(t *testing.T) (fds, maps int) {
	t.Helper()
	ents, _ := os.ReadDir("/proc/self/fd")
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && strings.HasPrefix(l, "/memfd:") {
			fds++
		}
	}
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	return fds, strings.Count(string(b), "/memfd:")
}

// TestPluginFailureFailsRun makes the loss plugin subprocess panic, exit
// and hang at step 3: the run ends FAILED with an error naming the plugin,
// its pid, the call and the step, and leaves no child process, descriptor
// or mapping of the arenas behind.
func TestPluginFailureFailsRun(t *testing.T) {
	fds0, maps0 := memfds(t)
	for _, mode := range []string{"panic", "exit", "hang"} {
		t.Run(mode, func(t *testing.T) {
			t.Setenv(envFail, mode+"@3")
			var pids []int
			res, err := runTiny(t, context.Background(), map[string]string{"epochs": "1"}, func(o *Options) {
				o.InProcess = false
				o.CallTimeout = 3 * time.Second
				o.OnStep = func(e StepEvent) {
					if e.Step == 1 {
						pids = children(t)
					}
				}
			})
			var se *StepError
			var ce *plugin.CallError
			if !errors.As(err, &se) || !errors.As(err, &ce) {
				t.Fatalf("err = %v, want a StepError wrapping a plugin.CallError", err)
			}
			if se.Step != 3 || ce.Plugin != "simsiam" || ce.Call != "Loss.Compute" || ce.Step != 3 || ce.Pid <= 0 || ce.Pid == os.Getpid() {
				t.Errorf("step %d, call error %+v", se.Step, ce)
			}
			want := map[string]error{"panic": plugin.ErrPanic, "exit": plugin.ErrExited, "hang": plugin.ErrTimeout}[mode]
			if !errors.Is(err, want) {
				t.Errorf("err = %v, want %v", err, want)
			}
			msg := err.Error()
			for _, s := range []string{`"simsiam"`, "pid " + strconv.Itoa(ce.Pid), "Loss.Compute", "step 3"} {
				if !strings.Contains(msg, s) {
					t.Errorf("message %q does not contain %q", msg, s)
				}
			}
			if !slices.Contains(pids, ce.Pid) || len(pids) != 3 {
				t.Errorf("plugin processes during the run %v, want 3 including %d", pids, ce.Pid)
			}
			if res == nil || res.Status != StatusFailed || res.Resumable {
				t.Fatalf("result %+v", res)
			}
			if st, _ := readState(res.Dir); st == nil || st.Status != StatusFailed || !strings.Contains(st.Error, "Loss.Compute") {
				t.Errorf("run.json %+v", st)
			}
			if left := children(t); len(left) > 0 {
				t.Errorf("child processes left: %v", left)
			}
			if fds, maps := memfds(t); fds != fds0 || maps != maps0 {
				t.Errorf("memfd descriptors %d, mappings %d after the run; %d, %d before", fds, maps, fds0, maps0)
			}
		})
	}
}
