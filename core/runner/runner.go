package runner

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/vbauerster/mpb/v8"

	"github.com/sslrun/sslrun/core/data"
	"github.com/sslrun/sslrun/core/data/augment"
	"github.com/sslrun/sslrun/core/optim"
	"github.com/sslrun/sslrun/core/parallel"
	"github.com/sslrun/sslrun/core/pipeline"
	"github.com/sslrun/sslrun/core/plugin"
)

// Options configure how runs execute; the pipeline says what they train.
type Options struct {
	// Dir is the working directory relative paths of the pipeline
	// (database, checkpoint directory, dataset directories) are resolved
	// against; "" is the process's working directory.
	Dir string
	// Log receives structured progress lines. The zero Logger writes
	// nothing.
	Log zerolog.Logger
	// Progress, when set, shows epoch and step bars (a terminal); Log
	// should then write through it so that lines print above the bars.
	Progress *mpb.Progress
	// Recorder opens each run's Recorder; nil logs to Log (LogRecorder).
	Recorder RecorderFactory
	// StopOnCollapse stops a run with an error as soon as an analyzer
	// reports collapse.
	StopOnCollapse bool
	// StopAfterSteps, when positive, stops a run like an interrupt (with
	// a checkpoint, resumable) once it has taken that many optimizer steps
	// in total: time-boxed runs and resume tests.
	StopAfterSteps int64
	// OnStep, when set, is called after every optimizer step.
	OnStep func(StepEvent)

	// InProcess runs the bundled plugins (encoder, losses, analyzers) in
	// this process through the same plugin interfaces, instead of as
	// subprocesses re-executing this binary: for tests and benchmarks.
	// External plugins always run as subprocesses.
	InProcess bool
	// PluginDirs are searched for external plugins before the "plugins"
	// directory beside the pipeline.
	PluginDirs []string
	// CallTimeout bounds every plugin call (plugin.DefaultCallTimeout if
	// 0): a plugin that hangs fails the run.
	CallTimeout time.Duration
	// Executable is the binary re-executed for bundled plugins
	// (os.Executable() when empty).
	Executable string
}

// StepEvent describes a finished optimizer step.
type StepEvent struct {
	Step         int64
	Epoch, Batch int
	Loss         float32
	LR           float64
}

// Source says where a run's pipeline came from: resume parses it again.
type Source struct {
	Files    []string
	Vars     map[string]string
	VarFiles []string
}

// Result is the outcome of one run (or of one resumed part of it).
type Result struct {
	// ID and Dir identify the run directory (`sslrun resume ID`).
	ID, Dir string
	Study   string
	Name    string
	Status  Status
	// Resumable is true when `sslrun resume` can continue the run.
	Resumable bool
	// Epochs and Steps are where training stands at the end.
	Epochs int
	Steps  int64
	// Losses are the losses of the steps taken by this invocation, in
	// order (a resumed run's Losses start where it resumed).
	Losses []float32
	// Evals are the evaluations of this invocation.
	Evals []EvalRecord
	// Checkpoint is the path of the latest weights file, "" if none.
	Checkpoint string
	// Elapsed is this invocation's wall time.
	Elapsed time.Duration
}

// FinalLoss is the last loss of the invocation (NaN if no step was taken).
func (r *Result) FinalLoss() float32 {
	if len(r.Losses) == 0 {
		return float32(math.NaN())
	}
	return r.Losses[len(r.Losses)-1]
}

// RunPipeline trains a pipeline's runs in order (one run, or a study's
// variants). A failed run does not stop the study; an interrupt does. The
// error joins the failures.
func RunPipeline(ctx context.Context, pl *pipeline.Pipeline, src Source, opts Options) ([]*Result, error) {
	cache := datasetCache{}
	var results []*Result
	var errs []error
	for i, r := range pl.Runs {
		if len(pl.Runs) > 1 {
			opts.Log.Info().Str("study", r.Study).Str("run", r.Name).Int("index", i+1).Int("of", len(pl.Runs)).Msg("starting run")
		}
		res, err := train1(ctx, r, src, opts, cache, nil)
		if res != nil {
			results = append(results, res)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("run %s: %w", r.Name, err))
			if errors.Is(err, ErrInterrupted) || IsConfigError(err) || ctx.Err() != nil {
				break
			}
		}
	}
	return results, errors.Join(errs...)
}

// Train trains one resolved run in a new run directory.
func Train(ctx context.Context, r *pipeline.Run, src Source, opts Options) (*Result, error) {
	return train1(ctx, r, src, opts, datasetCache{}, nil)
}

// trainer is one run being trained.
type trainer struct {
	run  *pipeline.Run
	cfg  *pipeline.Config
	opts Options
	log  zerolog.Logger
	env  *pluginEnv

	dir string
	st  *runState
	rec Recorder

	eng      *engine
	obs      []observation
	loader   *data.Loader
	sched    optim.Schedule
	view     augment.Pipeline
	flat     bool
	perEpoch int
	total    int64
	evals    []evalEntry
	datasets []DatasetInfo
	result   *Result
}

type evalEntry struct {
	cfg         pipeline.Evaluation
	train, test *data.Dataset
	split       string
}

// train1 trains r; with resume set it continues the run directory that
// state describes.
func train1(ctx context.Context, r *pipeline.Run, src Source, opts Options, cache datasetCache, resume *resumeInfo) (res *Result, err error) {
	start := time.Now()
	t := &trainer{run: r, cfg: &r.Config, opts: opts, log: opts.Log.With().Str("run", r.Name).Logger()}
	if r.Config.Threads > 0 {
		prev := parallel.Threads()
		parallel.SetThreads(r.Config.Threads)
		defer parallel.SetThreads(prev)
	}
	files := src.Files
	if resume != nil {
		files = resume.st.Files
	}
	if t.env, err = newPluginEnv(opts, files); err != nil {
		return nil, err
	}
	defer func() {
		if cerr := t.eng.close(); cerr != nil {
			t.log.Warn().Err(cerr).Msg("closing the plugins")
		}
	}()
	if err := t.build(ctx, cache, true); err != nil {
		return nil, err
	}
	pos := position{}
	if resume == nil {
		if err := t.createDir(src); err != nil {
			return nil, err
		}
	} else {
		t.dir, t.st = resume.dir, resume.st
		if pos, err = t.restore(ctx); err != nil {
			return nil, err
		}
	}
	t.result = &Result{ID: t.st.ID, Dir: t.dir, Study: r.Study, Name: r.Name, Epochs: pos.Epoch, Steps: pos.Step}
	if err := t.openRecorder(ctx, resume != nil); err != nil {
		if resume == nil {
			os.RemoveAll(t.dir) // nothing was recorded in it yet
		}
		return nil, err
	}
	t.st.Status, t.st.Resumable, t.st.Error = StatusRunning, false, ""
	t.st.Host, _ = os.Hostname()
	t.st.PID = os.Getpid()
	if err := writeState(t.dir, t.st); err != nil {
		// The recorder has the run as RUNNING: end it there too.
		return nil, errors.Join(err, t.rec.Finish(StatusFailed, false, err))
	}
	ev := t.log.Info().Str("id", t.st.ID).Str("dir", t.dir).Int("epochs", t.cfg.Epochs).Int("steps_per_epoch", t.perEpoch).
		Int("batch_size", t.cfg.BatchSize).Str("loss", t.cfg.Loss.Name).Int64("seed", t.cfg.Seed).Bool("in_process", t.opts.InProcess)
	if resume != nil {
		ev.Int("from_epoch", pos.Epoch).Int("from_batch", pos.Batch).Int64("from_step", pos.Step).Msg("resuming run")
	} else {
		ev.Msg("run started")
	}

	status, runErr := t.safeLoop(ctx, pos)
	t.result.Elapsed = time.Since(start)
	t.result.Status = status
	t.result.Resumable = status == StatusKilled
	t.st.Status, t.st.Resumable = status, t.result.Resumable
	if runErr != nil {
		t.st.Error = runErr.Error()
	}
	if t.st.Checkpoint != "" {
		t.result.Checkpoint = filepath.Join(t.dir, t.st.Checkpoint+weightsSuffix)
	}
	if err := writeState(t.dir, t.st); err != nil {
		runErr = errors.Join(runErr, err)
	}
	if err := t.rec.Finish(status, t.result.Resumable, runErr); err != nil {
		runErr = errors.Join(runErr, fmt.Errorf("recorder: %w", err))
	}
	switch status {
	case StatusFinished:
		t.log.Info().Str("id", t.st.ID).Int64("steps", t.result.Steps).Float32("final_loss", t.result.FinalLoss()).
			Dur("elapsed", t.result.Elapsed.Round(time.Millisecond)).Str("checkpoint", t.result.Checkpoint).Msg("run finished")
	case StatusKilled:
		t.log.Warn().Str("id", t.st.ID).Int("epoch", t.st.Epoch).Int("batch", t.st.Batch).Int64("step", t.st.Step).
			Str("checkpoint", t.result.Checkpoint).Msg("run stopped; continue it with `sslrun resume " + t.dir + "`")
	default:
		t.log.Error().Str("id", t.st.ID).Err(runErr).Msg("run failed")
	}
	return t.result, runErr
}

// build prepares the data, the plugins (encoder built, loss and, with
// withAnalyzers, analyzers configured), the schedule and the evaluations.
// Errors in the run's configuration are ConfigErrors.
func (t *trainer) build(ctx context.Context, cache datasetCache, withAnalyzers bool) error {
	cfg := t.cfg
	ds, err := cache.load(t.resolveData(cfg.Train))
	if err != nil {
		return err
	}
	t.datasets = append(t.datasets, DatasetInfo{Role: "train", Name: ds.Name, Digest: ds.Digest, N: ds.Len()})
	views := cfg.Augment.Pipelines()
	if len(views) < 2 {
		return &ConfigError{Err: fmt.Errorf("augment: %d view(s); the runner trains on two views", len(views))}
	}
	t.view = views[0]
	t.loader, err = data.NewLoader(data.Config{Source: ds, Views: views[:2], BatchSize: cfg.BatchSize, Shuffle: true, DropLast: true, Seed: uint64(cfg.Seed)})
	if err != nil {
		return fmt.Errorf("train data: %w", err)
	}
	t.perEpoch = t.loader.BatchesPerEpoch()
	t.total = int64(t.perEpoch) * int64(cfg.Epochs)
	t.flat = cfg.Encoder.Backbone.Arch == "mlp"
	c, h, w := ds.Shape()
	c, h, w = t.view.OutShape(c, h, w)
	shape := []int{c, h, w}
	if t.flat {
		shape = []int{c * h * w}
	}
	if t.eng, err = startEngine(ctx, t.env, cfg, shape, withAnalyzers); err != nil {
		return err
	}
	if t.sched, err = cfg.Schedule.Build(cfg.Optimizer.LR, cfg.Epochs, t.perEpoch); err != nil {
		return &ConfigError{Err: err}
	}
	for _, e := range cfg.Evaluations {
		trd, ok1 := cfg.Datasets[e.Train]
		ted, ok2 := cfg.Datasets[e.Test]
		if !ok1 || !ok2 {
			return &ConfigError{Err: fmt.Errorf("evaluate %q: datasets %q / %q not declared", e.Kind, e.Train, e.Test)}
		}
		tr, err := cache.load(t.resolveData(trd))
		if err != nil {
			return err
		}
		te, err := cache.load(t.resolveData(ted))
		if err != nil {
			return err
		}
		for _, d := range []struct {
			role string
			ds   *data.Dataset
		}{{e.Train, tr}, {e.Test, te}} {
			if !slices.ContainsFunc(t.datasets, func(x DatasetInfo) bool { return x.Role == d.role }) {
				t.datasets = append(t.datasets, DatasetInfo{Role: d.role, Name: d.ds.Name, Digest: d.ds.Digest, N: d.ds.Len()})
			}
		}
		t.evals = append(t.evals, evalEntry{cfg: e, train: tr, test: te, split: ted.Split})
	}
	return nil
}

// resolve makes a pipeline path absolute against Options.Dir.
func (t *trainer) resolve(p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(t.opts.Dir, p)
}

// resolveData resolves a dataset's relative directory against
// Options.Dir, like every other path of the pipeline (an empty Dir keeps
// the loader's default search path).
func (t *trainer) resolveData(d pipeline.Dataset) pipeline.Dataset {
	if d.Dir != "" {
		d.Dir = t.resolve(d.Dir)
	}
	return d
}

// runsRoot is the directory run directories are created in: the
// checkpoint directory next to the database.
func runsRoot(dir string, cfg *pipeline.Config) string {
	db := cfg.Database
	if db == "" {
		db = "sslrun.db"
	}
	if !filepath.IsAbs(db) {
		db = filepath.Join(dir, db)
	}
	ck := cfg.Checkpoint.Dir
	if ck == "" {
		ck = "checkpoints"
	}
	if filepath.IsAbs(ck) {
		return ck
	}
	return filepath.Join(filepath.Dir(db), ck)
}

// createDir makes the run directory and its first run.json.
func (t *trainer) createDir(src Source) error {
	root, err := filepath.Abs(runsRoot(t.opts.Dir, t.cfg))
	if err != nil {
		return fmt.Errorf("run directory: %w", err)
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return fmt.Errorf("run directory: %w", err)
	}
	now := time.Now().UTC()
	base := t.run.Name
	if t.run.Study != "" {
		base = t.run.Study + "-" + base
	}
	base += "-" + now.Format("20060102-150405")
	id := base
	for i := 2; ; i++ {
		err := os.Mkdir(filepath.Join(root, id), 0o755)
		if err == nil {
			break
		}
		if !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("run directory: %w", err)
		}
		id = base + "-" + strconv.Itoa(i)
	}
	t.dir = filepath.Join(root, id)
	files, varFiles, err := snapshotSources(t.dir, src)
	if err != nil {
		return err
	}
	wd := t.opts.Dir
	if wd == "" {
		wd, _ = os.Getwd()
	}
	t.st = &runState{ID: id, Study: t.run.Study, Name: t.run.Name, Files: files, Vars: src.Vars, VarFiles: varFiles,
		Hash: t.run.Hash, Seed: t.cfg.Seed, WorkDir: wd, Created: now}
	return nil
}

// snapshotSources copies the pipeline files and var files into the run
// directory, so that a resumed run reads exactly what the run started
// from even if the originals were edited, and returns the copies' paths.
func snapshotSources(dir string, src Source) (files, varFiles []string, err error) {
	pdir := filepath.Join(dir, "pipeline")
	if len(src.Files)+len(src.VarFiles) == 0 {
		return nil, nil, nil
	}
	if err := os.MkdirAll(pdir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("run directory: %w", err)
	}
	cp := func(i int, p string) (string, error) {
		b, err := os.ReadFile(p)
		if err != nil {
			return "", fmt.Errorf("snapshot pipeline: %w", err)
		}
		// The index keeps same-named files from different directories apart;
		// the name keeps its extension (.json selects JSON syntax).
		dst := filepath.Join(pdir, fmt.Sprintf("%d-%s", i, filepath.Base(p)))
		return dst, writeAtomic(dst, b)
	}
	n := 0
	for _, p := range src.Files {
		d, err := cp(n, p)
		if err != nil {
			return nil, nil, err
		}
		// The lock file goes with its pipeline: a resumed run verifies its
		// external plugins against the checksums the run started with.
		if b, err := os.ReadFile(plugin.LockPath(p)); err == nil {
			if err := writeAtomic(plugin.LockPath(d), b); err != nil {
				return nil, nil, err
			}
		}
		files = append(files, d)
		n++
	}
	for _, p := range src.VarFiles {
		d, err := cp(n, p)
		if err != nil {
			return nil, nil, err
		}
		varFiles = append(varFiles, d)
		n++
	}
	return files, varFiles, nil
}

// openRecorder opens the run's Recorder.
func (t *trainer) openRecorder(ctx context.Context, resumed bool) error {
	f := t.opts.Recorder
	if f == nil {
		f = NewLogRecorder(t.log)
	}
	info := RunInfo{ID: t.st.ID, Dir: t.dir, Study: t.run.Study, Name: t.run.Name, Method: t.cfg.Loss.Name,
		Hash: t.run.Hash, Config: t.run.JSON, Params: t.run.Params, Seed: t.cfg.Seed, Tags: t.cfg.Tags,
		LossConfig: t.cfg.Loss.ConfigJSON, Files: t.st.Files, Pipeline: pipelineText(t.st.Files),
		Database: t.resolve(orString(t.cfg.Database, "sslrun.db")), Datasets: t.datasets, Resumed: resumed, RecorderID: t.st.RecorderID,
		Plugins: t.eng.provenance()}
	rec, err := f(ctx, info)
	if err != nil {
		return fmt.Errorf("recorder: %w", err)
	}
	t.rec = rec
	t.st.RecorderID = rec.ID()
	return nil
}

// pipelineText concatenates the pipeline files, each under a comment
// naming it, for the run database's record of what the user wrote.
func pipelineText(files []string) string {
	var b strings.Builder
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if len(files) > 1 {
			fmt.Fprintf(&b, "# file: %s\n", filepath.Base(f))
		}
		b.Write(src)
	}
	return b.String()
}

func orString(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// restore loads the latest checkpoint of a resumed run into the encoder;
// the position comes from run.json.
func (t *trainer) restore(ctx context.Context) (position, error) {
	if t.st.Checkpoint == "" {
		return position{}, fmt.Errorf("run %s has no checkpoint to resume from", t.st.ID)
	}
	p := position{Epoch: t.st.Epoch, Batch: t.st.Batch, Step: t.st.Step}
	if p.Batch >= t.perEpoch || p.Epoch > t.cfg.Epochs || p.Step != int64(p.Epoch*t.perEpoch+p.Batch) {
		return position{}, fmt.Errorf("checkpoint %s: position epoch %d batch %d step %d is outside the run (%d epochs of %d batches)",
			t.st.Checkpoint, p.Epoch, p.Batch, p.Step, t.cfg.Epochs, t.perEpoch)
	}
	if err := loadCheckpoint(ctx, t.eng.enc, t.dir, t.st.Checkpoint); err != nil {
		return position{}, err
	}
	return p, nil
}

// loop trains from pos to the end, or until the context is done, a step
// fails or an analyzer reports collapse (with StopOnCollapse).
func (t *trainer) loop(ctx context.Context, pos position) (Status, error) {
	cfg := t.cfg
	if pos == (position{}) {
		if err := t.evaluate(0, 0, true, false); err != nil {
			return StatusFailed, err
		}
	}
	b := newBars(t.opts.Progress, t.run.Name, cfg.Epochs, pos.Epoch)
	defer b.done()
	lastFinite, lastFiniteStep := float32(0), int64(-1)
	logEvery := max(1, t.perEpoch/5)
	trainTime := time.Duration(0)
	images := int64(0)
	for epoch := pos.Epoch; epoch < cfg.Epochs; epoch++ {
		startBatch := 0
		if epoch == pos.Epoch {
			startBatch = pos.Batch
		}
		it, err := t.loader.Epoch(epoch, startBatch)
		if err != nil {
			return StatusFailed, fmt.Errorf("epoch %d: %w", epoch+1, err)
		}
		b.startEpoch(epoch, t.perEpoch, startBatch)
		var sum float64
		var n int
		if startBatch > 0 {
			sum, n = t.st.EpochLossSum, t.st.EpochLossCount
		}
		epochStart := time.Now()
		for bi := startBatch; bi < t.perEpoch; bi++ {
			if stop := t.stopRequested(ctx, pos.Step); stop != "" {
				it.Close()
				b.abort()
				t.st.EpochLossSum, t.st.EpochLossCount = sum, n
				return t.interrupt(position{Epoch: epoch, Batch: bi, Step: pos.Step}, stop)
			}
			batch, ok := it.Next()
			if !ok {
				it.Close()
				return StatusFailed, fmt.Errorf("epoch %d: loader ended after %d of %d batches", epoch+1, bi, t.perEpoch)
			}
			stepStart := time.Now()
			x1, err1 := asInput(batch.Views[0], t.flat)
			x2, err2 := asInput(batch.Views[1], t.flat)
			if err := errors.Join(err1, err2); err != nil {
				it.Close()
				return StatusFailed, err
			}
			lr := t.sched.LR(int(pos.Step))
			tau := 0.0
			if t.eng.spec.Target == plugin.TargetEMA {
				final := t.eng.spec.TauFinal
				if final == 0 {
					final = 1
				}
				tau = optim.Tau(t.eng.spec.TauBase, final, int(pos.Step), int(t.total))
			}
			var loss float32
			st := plugin.Step{Step: pos.Step, Epoch: int64(epoch), TotalSteps: t.total, Train: true}
			// A step in flight is not cancelled by Ctrl-C: an RPC aborted
			// halfway would kill the plugin's client and fail the run, and
			// the encoder may already have taken the optimizer step the
			// host never heard of. The run stops before the next step
			// (stopRequested); the per-call deadline still bounds a hang.
			loss, t.obs, err = t.eng.step(context.WithoutCancel(ctx), st, x1, x2, lr, tau, t.obs)
			rows := batch.Views[0].Shape[0]
			it.Release(batch)
			if err != nil {
				it.Close()
				b.abort()
				return StatusFailed, &StepError{Step: pos.Step, Epoch: epoch, Batch: bi, LastFiniteLoss: lastFinite, LastFiniteStep: lastFiniteStep, LR: lr, Err: err}
			}
			lastFinite, lastFiniteStep = loss, pos.Step
			dt := time.Since(stepStart)
			trainTime += dt
			images += int64(rows)
			sum += float64(loss)
			n++
			t.result.Losses = append(t.result.Losses, loss)
			epochF := float64(epoch) + float64(bi+1)/float64(t.perEpoch)
			ms := []Metric{{Key: "train/loss", Value: float64(loss)}, {Key: "train/lr", Value: lr}}
			if t.eng.spec.Target == plugin.TargetEMA {
				ms = append(ms, Metric{Key: "train/tau", Value: tau})
			}
			if err := t.rec.LogMetrics(pos.Step, epochF, ms); err != nil {
				it.Close()
				return StatusFailed, fmt.Errorf("recorder: %w", err)
			}
			if err := t.analyze(pos.Step, epochF); err != nil {
				it.Close()
				b.abort()
				return StatusFailed, err
			}
			if t.opts.OnStep != nil {
				t.opts.OnStep(StepEvent{Step: pos.Step, Epoch: epoch, Batch: bi, Loss: loss, LR: lr})
			}
			pos.Step++
			ips := float64(images) / max(trainTime.Seconds(), 1e-9)
			b.step(loss, ips, dt)
			if t.opts.Progress == nil && (bi+1)%logEvery == 0 && bi+1 < t.perEpoch {
				t.log.Info().Int("epoch", epoch+1).Int("batch", bi+1).Int("of", t.perEpoch).Int64("step", pos.Step).
					Float32("loss", loss).Float64("lr", lr).Float64("img_per_s", math.Round(ips)).Msg("training")
			}
		}
		it.Close()
		pos.Epoch, pos.Batch = epoch+1, 0
		t.result.Epochs, t.result.Steps = pos.Epoch, pos.Step
		mean := sum / float64(max(n, 1))
		t.log.Info().Int("epoch", epoch+1).Int("of", cfg.Epochs).Int64("step", pos.Step).Float64("loss", mean).
			Float64("lr", t.sched.LR(int(pos.Step)-1)).Float64("img_per_s", math.Round(float64(images)/max(trainTime.Seconds(), 1e-9))).
			Dur("epoch_time", time.Since(epochStart).Round(time.Millisecond)).Msg("epoch done")
		if err := t.rec.LogMetrics(pos.Step-1, float64(pos.Epoch), []Metric{{Key: "train/epoch_loss", Value: mean}}); err != nil {
			return StatusFailed, fmt.Errorf("recorder: %w", err)
		}
		b.endEpoch()
		last := pos.Epoch == cfg.Epochs
		if err := t.evaluate(pos.Epoch, pos.Step, false, last); err != nil {
			return StatusFailed, err
		}
		every := cfg.Checkpoint.EveryEpochs
		if last || (every > 0 && pos.Epoch%every == 0) {
			if err := t.checkpoint(pos, !last); err != nil {
				return StatusFailed, err
			}
		}
	}
	return StatusFinished, nil
}

// safeLoop is loop with a panic (a bug in a kernel, a loss or an
// analyzer) turned into a failed run, so that run.json and the recorder
// still get a final status instead of staying RUNNING.
func (t *trainer) safeLoop(ctx context.Context, pos position) (status Status, err error) {
	defer func() {
		if r := recover(); r != nil {
			status, err = StatusFailed, fmt.Errorf("panic during training: %v\n%s", r, debug.Stack())
		}
	}()
	return t.loop(ctx, pos)
}

// stopRequested says why the run must stop before the next step, or "".
func (t *trainer) stopRequested(ctx context.Context, step int64) string {
	if err := ctx.Err(); err != nil {
		if c := context.Cause(ctx); c != nil && c != err {
			return c.Error()
		}
		return "interrupted"
	}
	if t.opts.StopAfterSteps > 0 && step >= t.opts.StopAfterSteps {
		return fmt.Sprintf("stop after %d steps", t.opts.StopAfterSteps)
	}
	return ""
}

// interrupt writes a checkpoint at pos and marks the run resumable.
func (t *trainer) interrupt(pos position, why string) (Status, error) {
	t.result.Epochs, t.result.Steps = pos.Epoch, pos.Step
	if t.st.Checkpoint == "" || t.st.Epoch != pos.Epoch || t.st.Batch != pos.Batch || t.st.Step != pos.Step {
		if err := t.checkpoint(pos, false); err != nil {
			return StatusFailed, fmt.Errorf("%s, and the checkpoint failed: %w", why, err)
		}
	}
	return StatusKilled, fmt.Errorf("%s at epoch %d, batch %d (step %d): %w", why, pos.Epoch+1, pos.Batch, pos.Step, ErrInterrupted)
}

// checkpoint saves a checkpoint at pos and commits it in run.json;
// periodic ones are pruned to checkpoint.keep.
func (t *trainer) checkpoint(pos position, periodic bool) error {
	prev := t.st.Checkpoint
	name, err := saveCheckpoint(context.Background(), t.eng.enc, t.dir, pos)
	if err != nil {
		return err
	}
	t.st.Checkpoint, t.st.Epoch, t.st.Batch, t.st.Step = name, pos.Epoch, pos.Batch, pos.Step
	if pos.Batch == 0 {
		t.st.EpochLossSum, t.st.EpochLossCount = 0, 0
	}
	var drop []string
	if periodic {
		t.st.Periodic = append(t.st.Periodic, name)
		if k := t.cfg.Checkpoint.Keep; k > 0 && len(t.st.Periodic) > k {
			drop = append(drop, t.st.Periodic[:len(t.st.Periodic)-k]...)
			t.st.Periodic = append([]string(nil), t.st.Periodic[len(t.st.Periodic)-k:]...)
		}
	}
	// A mid-epoch checkpoint superseded by a later one is dropped: only
	// the latest position matters for resuming.
	if prev != "" && prev != name && !contains(t.st.Periodic, prev) && pos.Batch == 0 && isMidEpoch(prev) {
		drop = append(drop, prev)
	}
	if err := writeState(t.dir, t.st); err != nil {
		return err
	}
	for _, d := range drop {
		if d != name {
			if err := removeCheckpoint(t.dir, d); err != nil {
				t.log.Warn().Err(err).Str("checkpoint", d).Msg("could not remove old checkpoint")
			}
		}
	}
	path := filepath.Join(t.dir, name+weightsSuffix)
	t.log.Info().Str("checkpoint", path).Int("epoch", pos.Epoch).Int("batch", pos.Batch).Int64("step", pos.Step).Msg("checkpoint saved")
	return t.rec.LogArtifact("checkpoint", path, pos.Step)
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// isMidEpoch reports whether a checkpoint name is a mid-epoch one
// ("ckpt-E-B").
func isMidEpoch(name string) bool {
	var e, b int
	n, _ := fmt.Sscanf(name, "ckpt-%d-%d", &e, &b)
	return n == 2
}

// analyze records what the analyzers due at step observed (the engine
// called them during the step) and acts on a collapse verdict.
func (t *trainer) analyze(step int64, epochF float64) error {
	for _, o := range t.obs {
		ms, collapsed, reason := analyzerMetrics(o.name, o.metrics)
		if err := t.rec.LogMetrics(step, epochF, ms); err != nil {
			return fmt.Errorf("recorder: %w", err)
		}
		for _, arr := range o.arrays {
			if err := t.rec.LogArray(step, epochF, arr); err != nil {
				return fmt.Errorf("recorder: %w", err)
			}
		}
		if collapsed {
			t.log.Warn().Str("analyzer", o.name).Int64("step", step).Str("reason", reason).Msg("collapse detected")
			if t.opts.StopOnCollapse {
				return &CollapseError{Step: step, Analyzer: o.name, Reason: reason}
			}
		}
	}
	t.obs = t.obs[:0]
	return nil
}

// CollapseError stops a run whose embeddings collapsed (StopOnCollapse).
type CollapseError struct {
	Step     int64
	Analyzer string
	Reason   string
}

// Error names the step, the analyzer and its reason.
func (e *CollapseError) Error() string {
	return fmt.Sprintf("collapse at step %d (analyzer %s): %s", e.Step, e.Analyzer, e.Reason)
}
