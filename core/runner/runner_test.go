package runner

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/zclconf/go-cty/cty"

	"github.com/sslrun/sslrun/core/autodiff"
	"github.com/sslrun/sslrun/core/safetensors"
	"github.com/sslrun/sslrun/core/train"
)

// The tests register their own small loss and analyzer under the bundled
// names (core must not import plugins/): a SimSiam-style negative cosine
// with stop-gradient, and an analyzer measuring the mean row norm of z and
// of its gradient, which flags "collapse" from a chosen step on.
var collapseAt int64 = -1

// lossPanics makes the test loss panic (a bug in a loss).
var lossPanics bool

func init() {
	RegisterLoss("simsiam", func(cty.Value) (LossSpec, train.LossFunc, error) {
		return LossSpec{NeedsPredictor: true}, func(tp *autodiff.Tape, o *train.Outputs) (*autodiff.Var, error) {
			if lossPanics {
				panic("test loss bug")
			}
			a := tp.Mean(tp.CosineSimilarity(o.P1, tp.Detach(o.Z2)))
			b := tp.Mean(tp.CosineSimilarity(o.P2, tp.Detach(o.Z1)))
			return tp.Scale(tp.Add(a, b), -0.5), nil
		}, nil
	})
	RegisterLoss("byol", func(cty.Value) (LossSpec, train.LossFunc, error) {
		return LossSpec{NeedsPredictor: true, Target: TargetEMA, TauBase: 0.9}, func(tp *autodiff.Tape, o *train.Outputs) (*autodiff.Var, error) {
			a := tp.Mean(tp.CosineSimilarity(o.P1, tp.Detach(o.T2)))
			b := tp.Mean(tp.CosineSimilarity(o.P2, tp.Detach(o.T1)))
			return tp.AddScalar(tp.Scale(tp.Add(a, b), -2), 4), nil
		}, nil
	})
	RegisterAnalyzer("decompose", func(cty.Value) (Analyzer, error) { return normAnalyzer{}, nil })
}

type normAnalyzer struct{}

func (normAnalyzer) Analyze(in *StepTensors) (Analysis, error) {
	if in.GradZ1 == nil || in.P1 == nil {
		return Analysis{}, fmt.Errorf("missing gradient or prediction")
	}
	var z, g float64
	for _, v := range in.Z1.Data {
		z += float64(v) * float64(v)
	}
	for _, v := range in.GradZ1.Data {
		g += float64(v) * float64(v)
	}
	row := make([]float64, in.Z1.Shape[1])
	for i := range row {
		row[i] = float64(in.Z1.Data[i])
	}
	a := Analysis{Metrics: []Metric{{Key: "test/z_norm", Value: math.Sqrt(z)}, {Key: "test/grad_norm", Value: math.Sqrt(g)}},
		Arrays: []Array{{Key: "test/z_row0", Shape: []int{len(row)}, Data: row, Context: map[string]string{"tensor": "z"}}}}
	if collapseAt >= 0 && in.Step >= collapseAt {
		a.Collapsed, a.Reason = true, "test collapse"
	}
	return a, nil
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
	return Source{Files: []string{path}, Vars: vars}, Options{Dir: dir, Log: zerolog.Nop()}, nil
}

func runTiny(t *testing.T, ctx context.Context, vars map[string]string, mod func(*Options)) (*Result, error) {
	t.Helper()
	src, opts, _ := setup(t, vars)
	if mod != nil {
		mod(&opts)
	}
	var diag strings.Builder
	pl, err := ParsePipeline(src, nil, &diag)
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
			rest, err := Resume(context.Background(), part.Dir, Options{Log: zerolog.Nop(), Recorder: memRecorders(&lines)}, nil)
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
			if _, err := Resume(context.Background(), part.Dir, Options{Log: zerolog.Nop()}, nil); !IsConfigError(err) {
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
	for _, suf := range []string{weightsSuffix, extraSuffix} {
		if _, err := os.Stat(filepath.Join(res.Dir, st.Checkpoint+suf)); err != nil {
			t.Error(err)
		}
	}
}

func TestStopOnCollapse(t *testing.T) {
	collapseAt = 3
	defer func() { collapseAt = -1 }()
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
	rec, err := Evaluate(context.Background(), res.Dir, "knn", Options{Log: zerolog.Nop()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := res.Evals[len(res.Evals)-1]; rec.Top1 != want.Top1 || rec.Epoch != 1 {
		t.Errorf("eval of the checkpoint: %+v, the run measured %+v", rec, want)
	}
	// No linear block in the pipeline: the defaults on "train" and "test".
	lin, err := Evaluate(context.Background(), res.Dir, "linear", Options{Log: zerolog.Nop()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if lin.Protocol != "linear" || lin.N != 200 || lin.Top1 < 0.2 || lin.Options["epochs"] != "100" {
		t.Errorf("linear probe: %+v", lin)
	}
	if _, err := Evaluate(context.Background(), res.Dir, "svm", Options{}, nil); !IsConfigError(err) {
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
	_, err := ParsePipeline(Source{Files: []string{path}}, nil, &diag)
	if !IsConfigError(err) {
		t.Fatalf("err = %v, want a ConfigError", err)
	}
	if !strings.Contains(diag.String(), "not registered") || !strings.Contains(diag.String(), "p.hcl") {
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
	if _, err := Resume(context.Background(), part.Dir, Options{Log: zerolog.Nop()}, nil); !IsConfigError(err) || !strings.Contains(err.Error(), "still being trained") {
		t.Fatalf("resume of a live run: %v", err)
	}
	st.PID = 1<<22 + 12345 // above the default pid_max: no such process
	if err := writeState(part.Dir, st); err != nil {
		t.Fatal(err)
	}
	res, err := Resume(context.Background(), part.Dir, Options{Log: zerolog.Nop()}, nil)
	if err != nil || res.Status != StatusFinished || res.Steps != 2*stepsPerEpoch {
		t.Fatalf("resume after a crash: %v, %+v", err, res)
	}
}

func TestPanicFailsRun(t *testing.T) {
	lossPanics = true
	defer func() { lossPanics = false }()
	res, err := runTiny(t, context.Background(), nil, nil)
	if err == nil || !strings.Contains(err.Error(), "test loss bug") {
		t.Fatalf("err = %v, want the panic", err)
	}
	st, _ := readState(res.Dir)
	if res.Status != StatusFailed || st == nil || st.Status != StatusFailed {
		t.Errorf("status %s, run.json %+v", res.Status, st)
	}
}
