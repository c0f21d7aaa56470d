package main

import (
	"context"
	"encoding/csv"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sslrun/sslrun/core/rundb"
	"github.com/sslrun/sslrun/core/rundb/rundbtest"
)

// TestDatabaseCommands runs runs ls/show, compare, sql and report against
// the synthetic study of rundbtest.
func TestDatabaseCommands(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "runs.db")
	db, err := rundb.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := rundbtest.Populate(ctx, db, "methods", rundbtest.DefaultSpecs); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) result {
		t.Helper()
		return sslrun(t, ctx, dir, nil, append(args, "--db", path)...)
	}

	r := run("runs", "ls", "--study", "methods", "-f", "csv")
	recs, err := csv.NewReader(strings.NewReader(r.stdout)).ReadAll()
	if r.code != exitOK || err != nil || len(recs) != 1+len(rundbtest.DefaultSpecs) {
		t.Fatalf("runs ls: exit %d, %d CSV records (%v), want %d:\n%s%s", r.code, len(recs), err, 1+len(rundbtest.DefaultSpecs), r.stdout, r.stderr)
	}
	if r := run("runs", "ls", "--status", "FAILED"); r.code != exitOK || strings.Count(r.stdout, "FAILED") != 1 {
		t.Errorf("runs ls --status FAILED:\n%s%s", r.stdout, r.stderr)
	}
	if r := run("runs", "show", recs[1][0]); r.code != exitOK || !strings.Contains(r.stdout, "config hash") {
		t.Errorf("runs show %s: exit %d\n%s%s", recs[1][0], r.code, r.stdout, r.stderr)
	}

	r = run("compare", "--study", "methods")
	if r.code != exitOK {
		t.Fatalf("compare: exit %d\n%s", r.code, r.stderr)
	}
	for _, want := range []string{"simsiam", "simclr", "collapsed", "yes", "no"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("compare lacks %q:\n%s", want, r.stdout)
		}
	}

	if r := run("sql", "SELECT count(*) AS n FROM runs", "-f", "json"); r.code != exitOK || !strings.Contains(r.stdout, `"n":`) {
		t.Errorf("sql: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := run("sql", "DELETE FROM runs"); r.code == exitOK || !strings.Contains(r.stderr, "read-only") {
		t.Errorf("sql DELETE: exit %d, want a read-only error:\n%s", r.code, r.stderr)
	}

	out := filepath.Join(dir, "report.html")
	if r := run("report", "--study", "methods", "-o", out); r.code != exitOK {
		t.Fatalf("report: exit %d\n%s", r.code, r.stderr)
	}
	html, err := os.ReadFile(out)
	if err != nil || !strings.Contains(string(html), `id="plot-knn-top1"`) {
		t.Errorf("report %s lacks the kNN plot (%v)", out, err)
	}

	if r := sslrun(t, ctx, dir, nil, "compare", "--db", filepath.Join(dir, "none.db")); r.code != exitUsage {
		t.Errorf("compare on a missing database: exit %d, want %d\n%s", r.code, exitUsage, r.stderr)
	}
	if r := run("runs", "ls", "-f", "yaml"); r.code != exitUsage {
		t.Errorf("unknown format: exit %d, want %d", r.code, exitUsage)
	}
}
