package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// TestEvalIsRecorded checks that `sslrun eval` adds its result to the run's
// record beside the evaluation the run made itself, without touching the
// run's status.
func TestEvalIsRecorded(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a run")
	}
	dir, path := tiny(t)
	ctx := context.Background()
	r := sslrun(t, ctx, dir, nil, "run", "-var", "epochs=1", path)
	if r.code != exitOK {
		t.Fatalf("run: exit %d\n%s", r.code, r.stderr)
	}
	d := runDir(t, r.stdout)
	e := sslrun(t, ctx, dir, nil, "eval", filepath.Base(d), "--protocol", "knn")
	if e.code != exitOK {
		t.Fatalf("eval: exit %d\n%s\n%s", e.code, e.stdout, e.stderr)
	}
	db := filepath.Join(dir, "sslrun.db")
	q := sslrun(t, ctx, dir, nil, "sql", "--db", db, "-f", "csv",
		`SELECT r.status, count(*) AS n, sum(json_extract(e.options, '$.source') = 'sslrun eval') AS offline,
		        max(CASE WHEN json_extract(e.options, '$.source') = 'sslrun eval' THEN e.top1 END) =
		        max(CASE WHEN json_extract(e.options, '$.source') IS NULL AND e.epoch = 1 THEN e.top1 END) AS same
		   FROM runs r JOIN evaluations e ON e.run_id = r.id GROUP BY r.id`)
	if q.code != exitOK {
		t.Fatalf("sql: exit %d\n%s", q.code, q.stderr)
	}
	// One run: FINISHED, kNN at epochs 0 and 1 plus the offline one, which
	// equals the run's own final kNN (same checkpoint, same protocol).
	lines := strings.Split(strings.TrimSpace(q.stdout), "\n")
	if len(lines) != 2 || lines[1] != "FINISHED,3,1,1" {
		t.Errorf("evaluations recorded:\n%s", q.stdout)
	}
	// Evaluating again replaces the offline row rather than adding one.
	if e := sslrun(t, ctx, dir, nil, "eval", filepath.Base(d), "--protocol", "knn"); e.code != exitOK {
		t.Fatalf("second eval: exit %d\n%s", e.code, e.stderr)
	}
	q = sslrun(t, ctx, dir, nil, "sql", "--db", db, "-f", "csv", "SELECT count(*) FROM evaluations")
	if lines := strings.Split(strings.TrimSpace(q.stdout), "\n"); len(lines) != 2 || lines[1] != "3" {
		t.Errorf("evaluations after a second eval:\n%s", q.stdout)
	}
}
