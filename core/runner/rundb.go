package runner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"sync"

	"github.com/rs/zerolog"

	"github.com/sslrun/sslrun/core/rundb"
)

// DBRecorders records runs in core/rundb's run database (the `database`
// a pipeline names) and, through a LogRecorder, in the log. It opens each
// database file once and keeps it open until Close; use Factory as
// Options.Recorder.
type DBRecorders struct {
	// Log receives the same log lines as LogRecorder writes.
	Log zerolog.Logger

	mu  sync.Mutex
	dbs map[string]*rundb.DB
}

// NewDBRecorders returns recorders writing to run databases and to log.
func NewDBRecorders(log zerolog.Logger) *DBRecorders {
	return &DBRecorders{Log: log, dbs: map[string]*rundb.DB{}}
}

// open returns the database at path, opening (and creating) it once.
func (d *DBRecorders) open(path string) (*rundb.DB, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if db, ok := d.dbs[path]; ok {
		return db, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("run database %s: %w", path, err)
	}
	db, err := rundb.Open(path)
	if err != nil {
		return nil, fmt.Errorf("run database %s: %w", path, err)
	}
	d.dbs[path] = db
	return db, nil
}

// Close closes every database opened.
func (d *DBRecorders) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	for p, db := range d.dbs {
		if err := db.Close(); err != nil {
			errs = append(errs, fmt.Errorf("run database %s: %w", p, err))
		}
		delete(d.dbs, p)
	}
	return errors.Join(errs...)
}

// Factory implements RecorderFactory: a new run is created in the
// database; a resumed one reattaches to its row (RunInfo.RecorderID), or is
// created if it was started without a database.
func (d *DBRecorders) Factory(ctx context.Context, info RunInfo) (Recorder, error) {
	db, err := d.open(info.Database)
	if err != nil {
		return nil, err
	}
	if info.Offline {
		return newOfflineRecorder(db, info, d.Log)
	}
	rec := &dbRecorder{ctx: context.WithoutCancel(ctx), log: &LogRecorder{Log: d.Log.With().Str("run", info.Name).Logger()}}
	if info.Resumed && info.RecorderID != "" {
		id, err := strconv.ParseInt(info.RecorderID, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("run database: run id %q: %w", info.RecorderID, err)
		}
		if rec.run, err = db.ResumeRun(rec.ctx, id); err != nil {
			return nil, err
		}
		// This attempt may run another build of sslrun or a re-pinned
		// external plugin than the first did.
		if err := rec.run.LogPlugins(rec.ctx, dbPlugins(info.Plugins)); err != nil {
			rec.run.Finish(rundb.StatusKilled, err) // still resumable
			return nil, err
		}
		return rec, nil
	}
	spec := rundb.RunSpec{
		Study: info.Study, Name: info.Name, Method: info.Method,
		Variant:  rundb.VariantOf(info.Method, info.LossConfig),
		Pipeline: info.Pipeline, Config: info.Config, Seed: info.Seed,
		CodeVersion: codeVersion(),
		Tags:        map[string]string{"run_dir": info.Dir, "run_id": info.ID},
		Params:      info.Params,
	}
	for k, v := range info.Tags {
		spec.Tags[k] = v
	}
	spec.Plugins = dbPlugins(info.Plugins)
	if len(spec.Plugins) == 0 {
		spec.Plugins = []rundb.Plugin{{Role: "loss", Name: info.Method}}
	}
	if rec.run, err = db.CreateRun(rec.ctx, spec); err != nil {
		return nil, err
	}
	for _, ds := range info.Datasets {
		if err := rec.run.LogDataset(rec.ctx, rundb.Dataset{Role: ds.Role, Name: ds.Name, Digest: ds.Digest, NumSamples: int64(ds.N)}); err != nil {
			rec.run.Finish(rundb.StatusFailed, err)
			return nil, err
		}
	}
	return rec, nil
}

// codeVersion is the VCS revision the binary was built from, if stamped.
func codeVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" {
			v += " " + s.Value
		}
		if s.Key == "vcs.modified" && s.Value == "true" {
			v += "+dirty"
		}
	}
	return v
}

// dbRecorder is one run's Recorder on the database.
type dbRecorder struct {
	// ctx outlives the run's own context: a run stopped by Ctrl-C must
	// still record its checkpoint and final status.
	ctx context.Context
	run *rundb.Run
	log *LogRecorder
}

// ID is the database run id.
func (r *dbRecorder) ID() string { return strconv.FormatInt(r.run.ID(), 10) }

// LogMetrics buffers metric rows (rundb commits them in batches) and logs the headline ones.
func (r *dbRecorder) LogMetrics(step int64, epoch float64, ms []Metric) error {
	r.log.LogMetrics(step, epoch, ms)
	rows := make([]rundb.Metric, len(ms))
	for i, m := range ms {
		rows[i] = rundb.Metric{Key: m.Key, Context: rundb.CtxMap(m.Context), Value: m.Value}
	}
	return r.run.Log(step, epoch, rows...)
}

// LogArray stores an analyzer array.
func (r *dbRecorder) LogArray(step int64, epoch float64, a Array) error {
	r.log.LogArray(step, epoch, a)
	return r.run.LogArray(r.ctx, a.Key, rundb.CtxMap(a.Context), step, epoch, a.Shape, a.Data)
}

// LogEval stores an evaluation with its protocol.
func (r *dbRecorder) LogEval(e EvalRecord) error {
	r.log.LogEval(e)
	return r.run.LogEvaluation(r.ctx, evaluationRow(e))
}

// evaluationRow is e as the database stores it: the protocol fields the
// evaluations table has columns for, the rest in its options.
func evaluationRow(e EvalRecord) rundb.Evaluation {
	opts := make(map[string]any, len(e.Options)+4)
	for k, v := range e.Options {
		opts[k] = v
	}
	opts["train"], opts["test"], opts["n"] = e.Train, e.Test, e.N
	return rundb.Evaluation{
		Protocol: e.Protocol, Dataset: e.Dataset, Split: e.Split, Feature: e.Feature, Selection: "last",
		K: e.K, Temperature: e.Temperature, Options: opts, Step: e.Step, Epoch: float64(e.Epoch), Top1: e.Top1, Top5: e.Top5,
	}
}

// LogArtifact records a checkpoint file.
func (r *dbRecorder) LogArtifact(kind, path string, step int64) error {
	r.log.LogArtifact(kind, path, step)
	return r.run.LogArtifact(r.ctx, kind, path, step)
}

// Finish records resumability and the final status, flushing the metrics.
func (r *dbRecorder) Finish(status Status, resumable bool, runErr error) error {
	err := r.run.SetResumable(r.ctx, resumable)
	return errors.Join(err, r.run.Finish(status, runErr))
}

// dbPlugins converts a run's plugin provenance to the database's rows.
func dbPlugins(ps []PluginRecord) []rundb.Plugin {
	out := make([]rundb.Plugin, 0, len(ps))
	for _, p := range ps {
		out = append(out, rundb.Plugin{Role: p.Role, Name: p.Name, Version: p.Version, SHA256: p.SHA256})
	}
	return out
}
