package rundb_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sslrun/sslrun/core/rundb"
	"github.com/sslrun/sslrun/core/rundb/rundbtest"
)

var ctx = context.Background()

func openTemp(t testing.TB) (*rundb.DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "runs.db")
	db, err := rundb.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, path
}

func count(t testing.TB, db *sql.DB, q string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := db.QueryRow(q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

func TestOpenMigrates(t *testing.T) {
	db, path := openTemp(t)
	var v int
	var mode string
	if err := db.SQL().QueryRow("PRAGMA user_version").Scan(&v); err != nil {
		t.Fatal(err)
	}
	if err := db.SQL().QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if v != rundb.SchemaVersion || mode != "wal" {
		t.Errorf("user_version %d journal_mode %s, want %d wal", v, mode, rundb.SchemaVersion)
	}
	if db.MaxVariables() < 999 {
		t.Errorf("MaxVariables = %d", db.MaxVariables())
	}
	db.Close()

	// Reopening does not migrate again; a newer schema is refused.
	db2, err := rundb.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db2.SQL().Exec("PRAGMA user_version = 99"); err != nil {
		t.Fatal(err)
	}
	db2.Close()
	for name, open := range map[string]func(string) (*rundb.DB, error){"Open": rundb.Open, "OpenReadOnly": rundb.OpenReadOnly} {
		if _, err := open(path); !errors.Is(err, rundb.ErrNewerSchema) {
			t.Errorf("%s of a newer schema: %v, want ErrNewerSchema", name, err)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	notDB := filepath.Join(dir, "text.db")
	os.WriteFile(notDB, []byte(strings.Repeat("this is not a database\n", 100)), 0o644)
	tests := []struct {
		name, path, want string
	}{
		{"missing dir", filepath.Join(dir, "nope", "runs.db"), "no such file"},
		{"not a database", notDB, "not a database"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := rundb.Open(tt.path)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), tt.path) {
				t.Errorf("Open: %v, want an error naming %s and %q", err, tt.path, tt.want)
			}
		})
	}
	if _, err := rundb.OpenReadOnly(filepath.Join(dir, "missing.db")); err == nil {
		t.Error("OpenReadOnly of a missing file succeeded")
	}
}

func TestRunRoundTrip(t *testing.T) {
	db, _ := openTemp(t)
	cfg := json.RawMessage(`{"model":{"arch":"resnet18","width":64},"optim":{"lr":0.06,"nesterov":true},
		"seed":7,"augment":["crop","flip"],"note":null}`)
	r, err := db.CreateRun(ctx, rundb.RunSpec{
		Study: "s", Name: "first", Method: "simsiam", Variant: rundb.VariantOf("simsiam", map[string]any{"stopgrad": true}),
		Pipeline: "pipeline {}", Config: cfg, Seed: 7, CodeVersion: "abc123",
		Plugins: []rundb.Plugin{{Role: "loss", Name: "simsiam", Version: "1.0", SHA256: "aa"}},
		Tags:    map[string]string{"owner": "me"},
		Params:  map[string]any{"extra.batch": 512},
	})
	if err != nil {
		t.Fatal(err)
	}
	z := rundb.Ctx("tensor", "z")
	steps := []struct {
		step  int64
		loss  float64
		mo    float64
		epoch float64
	}{{1, -0.1, 0.5, 0.5}, {2, -0.5, 0.4, 1}, {3, math.NaN(), 0.45, 1.5}, {4, -0.3, 0.2, 2}}
	for _, s := range steps {
		if err := r.Log(s.step, s.epoch, rundb.Metric{Key: "loss", Value: s.loss},
			rundb.Metric{Key: "decompose/m_o", Context: z, Value: s.mo}); err != nil {
			t.Fatal(err)
		}
		if s.step == 2 {
			if err := r.Flush(); err != nil { // summaries must merge across batches
				t.Fatal(err)
			}
		}
	}
	if err := r.LogEvaluation(ctx, rundb.Evaluation{Protocol: "knn", Dataset: "cifar10", Split: "test", K: 200,
		Temperature: 0.1, Step: 4, Epoch: 2, Top1: 0.5, Top5: 0.9}); err != nil {
		t.Fatal(err)
	}
	spec := []float32{3, 2, 1, 0.5}
	if err := r.LogArray(ctx, "spectrum", z, 4, 2, []int{2, 2}, spec); err != nil {
		t.Fatal(err)
	}
	if err := r.LogArray(ctx, "spectrum", z, 4, 2, []int{3}, spec); err == nil {
		t.Error("LogArray with a wrong shape succeeded")
	}
	art := filepath.Join(t.TempDir(), "ckpt.bin")
	os.WriteFile(art, []byte("hello"), 0o644)
	if err := r.LogArtifact(ctx, "checkpoint", art, 4); err != nil {
		t.Fatal(err)
	}
	if err := r.LogDataset(ctx, rundb.Dataset{Role: "train", Name: "cifar10", Digest: "d1", NumSamples: 50000}); err != nil {
		t.Fatal(err)
	}
	if err := r.SetTags(ctx, map[string]string{"owner": "you"}); err != nil {
		t.Fatal(err)
	}
	if err := r.Finish(rundb.StatusFinished, nil); err != nil {
		t.Fatal(err)
	}
	if err := r.Log(5, 3, rundb.Metric{Key: "loss", Value: 1}); err == nil {
		t.Error("Log after Finish succeeded")
	}

	for _, ref := range []string{"1", r.UUID(), r.UUID()[:6], "first"} {
		id, err := db.ResolveRun(ctx, ref)
		if err != nil || id != r.ID() {
			t.Errorf("ResolveRun(%q) = %d, %v", ref, id, err)
		}
	}
	if _, err := db.ResolveRun(ctx, "nosuchrun"); !errors.Is(err, rundb.ErrNotFound) {
		t.Errorf("ResolveRun(nosuchrun): %v", err)
	}

	d, err := db.ShowRun(ctx, "first")
	if err != nil {
		t.Fatal(err)
	}
	if d.Status != rundb.StatusFinished || d.End == nil || d.Seed != 7 || d.Tags["owner"] != "you" || len(d.Plugins) != 1 {
		t.Errorf("run detail: %+v", d.RunRow)
	}
	if !strings.HasPrefix(d.Variant, "simsiam#") || len(d.ConfigHash) != 64 {
		t.Errorf("variant %q config hash %q", d.Variant, d.ConfigHash)
	}
	params := map[string]rundb.Param{}
	for _, p := range d.Params {
		params[p.Key] = p
	}
	wantParams := map[string]struct {
		typ string
		val any
	}{
		"model.arch": {"string", "resnet18"}, "model.width": {"int", int64(64)}, "optim.lr": {"float", 0.06},
		"optim.nesterov": {"bool", true}, "seed": {"int", int64(7)}, "augment": {"json", `["crop","flip"]`},
		"note": {"null", nil}, "extra.batch": {"int", int64(512)},
	}
	for k, w := range wantParams {
		if p := params[k]; p.Type != w.typ || p.Value != w.val {
			t.Errorf("param %s = %s %#v, want %s %#v", k, p.Type, p.Value, w.typ, w.val)
		}
	}
	sums := map[string]rundb.Summary{}
	for _, s := range d.Summaries {
		sums[s.Key] = s
	}
	loss := sums["loss"]
	if loss.Count != 4 || *loss.Last != -0.3 || loss.LastStep != 4 || *loss.Min != -0.5 || loss.MinStep != 2 ||
		*loss.Max != -0.1 || *loss.Best != -0.5 || loss.Goal != rundb.GoalMin {
		t.Errorf("loss summary %+v", loss)
	}
	mo := sums["decompose/m_o"]
	if mo.Context != z || *mo.Last != 0.2 || *mo.Max != 0.5 || mo.Best != nil {
		t.Errorf("m_o summary %+v", mo)
	}
	if len(d.Evaluations) != 1 || d.Evaluations[0].K != 200 || d.Evaluations[0].Top1 != 0.5 {
		t.Errorf("evaluations %+v", d.Evaluations)
	}
	if len(d.Artifacts) != 1 || d.Artifacts[0].SHA256 != "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824" || d.Artifacts[0].Size != 5 {
		t.Errorf("artifacts %+v", d.Artifacts)
	}
	if len(d.Datasets) != 1 || len(d.Attempts) != 1 || d.Attempts[0].Status != rundb.StatusFinished {
		t.Errorf("datasets %+v attempts %+v", d.Datasets, d.Attempts)
	}
	arrs, err := db.Arrays(ctx, r.ID(), "spectrum")
	if err != nil || len(arrs) != 1 || arrs[0].DType != "float32" || len(arrs[0].Shape) != 2 {
		t.Fatalf("Arrays: %+v %v", arrs, err)
	}
	if got := arrs[0].Data.([]float32); got[3] != 0.5 {
		t.Errorf("array data %v", got)
	}
	ss, err := db.FindSeries(ctx, r.ID(), "loss", nil)
	if err != nil || len(ss) != 1 {
		t.Fatalf("FindSeries: %v %v", ss, err)
	}
	pts, err := db.History(ctx, ss[0].ID)
	if err != nil || len(pts) != 4 || !math.IsNaN(pts[2].Value) || pts[3].Epoch != 2 {
		t.Errorf("History: %+v %v", pts, err)
	}
	// JSON for `runs show --json`: NaN and infinities must not break it.
	d.Evaluations[0].Top5 = math.NaN()
	inf := math.Inf(1)
	d.Summaries[0].Last = &inf
	js, err := json.Marshal(d)
	if err != nil || !strings.Contains(string(js), `"top5":null`) || !strings.Contains(string(js), `"last":"+Inf"`) {
		t.Errorf("json.Marshal(detail): %v\n%s", err, js)
	}
	var text strings.Builder
	if err := d.WriteText(&text); err != nil || !strings.Contains(text.String(), "decompose/m_o") {
		t.Errorf("WriteText: %v\n%s", err, text.String())
	}
}

// TestChunking writes batches larger than the (lowered) bind-variable limit
// allows in one statement, and one batch of 100k rows under the real limit.
func TestChunking(t *testing.T) {
	for _, tc := range []struct {
		name    string
		maxVars int
		rows    int
	}{{"tiny limit", 12, 1001}, {"real limit", 0, 100_000}} {
		t.Run(tc.name, func(t *testing.T) {
			db, _ := openTemp(t)
			if tc.maxVars > 0 {
				rundb.SetMaxVariables(db, tc.maxVars)
			}
			r, err := db.CreateRun(ctx, rundb.RunSpec{Name: tc.name})
			if err != nil {
				t.Fatal(err)
			}
			r.SetFlushPolicy(1<<30, 1<<40)
			for i := range tc.rows {
				if err := r.Log(int64(i), 0, rundb.Metric{Key: "x", Value: float64(i)}); err != nil {
					t.Fatal(err)
				}
			}
			if n := count(t, db.SQL(), "SELECT count(*) FROM metrics"); n != 0 {
				t.Fatalf("%d rows committed before Flush", n)
			}
			if err := r.Finish(rundb.StatusFinished, nil); err != nil {
				t.Fatal(err)
			}
			if n := count(t, db.SQL(), "SELECT count(*) FROM metrics"); n != int64(tc.rows) {
				t.Errorf("%d rows, want %d", n, tc.rows)
			}
			if n := count(t, db.SQL(), "SELECT count FROM series"); n != int64(tc.rows) {
				t.Errorf("summary count %d, want %d", n, tc.rows)
			}
		})
	}
}

func TestFlushPolicy(t *testing.T) {
	db, _ := openTemp(t)
	r, err := db.CreateRun(ctx, rundb.RunSpec{})
	if err != nil {
		t.Fatal(err)
	}
	r.SetFlushPolicy(10, 1<<40)
	for i := range 25 {
		r.Log(int64(i), 0, rundb.Metric{Key: "a", Value: 1})
	}
	if n := count(t, db.SQL(), "SELECT count(*) FROM metrics"); n != 20 {
		t.Errorf("%d rows committed, want 20 (two batches of 10)", n)
	}
	r.Finish(rundb.StatusFinished, nil)
	if n := count(t, db.SQL(), "SELECT count(*) FROM metrics"); n != 25 {
		t.Errorf("%d rows after Finish, want 25", n)
	}
}

func TestListAndCompare(t *testing.T) {
	db, _ := openTemp(t)
	if _, err := rundbtest.Populate(ctx, db, "cifar", rundbtest.DefaultSpecs); err != nil {
		t.Fatal(err)
	}
	if _, err := rundbtest.Populate(ctx, db, "other", rundbtest.DefaultSpecs[:1]); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		f    rundb.RunFilter
		want int
	}{
		{rundb.RunFilter{}, 9},
		{rundb.RunFilter{Study: "cifar"}, 8},
		{rundb.RunFilter{Study: "cifar", Status: []rundb.Status{"failed"}}, 1},
		{rundb.RunFilter{Method: "simclr"}, 2},
		{rundb.RunFilter{Limit: 3}, 3},
	} {
		rows, err := db.ListRuns(ctx, tt.f)
		if err != nil || len(rows) != tt.want {
			t.Errorf("ListRuns(%+v) = %d rows, %v; want %d", tt.f, len(rows), err, tt.want)
		}
	}

	rows, err := db.Compare(ctx, rundb.CompareOptions{Study: "cifar"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 {
		t.Fatalf("%d compare rows, want 3: %+v", len(rows), rows)
	}
	byName := map[string]rundb.CompareRow{}
	for _, r := range rows {
		byName[r.Method+"/"+r.Variant] = r
	}
	// Expected statistics from the generator, over the FINISHED runs only.
	for name, specs := range map[string][]rundbtest.Spec{
		"simsiam/":            rundbtest.DefaultSpecs[0:3],
		"simsiam/no-stopgrad": rundbtest.DefaultSpecs[3:5],
		"simclr/t=0.5":        rundbtest.DefaultSpecs[5:7],
	} {
		r, ok := byName[name]
		if !ok {
			t.Errorf("no compare row %s", name)
			continue
		}
		var knn, mo []float64
		for _, s := range specs {
			k, m, _, _, _, _, _ := rundbtest.Final(s)
			knn, mo = append(knn, k), append(mo, m)
		}
		wantKNN, wantMO := meanStd(knn), meanStd(mo)
		if r.Runs != len(specs) || !near(r.KNN.Mean, wantKNN[0]) || !near(r.KNN.Std, wantKNN[1]) ||
			!near(r.MO.Mean, wantMO[0]) || !near(r.MO.Std, wantMO[1]) || r.Linear.N != len(specs) {
			t.Errorf("%s: %+v, want kNN %v m_o %v", name, r, wantKNN, wantMO)
		}
		wantVerdict := "no"
		if specs[0].Collapse {
			wantVerdict = "yes"
		}
		if r.Verdict() != wantVerdict {
			t.Errorf("%s: verdict %q (%d/%d), want %q", name, r.Verdict(), r.Collapsed, r.Judged, wantVerdict)
		}
	}
	// All statuses: the failed simsiam run joins its group.
	all, err := db.Compare(ctx, rundb.CompareOptions{Study: "cifar", Status: []rundb.Status{}})
	if err != nil || len(all) != 3 {
		t.Fatalf("Compare(all statuses): %d rows, %v", len(all), err)
	}
	for _, r := range all {
		if r.Method == "simsiam" && r.Variant == "" && r.Runs != 4 {
			t.Errorf("simsiam with all statuses: %d runs, want 4", r.Runs)
		}
	}

	var b strings.Builder
	if err := rundb.Format(&b, rundb.CompareTable(rows, "table"), "table"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "±") || !strings.Contains(b.String(), "no-stopgrad") {
		t.Errorf("compare table:\n%s", b.String())
	}
	t.Logf("\n%s", b.String())
}

func meanStd(xs []float64) [2]float64 {
	m := 0.0
	for _, x := range xs {
		m += x
	}
	m /= float64(len(xs))
	ss := 0.0
	for _, x := range xs {
		ss += (x - m) * (x - m)
	}
	return [2]float64{m, math.Sqrt(ss / float64(len(xs)-1))}
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*(1+math.Abs(b)) }

func TestFormat(t *testing.T) {
	tab := &rundb.Table{Columns: []string{"id", "name", "value"}, Rows: [][]any{
		{int64(1), "a,b", 0.5},
		{int64(22), "c", nil},
		{int64(3), "d", math.Inf(1)},
		{int64(4), []byte{0, 1, 2}, math.NaN()},
	}}
	tests := []struct {
		format string
		want   []string
	}{
		{"table", []string{"id  name            value\n", "--  --------------  -----\n", " 1  a,b               0.5\n", " 4  <blob 3 bytes>    NaN\n"}},
		{"csv", []string{"id,name,value", `1,"a,b",0.5`, "22,c,", "3,d,+Inf", "4,<blob 3 bytes>,NaN"}},
		{"json", []string{`{"id": 1, "name": "a,b", "value": 0.5}`, `{"id": 22, "name": "c", "value": null}`,
			`"value": "+Inf"`, `{"id": 4, "name": "AAEC", "value": "NaN"}`}},
	}
	for _, tt := range tests {
		t.Run(tt.format, func(t *testing.T) {
			var b strings.Builder
			if err := rundb.Format(&b, tab, tt.format); err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("missing %q in\n%s", w, b.String())
				}
			}
			if tt.format == "json" {
				var v []map[string]any
				if err := json.Unmarshal([]byte(b.String()), &v); err != nil || len(v) != 4 {
					t.Errorf("invalid JSON: %v", err)
				}
			}
		})
	}
	if err := rundb.Format(&strings.Builder{}, tab, "xml"); err == nil {
		t.Error("Format(xml) succeeded")
	}
}

// TestReadOnly checks that a database opened read-only refuses every
// write, even after the statement tries to switch query_only off.
func TestReadOnly(t *testing.T) {
	db, path := openTemp(t)
	if _, err := rundbtest.Populate(ctx, db, "s", rundbtest.DefaultSpecs[:2]); err != nil {
		t.Fatal(err)
	}
	before := count(t, db.SQL(), "SELECT count(*) FROM metrics")
	ro, err := rundb.OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	for _, q := range []string{
		"DELETE FROM metrics",
		"UPDATE runs SET status = 'FAILED'",
		"DROP TABLE metrics",
		"PRAGMA query_only = 0; DELETE FROM metrics",
		"INSERT INTO tags VALUES (1, 'x', 'y')",
		"VACUUM",
		"PRAGMA user_version = 7",
	} {
		_, err := ro.Query(ctx, q)
		if !errors.Is(err, rundb.ErrReadOnly) || !strings.Contains(err.Error(), "read-only") {
			t.Errorf("%s: %v, want ErrReadOnly", q, err)
		}
	}
	if _, err := ro.CreateRun(ctx, rundb.RunSpec{}); err == nil {
		t.Error("CreateRun on a read-only database succeeded")
	}
	tab, err := ro.Query(ctx, "SELECT count(*) AS n FROM metrics")
	if err != nil || tab.Rows[0][0] != before {
		t.Errorf("count after writes = %v (%v), want %d", tab, err, before)
	}
}

// TestDiskFull makes SQLite run out of pages (PRAGMA max_page_count on the
// writer's connection: SQLITE_FULL, exactly what a full disk returns) and
// checks the error, that nothing partial was committed and that the run can
// still be stopped cleanly.
func TestDiskFull(t *testing.T) {
	db, path := openTemp(t)
	rundb.SetConnHook(db, func(ctx context.Context, c *sql.Conn) error {
		var pages int64
		if err := c.QueryRowContext(ctx, "PRAGMA page_count").Scan(&pages); err != nil {
			return err
		}
		_, err := c.ExecContext(ctx, "PRAGMA max_page_count = "+strconv.FormatInt(pages+8, 10))
		return err
	})
	r, err := db.CreateRun(ctx, rundb.RunSpec{Name: "full"})
	if err != nil {
		t.Fatal(err)
	}
	r.SetFlushPolicy(500, 1<<40)
	var logErr error
	committed := 0
	for i := 0; i < 1_000_000 && logErr == nil; i++ {
		logErr = r.Log(int64(i), 0, rundb.Metric{Key: "loss", Value: float64(i)})
		if logErr == nil && (i+1)%500 == 0 {
			committed = i + 1
		}
	}
	if !errors.Is(logErr, rundb.ErrDiskFull) || !strings.Contains(logErr.Error(), path) ||
		!strings.Contains(logErr.Error(), "disk full") {
		t.Fatalf("Log error %v, want ErrDiskFull naming %s", logErr, path)
	}
	t.Logf("error after %d committed rows: %v", committed, logErr)
	ferr := r.Finish(rundb.StatusFinished, nil)
	if !errors.Is(ferr, rundb.ErrDiskFull) {
		t.Errorf("Finish: %v, want the flush's ErrDiskFull", ferr)
	}
	if n := count(t, db.SQL(), "SELECT count(*) FROM metrics"); n != int64(committed) {
		t.Errorf("%d rows in the database, want the %d committed", n, committed)
	}
	if n := count(t, db.SQL(), "SELECT count FROM series"); n != int64(committed) {
		t.Errorf("summary count %d, want %d", n, committed)
	}
	var status, msg string
	db.SQL().QueryRow("SELECT status, error FROM runs").Scan(&status, &msg)
	if status != "FAILED" || !strings.Contains(msg, "disk full") {
		t.Errorf("run status %s (%q), want FAILED with the disk-full error", status, msg)
	}
	integrity(t, db.SQL())
}

// TestDiskFullBoundedRetry keeps logging after a commit failed for a full
// disk. Before the fix every Log retried an ever-growing transaction and the
// buffer grew without bound. Now Log retries only after a backoff, every Log
// reports the failure, the buffer stops at its bound with an error matching
// ErrMetricsDropped (and ErrDiskFull), and Finish records the loss.
func TestDiskFullBoundedRetry(t *testing.T) {
	db, _ := openTemp(t)
	rundb.SetConnHook(db, func(ctx context.Context, c *sql.Conn) error {
		var pages int64
		if err := c.QueryRowContext(ctx, "PRAGMA page_count").Scan(&pages); err != nil {
			return err
		}
		_, err := c.ExecContext(ctx, "PRAGMA max_page_count = "+strconv.FormatInt(pages+8, 10))
		return err
	})
	r, err := db.CreateRun(ctx, rundb.RunSpec{Name: "full"})
	if err != nil {
		t.Fatal(err)
	}
	const batch, limit = 500, 5000
	r.SetFlushPolicy(batch, 1<<40)
	rundb.SetMaxPending(r, limit)
	step := int64(0)
	var logErr error
	for ; step < 1_000_000 && logErr == nil; step++ {
		logErr = r.Log(step, 0, rundb.Metric{Key: "loss", Value: float64(step)})
	}
	if !errors.Is(logErr, rundb.ErrDiskFull) {
		t.Fatalf("Log: %v, want ErrDiskFull", logErr)
	}
	committed := count(t, db.SQL(), "SELECT count(*) FROM metrics")

	// During the backoff: no retry, but every Log reports the failure and
	// keeps its rows.
	attempts := rundb.FlushAttempts(r)
	pending := rundb.Pending(r)
	for i := 0; i < 1000; i++ {
		err := r.Log(step, 0, rundb.Metric{Key: "loss", Value: 1})
		step++
		if !errors.Is(err, rundb.ErrDiskFull) || errors.Is(err, rundb.ErrMetricsDropped) {
			t.Fatalf("Log during backoff: %v, want ErrDiskFull without drops", err)
		}
	}
	if n := rundb.FlushAttempts(r); n != attempts {
		t.Errorf("%d flush attempts during the backoff, want none", n-attempts)
	}
	if n := rundb.Pending(r); n != pending+1000 {
		t.Errorf("%d rows buffered, want %d", n, pending+1000)
	}

	// After the backoff the next Log retries, once.
	rundb.ExpireRetryBackoff(r)
	if err := r.Log(step, 0, rundb.Metric{Key: "loss", Value: 1}); !errors.Is(err, rundb.ErrDiskFull) {
		t.Fatalf("Log after backoff: %v", err)
	}
	step++
	if n := rundb.FlushAttempts(r); n != attempts+1 {
		t.Errorf("%d flush attempts after the backoff, want 1", n-attempts)
	}

	// The buffer stops at its bound, and says so.
	var dropErr error
	for i := 0; i < 2*limit && dropErr == nil; i++ {
		if err := r.Log(step, 0, rundb.Metric{Key: "loss", Value: 1}); errors.Is(err, rundb.ErrMetricsDropped) {
			dropErr = err
		}
		step++
	}
	if dropErr == nil || !errors.Is(dropErr, rundb.ErrDiskFull) || !strings.Contains(dropErr.Error(), "not recorded") {
		t.Fatalf("Log at the bound: %v, want ErrMetricsDropped wrapping ErrDiskFull", dropErr)
	}
	t.Logf("at the bound: %v", dropErr)
	if n := rundb.Pending(r); n > limit {
		t.Errorf("%d rows buffered, bound %d", n, limit)
	}

	ferr := r.Finish(rundb.StatusFinished, nil)
	if !errors.Is(ferr, rundb.ErrDiskFull) {
		t.Errorf("Finish: %v, want ErrDiskFull", ferr)
	}
	if n := count(t, db.SQL(), "SELECT count(*) FROM metrics"); n != committed {
		t.Errorf("%d rows, want the %d committed", n, committed)
	}
	var status, msg string
	db.SQL().QueryRow("SELECT status, error FROM runs").Scan(&status, &msg)
	if status != "FAILED" || !strings.Contains(msg, "disk full") || !strings.Contains(msg, "dropped") {
		t.Errorf("run status %s (%q), want FAILED naming the full disk and the dropped rows", status, msg)
	}
	integrity(t, db.SQL())
}

func integrity(t testing.TB, db *sql.DB) {
	t.Helper()
	var res string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&res); err != nil || res != "ok" {
		t.Errorf("integrity_check: %s %v", res, err)
	}
}

func TestParseStatus(t *testing.T) {
	for in, want := range map[string]rundb.Status{"finished": rundb.StatusFinished, " CRASHED": rundb.StatusCrashed, "Killed": rundb.StatusKilled} {
		if got, err := rundb.ParseStatus(in); got != want || err != nil {
			t.Errorf("ParseStatus(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := rundb.ParseStatus("done"); err == nil {
		t.Error("ParseStatus(done) succeeded")
	}
}

// TestConcurrentGoroutines logs into one run from several goroutines (the
// runner's loop, an analyzer, an evaluator) while another flushes.
func TestConcurrentGoroutines(t *testing.T) {
	db, _ := openTemp(t)
	r, err := db.CreateRun(ctx, rundb.RunSpec{})
	if err != nil {
		t.Fatal(err)
	}
	r.SetFlushPolicy(97, time.Hour)
	const workers, rows = 4, 2000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := "k" + strconv.Itoa(w)
			for i := range rows {
				if err := r.Log(int64(i), 0, rundb.Metric{Key: key, Value: float64(i)}); err != nil {
					t.Error(err)
					return
				}
				if i%500 == 0 {
					r.Flush()
					r.SetTags(ctx, map[string]string{key: strconv.Itoa(i)})
				}
			}
		}()
	}
	wg.Wait()
	if err := r.Finish(rundb.StatusFinished, nil); err != nil {
		t.Fatal(err)
	}
	if n := count(t, db.SQL(), "SELECT count(*) FROM metrics"); n != workers*rows {
		t.Errorf("%d rows, want %d", n, workers*rows)
	}
	if n := count(t, db.SQL(), "SELECT sum(count) FROM series"); n != workers*rows {
		t.Errorf("summaries count %d, want %d", n, workers*rows)
	}
}

// TestHeartbeat checks that frequent flushes keep the heartbeat current
// (it is written at most once a second).
func TestHeartbeat(t *testing.T) {
	db, _ := openTemp(t)
	r, err := db.CreateRun(ctx, rundb.RunSpec{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Finish(rundb.StatusFinished, nil)
	beat := func() int64 { return count(t, db.SQL(), "SELECT heartbeat FROM runs WHERE id = ?", r.ID()) }
	// Flush often until the heartbeat has advanced by a second, polling
	// against a deadline generous for a loaded machine instead of judging
	// a fixed window. Each distinct value must be at least a second after
	// the previous one (at most one write per second).
	var first, prev int64
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; ; i++ {
		r.Log(int64(i), 0, rundb.Metric{Key: "a", Value: 1})
		if err := r.Flush(); err != nil {
			t.Fatal(err)
		}
		b := beat()
		if i == 0 {
			first, prev = b, b
		}
		if b != prev {
			if b-prev < 1000 {
				t.Fatalf("heartbeat rewritten after %d ms, want at most once a second", b-prev)
			}
			prev = b
		}
		if b-first >= 1000 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("heartbeat advanced %d ms over 30 s of flushes every 20 ms", b-first)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
