package runner

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/hashicorp/hcl/v2"

	"github.com/sslrun/sslrun/core/pipeline"
)

// resumeInfo is the run directory a resumed run continues.
type resumeInfo struct {
	dir string
	st  *runState
}

// ParsePipeline parses and validates the pipeline files of src; every
// plugin block is validated by its plugin's own schema (schemas; nil
// starts the plugins as a run with default Options would: see
// NewSchemas). Diagnostics (errors and warnings, file:line:col with a
// snippet, all in one pass) are written to w; any error gives a
// *ConfigError.
func ParsePipeline(src Source, schemas pipeline.SchemaProvider, w io.Writer) (*pipeline.Pipeline, error) {
	if schemas == nil {
		s, err := NewSchemas(Options{}, src.Files)
		if err != nil {
			return nil, err
		}
		defer s.Close()
		schemas = s
	}
	p := pipeline.NewParser(pipeline.Options{Vars: src.Vars, VarFiles: src.VarFiles, Schemas: schemas})
	pl, diags := p.ParseFiles(src.Files...)
	if len(diags) > 0 && w != nil {
		if err := p.WriteDiagnostics(w, diags, 100); err != nil {
			return nil, fmt.Errorf("write diagnostics: %w", err)
		}
		writeSummary(w, diags)
	}
	if diags.HasErrors() {
		return nil, &ConfigError{Err: fmt.Errorf("invalid pipeline %s: %d error(s)", strings.Join(src.Files, ", "), len(diags.Errs()))}
	}
	return pl, nil
}

// Parse is ParsePipeline with the plugins started as opts says
// (Options.InProcess, PluginDirs, CallTimeout, Executable).
func Parse(src Source, opts Options, w io.Writer) (*pipeline.Pipeline, error) {
	s, err := NewSchemas(opts, src.Files)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	return ParsePipeline(src, s, w)
}

// writeSummary lists the diagnostics as file:line:col lines (the form
// editors and CI annotate), after the detailed snippets.
func writeSummary(w io.Writer, diags hcl.Diagnostics) {
	fmt.Fprintf(w, "%d error(s), %d warning(s):\n", len(diags.Errs()), len(diags)-len(diags.Errs()))
	for _, d := range diags {
		sev := "error"
		if d.Severity == hcl.DiagWarning {
			sev = "warning"
		}
		loc := "<pipeline>"
		if d.Subject != nil {
			loc = fmt.Sprintf("%s:%d:%d", d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column)
		}
		fmt.Fprintf(w, "  %s: %s: %s\n", loc, sev, d.Summary)
	}
}

// FindRun resolves a run reference to its directory: a path to a run
// directory, or a run ID looked up under dir (the working directory), in
// dir/checkpoints/ID (the default location) or any dir/*/ID.
func FindRun(ref, dir string) (string, error) {
	cands := []string{ref}
	if !filepath.IsAbs(ref) {
		cands = append(cands, filepath.Join(dir, ref), filepath.Join(dir, "checkpoints", ref))
		if m, _ := filepath.Glob(filepath.Join(dir, "*", ref)); len(m) > 0 {
			cands = append(cands, m...)
		}
	}
	for _, c := range cands {
		if _, err := os.Stat(filepath.Join(c, stateFile)); err == nil {
			abs, err := filepath.Abs(c)
			if err != nil {
				return "", err
			}
			return abs, nil
		}
	}
	return "", &ConfigError{Err: fmt.Errorf("no run %q: not a run directory (with %s), nor a run ID under %s", ref, stateFile, orString(dir, "."))}
}

// openRun reads a run directory and re-parses the pipeline it was started
// from (its snapshot in the run directory), checking the hash.
func openRun(ref string, opts *Options, diag io.Writer) (string, *runState, *pipeline.Run, error) {
	dir, err := FindRun(ref, opts.Dir)
	if err != nil {
		return "", nil, nil, err
	}
	st, err := readState(dir)
	if err != nil {
		return "", nil, nil, err
	}
	if opts.Dir == "" {
		opts.Dir = st.WorkDir
	}
	if len(st.Files) == 0 {
		return "", nil, nil, fmt.Errorf("run %s: run.json names no pipeline files", st.ID)
	}
	pl, err := Parse(Source{Files: st.Files, Vars: st.Vars, VarFiles: st.VarFiles}, *opts, diag)
	if err != nil {
		return "", nil, nil, fmt.Errorf("run %s: %w", st.ID, err)
	}
	for _, r := range pl.Runs {
		if r.Name == st.Name && r.Study == st.Study {
			if r.Hash != st.Hash {
				return "", nil, nil, fmt.Errorf("run %s: its pipeline now resolves to a different configuration (hash %.12s, run has %.12s)", st.ID, r.Hash, st.Hash)
			}
			return dir, st, r, nil
		}
	}
	return "", nil, nil, fmt.Errorf("run %s: its pipeline has no run named %q any more", st.ID, st.Name)
}

// Resume continues a stopped run (ref: run directory or ID) from its
// latest checkpoint. The resumed run's results are bit-identical to an
// uninterrupted run's.
func Resume(ctx context.Context, ref string, opts Options, diag io.Writer) (*Result, error) {
	dir, st, r, err := openRun(ref, &opts, diag)
	if err != nil {
		return nil, err
	}
	switch st.Status {
	case StatusFinished:
		return nil, &ConfigError{Err: fmt.Errorf("run %s already finished", st.ID)}
	case StatusFailed:
		if !st.Resumable {
			return nil, &ConfigError{Err: fmt.Errorf("run %s failed (%s); it is not resumable", st.ID, st.Error)}
		}
	case StatusRunning:
		if host, _ := os.Hostname(); st.Host == host && st.PID != os.Getpid() && processAlive(st.PID) {
			return nil, &ConfigError{Err: fmt.Errorf("run %s is still being trained by process %d", st.ID, st.PID)}
		}
		// The process that trained it died: its last checkpoint is
		// consistent (run.json names only complete ones), so continue.
		opts.Log.Warn().Str("id", st.ID).Msg("run.json says RUNNING: resuming from its last checkpoint (was the process killed?)")
	}
	if st.Checkpoint == "" {
		return nil, &ConfigError{Err: fmt.Errorf("run %s has no checkpoint yet; start it again with `sslrun run`", st.ID)}
	}
	return train1(ctx, r, Source{}, opts, datasetCache{}, &resumeInfo{dir: dir, st: st})
}

// processAlive reports whether a process with that pid exists (signal 0
// checks without signalling).
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	return p.Signal(syscall.Signal(0)) == nil
}

// Evaluate runs an evaluation protocol ("knn" or "linear") on a run's
// latest checkpoint: the pipeline's `evaluate` block of that kind, or the
// defaults on its "train" and "test" datasets.
//
// The result is recorded with the run through Options.Recorder (offline:
// the run's status and metrics are left alone), its options marked
// "source": "sslrun eval".
func Evaluate(ctx context.Context, ref, protocol string, opts Options, diag io.Writer) (EvalRecord, error) {
	if protocol != "knn" && protocol != "linear" {
		return EvalRecord{}, &ConfigError{Err: fmt.Errorf("protocol %q: want knn or linear", protocol)}
	}
	dir, st, r, err := openRun(ref, &opts, diag)
	if err != nil {
		return EvalRecord{}, err
	}
	if st.Checkpoint == "" {
		return EvalRecord{}, &ConfigError{Err: fmt.Errorf("run %s has no checkpoint to evaluate", st.ID)}
	}
	cfg := r.Config
	ev := defaultEvaluation(protocol)
	for _, e := range cfg.Evaluations {
		if e.Kind == protocol {
			ev = e
		}
	}
	if _, ok := cfg.Datasets[ev.Test]; !ok {
		return EvalRecord{}, &ConfigError{Err: fmt.Errorf("run %s: no %q dataset to evaluate on; add an `evaluate %q` block", st.ID, ev.Test, protocol)}
	}
	cfg.Evaluations = []pipeline.Evaluation{ev}
	rr := *r
	rr.Config = cfg
	t := &trainer{run: &rr, cfg: &rr.Config, opts: opts, log: opts.Log, dir: dir, st: st}
	if t.env, err = newPluginEnv(opts, st.Files); err != nil {
		return EvalRecord{}, err
	}
	defer t.eng.close()
	if err := t.build(ctx, datasetCache{}, false); err != nil {
		return EvalRecord{}, err
	}
	if err := loadCheckpoint(ctx, t.eng.enc, dir, st.Checkpoint); err != nil {
		return EvalRecord{}, err
	}
	if err := ctx.Err(); err != nil {
		return EvalRecord{}, err
	}
	rec, err := runEval(t.eng, t.view, t.flat, t.evals[0], cfg.Seed, nil)
	if err != nil {
		return EvalRecord{}, fmt.Errorf("evaluate %s: %w", protocol, err)
	}
	rec.Epoch, rec.Step = st.Epoch, st.Step
	if err := t.recordOffline(ctx, rec); err != nil {
		return rec, err
	}
	return rec, nil
}

// recordOffline adds an offline evaluation to the run's record.
func (t *trainer) recordOffline(ctx context.Context, e EvalRecord) error {
	f := t.opts.Recorder
	if f == nil {
		f = NewLogRecorder(t.log)
	}
	rec, err := f(ctx, RunInfo{ID: t.st.ID, Dir: t.dir, Study: t.run.Study, Name: t.run.Name, Method: t.cfg.Loss.Name,
		Database: t.resolve(orString(t.cfg.Database, "sslrun.db")), RecorderID: t.st.RecorderID, Offline: true})
	if err != nil {
		return fmt.Errorf("record the evaluation: %w", err)
	}
	if err := rec.LogEval(e); err != nil {
		return fmt.Errorf("record the evaluation: %w", err)
	}
	return rec.Finish(StatusFinished, false, nil)
}
