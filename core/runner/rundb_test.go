package runner

import (
	"context"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/rs/zerolog"

	"github.com/sslrun/sslrun/core/plugin"
	"github.com/sslrun/sslrun/core/plugin/nnencoder"
	"github.com/sslrun/sslrun/core/rundb"
)

// TestRunDatabase trains, stops and resumes a run recording into the run
// database, then reads it back.
func TestRunDatabase(t *testing.T) {
	dbs := NewDBRecorders(zerolog.Nop())
	part, err := runTiny(t, context.Background(), nil, func(o *Options) {
		o.Recorder = dbs.Factory
		o.StopAfterSteps = stepsPerEpoch + 2
	})
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("stopped run: %v", err)
	}
	st, err := readState(part.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.RecorderID == "" {
		t.Fatal("run.json has no database run id")
	}
	if _, err := Resume(context.Background(), part.Dir, Options{Log: zerolog.Nop(), Recorder: dbs.Factory, InProcess: true}, nil); err != nil {
		t.Fatalf("resume: %v", err)
	}
	if err := dbs.Close(); err != nil {
		t.Fatal(err)
	}
	// The database is next to the pipeline (database = "sslrun.db").
	path := filepath.Join(filepath.Dir(filepath.Dir(part.Dir)), "sslrun.db")
	db, err := rundb.OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	d, err := db.ShowRun(context.Background(), st.RecorderID)
	if err != nil {
		t.Fatal(err)
	}
	if d.Status != rundb.StatusFinished || d.Attempt != 2 || d.Method != "simsiam" || d.Seed != 3 {
		t.Errorf("run row: %+v", d.RunRow)
	}
	if len(d.Evaluations) != 3 || d.Evaluations[0].Protocol != "knn" || d.Evaluations[0].Epoch != 0 || d.Evaluations[0].K != 10 {
		t.Errorf("evaluations: %+v", d.Evaluations)
	}
	var loss *rundb.Summary
	for i, s := range d.Summaries {
		if s.Key == "train/loss" {
			loss = &d.Summaries[i]
		}
	}
	if loss == nil || loss.Count != 2*stepsPerEpoch || loss.LastStep != 2*stepsPerEpoch-1 {
		t.Errorf("train/loss summary: %+v", loss)
	}
	// The analyzer runs every 3 steps: steps 0, 3, ..., 15.
	arrs, err := db.Arrays(context.Background(), d.ID, "decompose/z_row0")
	if err != nil || len(arrs) != 6 {
		t.Errorf("arrays: %d, %v; want 6", len(arrs), err)
	}
	// Every plugin with its version and the sha256 of the binary it ran
	// from: this test binary, which serves the bundled plugins.
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	sum, err := plugin.HashFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	// Each attempt records the plugins it ran (a resume may run another
	// build): the same ones here, once per attempt.
	var want []rundb.Plugin
	for attempt := 1; attempt <= 2; attempt++ {
		want = append(want,
			rundb.Plugin{Role: "analyzer", Name: "decompose", Version: "0.0.1", SHA256: hex.EncodeToString(sum), Attempt: attempt},
			rundb.Plugin{Role: "encoder", Name: "encoder", Version: nnencoder.Version, SHA256: hex.EncodeToString(sum), Attempt: attempt},
			rundb.Plugin{Role: "loss", Name: "simsiam", Version: "0.0.1", SHA256: hex.EncodeToString(sum), Attempt: attempt})
	}
	if !slices.Equal(d.Plugins, want) {
		t.Errorf("plugins:\n got %+v\nwant %+v", d.Plugins, want)
	}
	if len(d.Artifacts) < 3 || len(d.Datasets) != 2 || d.Pipeline == "" || d.Tags["run_dir"] != part.Dir {
		t.Errorf("artifacts %d, datasets %+v, pipeline %d bytes, tags %v", len(d.Artifacts), d.Datasets, len(d.Pipeline), d.Tags)
	}
}
