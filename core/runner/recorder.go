package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/rs/zerolog"

	"github.com/sslrun/sslrun/core/rundb"
)

// Status is a run's state; the runner uses the run database's states.
type Status = rundb.Status

// Run states. KILLED is a run stopped on request (Ctrl-C) with a checkpoint:
// `sslrun resume` continues it. CRASHED is set by the database for a run
// whose process died without finishing.
const (
	StatusRunning  = rundb.StatusRunning
	StatusFinished = rundb.StatusFinished
	StatusFailed   = rundb.StatusFailed
	StatusKilled   = rundb.StatusKilled
	StatusCrashed  = rundb.StatusCrashed
)

// RunInfo describes a run to a Recorder when it starts or resumes.
type RunInfo struct {
	// ID names the run directory (runs are resumed by it); Dir is that
	// directory.
	ID, Dir string
	// Study and Name are the pipeline's study (empty for a single run) and
	// run name.
	Study, Name string
	// Method is the loss plugin's name.
	Method string
	// Hash and Config are the resolved configuration's sha256 and its
	// canonical JSON; Params its flattened form.
	Hash   string
	Config json.RawMessage
	Params map[string]any
	Seed   int64
	Tags   map[string]string
	// Database is the run database path the pipeline names (resolved).
	Database string
	// LossConfig is the loss plugin's configuration as JSON.
	LossConfig json.RawMessage
	// Files are the pipeline files (the run directory's snapshot) and
	// Pipeline their text, for the record.
	Files    []string
	Pipeline string
	// Datasets are the datasets the run reads, with their content digests.
	Datasets []DatasetInfo
	// Plugins are the plugins the run trains with: the loss, the encoder
	// and the analyzers.
	Plugins []PluginRecord
	// Resumed is true when an interrupted run continues; RecorderID is then
	// the ID its Recorder returned the first time (a rundb run id).
	Resumed    bool
	RecorderID string
	// Offline asks for a Recorder that adds evaluations to the existing
	// run RecorderID without reopening it or changing its status (`sslrun
	// eval`); it records only LogEval, and Finish does nothing.
	Offline bool
}

// PluginRecord identifies a plugin a run used, for the record.
type PluginRecord struct {
	// Role is "encoder", "loss" or "analyzer".
	Role string
	// Name is the plugin's name in the pipeline; Version what its Info
	// said.
	Name, Version string
	// SHA256 is the hex sha256 of the executable the plugin's code ran
	// from: the sslrun binary for a bundled plugin (re-executed, or this
	// process in process), the lock file's checksum, verified before exec,
	// for an external one. Empty when the binary could not be read.
	SHA256 string
}

// DatasetInfo identifies a dataset a run used.
type DatasetInfo struct {
	// Role is the pipeline label ("train", "test", ...).
	Role string
	// Name is the loaded dataset ("mnist/train[:1024]"), Digest
	// core/data's content digest, N the number of samples used.
	Name, Digest string
	N            int
}

// EvalRecord is one evaluation result with its protocol.
type EvalRecord struct {
	// Protocol is "knn" or "linear".
	Protocol string `json:"protocol"`
	// Train and Test name the pipeline datasets used; Dataset is the test
	// set's source name ("mnist/test").
	Train   string `json:"train"`
	Test    string `json:"test"`
	Dataset string `json:"dataset"`
	// Split is the test dataset's split ("test", "train"; "" for a folder).
	Split string `json:"split"`
	// Feature is "backbone" or "z".
	Feature string `json:"feature"`
	// Epoch is the number of completed training epochs (0: random init),
	// Step the optimizer steps taken.
	Epoch int   `json:"epoch"`
	Step  int64 `json:"step"`
	// Top1, Top5 are accuracies in [0, 1] over N test samples.
	Top1 float64 `json:"top1"`
	Top5 float64 `json:"top5"`
	N    int     `json:"n"`
	// K and Temperature are the kNN settings (0 for linear).
	K           int     `json:"k,omitempty"`
	Temperature float64 `json:"temperature,omitempty"`
	// Protocol fields from core/eval (method, normalization, splits...).
	Options map[string]string `json:"options,omitempty"`
}

// Recorder receives what a run produces. core/rundb's run will satisfy it
// through a small adapter; until then LogRecorder writes everything to
// zerolog. Calls come from the training goroutine only.
type Recorder interface {
	// ID is the recorder's own identifier of the run (a database run id),
	// stored in the run directory so that a resumed run reattaches to it;
	// "" when there is none.
	ID() string
	// LogMetrics records scalar metrics at an optimizer step.
	LogMetrics(step int64, epoch float64, ms []Metric) error
	// LogArray records an analyzer array at an optimizer step.
	LogArray(step int64, epoch float64, a Array) error
	// LogEval records an evaluation.
	LogEval(e EvalRecord) error
	// LogArtifact records a file the run wrote (a checkpoint).
	LogArtifact(kind, path string, step int64) error
	// Finish ends the run with status; runErr is the failure, if any.
	// resumable marks a run `sslrun resume` can continue.
	Finish(status Status, resumable bool, runErr error) error
}

// RecorderFactory opens the Recorder of a run.
type RecorderFactory func(ctx context.Context, info RunInfo) (Recorder, error)

// LogRecorder is a Recorder that writes metrics and evaluations as
// structured log lines; the default until the run database is wired in.
type LogRecorder struct {
	Log zerolog.Logger
	// Verbose logs every analyzer metric (otherwise only a few headline
	// keys: loss, lr, decompose m_o / std_sqrt_d).
	Verbose bool
}

// NewLogRecorder returns a RecorderFactory writing to log.
func NewLogRecorder(log zerolog.Logger) RecorderFactory {
	return func(context.Context, RunInfo) (Recorder, error) { return &LogRecorder{Log: log}, nil }
}

// ID implements Recorder.
func (r *LogRecorder) ID() string { return "" }

// headline keys are the analyzer metrics LogRecorder logs at info level,
// on one line per step; the others go to debug.
var headline = map[string]bool{"decompose/m_o": true, "decompose/std_sqrt_d": true, "decompose/extra_eta": true, "decompose/grad_decenter_share": true}

// LogMetrics implements Recorder. Per-step loss, lr and tau are not logged
// here (the runner logs progress itself); analyzer metrics are, the
// headline ones on one info line per step ("z.m_o=..."), the rest at debug
// (or all at info with Verbose).
func (r *LogRecorder) LogMetrics(step int64, epoch float64, ms []Metric) error {
	var head *zerolog.Event
	for _, m := range ms {
		if m.Key == "train/loss" || m.Key == "train/lr" || m.Key == "train/tau" || m.Key == "train/epoch_loss" {
			continue
		}
		name := m.Key
		if t := m.Context["tensor"]; t != "" {
			name = t + "." + strings.TrimPrefix(name, "decompose/")
		}
		if r.Verbose || headline[m.Key] {
			if head == nil {
				head = r.Log.Info().Int64("step", step).Float64("epoch", epoch)
			}
			head = head.Float64(name, sig(m.Value, 4))
			continue
		}
		r.Log.Debug().Int64("step", step).Float64("epoch", epoch).Float64(name, m.Value).Msg("metric")
	}
	if head != nil {
		head.Msg("analysis")
	}
	return nil
}

// sig rounds v to n significant digits, for readable log lines (the
// database keeps full precision).
func sig(v float64, n int) float64 {
	if v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return v
	}
	p := math.Pow(10, float64(n)-math.Ceil(math.Log10(math.Abs(v))))
	return math.Round(v*p) / p
}

// LogEval implements Recorder.
func (r *LogRecorder) LogEval(e EvalRecord) error {
	ev := r.Log.Debug().Str("protocol", e.Protocol).Str("dataset", e.Dataset).Str("feature", e.Feature).
		Int("epoch", e.Epoch).Int64("step", e.Step).Float64("top1", e.Top1).Float64("top5", e.Top5).Int("n", e.N)
	if e.K > 0 {
		ev = ev.Int("k", e.K).Float64("T", e.Temperature)
	}
	ev.Msg("evaluation")
	return nil
}

// LogArray implements Recorder: arrays are only noted at debug level.
func (r *LogRecorder) LogArray(step int64, epoch float64, a Array) error {
	r.Log.Debug().Int64("step", step).Float64("epoch", epoch).Str("array", a.Key).Ints("shape", a.Shape).Msg("array")
	return nil
}

// LogArtifact implements Recorder.
func (r *LogRecorder) LogArtifact(kind, path string, step int64) error {
	r.Log.Debug().Str("kind", kind).Str("path", path).Int64("step", step).Msg("artifact")
	return nil
}

// Finish implements Recorder.
func (r *LogRecorder) Finish(Status, bool, error) error { return nil }

// ConfigError is an error in the pipeline or the command's arguments
// (exit code 2), as opposed to a run that failed (exit code 1).
type ConfigError struct{ Err error }

// Error returns the underlying error's message.
func (e *ConfigError) Error() string { return e.Err.Error() }

// Unwrap returns the underlying error.
func (e *ConfigError) Unwrap() error { return e.Err }

// IsConfigError reports whether err is (or wraps) a *ConfigError.
func IsConfigError(err error) bool {
	var ce *ConfigError
	return errors.As(err, &ce)
}

// ErrInterrupted is returned (wrapped) by a run stopped by its context: a
// checkpoint was written and the run is resumable.
var ErrInterrupted = errors.New("run interrupted")

// StepError is a training step that failed: a non-finite loss (Err wraps
// *train.NonFiniteLossError) or an error of the loss or backward pass.
type StepError struct {
	// Step is the 0-based optimizer step, Epoch and Batch its position.
	Step         int64
	Epoch, Batch int
	// LastFiniteLoss is the last finite loss and LastFiniteStep its step
	// (-1 when no step succeeded); LR is the learning rate of the step.
	LastFiniteLoss float32
	LastFiniteStep int64
	LR             float64
	Err            error
}

// Error names the step, its position and lr, the cause and the last
// finite loss.
func (e *StepError) Error() string {
	last := "no earlier step"
	if e.LastFiniteStep >= 0 {
		last = fmt.Sprintf("last finite loss %.6g at step %d", e.LastFiniteLoss, e.LastFiniteStep)
	}
	return fmt.Sprintf("step %d (epoch %d, batch %d, lr %.4g): %v; %s", e.Step, e.Epoch+1, e.Batch, e.LR, e.Err, last)
}

// Unwrap returns the cause (a *train.NonFiniteLossError for NaN/Inf).
func (e *StepError) Unwrap() error { return e.Err }

// Metric is one recorded scalar. Analyzer metrics are keyed
// "<analyzer>/<name>" ("decompose/m_o"); Context says what was measured
// ({"tensor": "z", "scope": "batch", "batch": "256"}) and must be treated
// as read-only.
type Metric struct {
	Key     string
	Value   float64
	Context map[string]string
}

// Array is an analyzer's array result (a spectrum), row-major in Shape.
type Array struct {
	Key     string
	Shape   []int
	Data    []float64
	Context map[string]string
}
