package rundb_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sslrun/sslrun/core/rundb"
)

func TestAddEvaluationLeavesRunAlone(t *testing.T) {
	ctx := context.Background()
	db, err := rundb.Open(filepath.Join(t.TempDir(), "runs.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	r, err := db.CreateRun(ctx, rundb.RunSpec{Name: "a", Method: "simsiam"})
	if err != nil {
		t.Fatal(err)
	}
	ev := rundb.Evaluation{Protocol: "knn", Dataset: "mnist/test", Feature: "backbone", Selection: "last", K: 200, Temperature: 0.1, Step: 10, Epoch: 1, Top1: 0.5, Top5: 0.9}
	if err := r.LogEvaluation(ctx, ev); err != nil {
		t.Fatal(err)
	}
	if err := r.Finish(rundb.StatusFinished, nil); err != nil {
		t.Fatal(err)
	}
	off := ev
	off.Top1, off.Options = 0.6, map[string]any{"source": "sslrun eval"}
	for range 2 { // the second replaces the first
		if err := db.AddEvaluation(ctx, r.ID(), off); err != nil {
			t.Fatal(err)
		}
	}
	var status string
	var n int
	var top1 float64
	if err := db.SQL().QueryRowContext(ctx, `SELECT r.status, count(*), max(e.top1) FROM runs r JOIN evaluations e ON e.run_id = r.id WHERE r.id = ?`, r.ID()).
		Scan(&status, &n, &top1); err != nil {
		t.Fatal(err)
	}
	if status != "FINISHED" || n != 2 || top1 != 0.6 {
		t.Errorf("status %s, %d evaluations, best top-1 %v; want FINISHED, 2, 0.6", status, n, top1)
	}
	if err := db.AddEvaluation(ctx, r.ID()+100, off); err == nil || !strings.Contains(err.Error(), "no run") {
		t.Errorf("evaluation of a missing run: %v", err)
	}
}
