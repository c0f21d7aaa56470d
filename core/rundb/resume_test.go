package rundb_test

import (
	"database/sql"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sslrun/sslrun/core/rundb"
)

// summary is a series' stored summary, NULLs as NaN and -1.
type summary struct {
	count                      int64
	lastStep, minStep, maxStep int64
	last, min, max, lastEpoch  float64
}

func (s summary) String() string {
	return fmt.Sprintf("count %d last %v@%d (epoch %v) min %v@%d max %v@%d",
		s.count, s.last, s.lastStep, s.lastEpoch, s.min, s.minStep, s.max, s.maxStep)
}

func eqNaN(a, b float64) bool { return a == b || math.IsNaN(a) && math.IsNaN(b) }

func (s summary) equal(o summary) bool {
	return s.count == o.count && s.lastStep == o.lastStep && s.minStep == o.minStep && s.maxStep == o.maxStep &&
		eqNaN(s.last, o.last) && eqNaN(s.min, o.min) && eqNaN(s.max, o.max) && eqNaN(s.lastEpoch, o.lastEpoch)
}

func orNaN(f sql.NullFloat64) float64 {
	if !f.Valid {
		return math.NaN()
	}
	return f.Float64
}

func orNeg(i sql.NullInt64) int64 {
	if !i.Valid {
		return -1
	}
	return i.Int64
}

// storedSummary reads the summary columns of series id.
func storedSummary(t testing.TB, db *sql.DB, id int64) summary {
	t.Helper()
	var s summary
	var last, mn, mx, le sql.NullFloat64
	var ls, mns, mxs sql.NullInt64
	err := db.QueryRow(`SELECT count, last_value, last_step, last_epoch, min_value, min_step, max_value, max_step
		FROM series WHERE id = ?`, id).Scan(&s.count, &last, &ls, &le, &mn, &mns, &mx, &mxs)
	if err != nil {
		t.Fatal(err)
	}
	s.last, s.lastEpoch, s.min, s.max = orNaN(last), orNaN(le), orNaN(mn), orNaN(mx)
	s.lastStep, s.minStep, s.maxStep = orNeg(ls), orNeg(mns), orNeg(mxs)
	return s
}

// point is a metric row: its epoch and value (NaN for NULL).
type point struct{ epoch, value float64 }

// wantSummary computes a summary from the rows a series should hold.
func wantSummary(rows map[int64]point) summary {
	s := summary{count: int64(len(rows)), lastStep: -1, minStep: -1, maxStep: -1,
		last: math.NaN(), min: math.NaN(), max: math.NaN(), lastEpoch: math.NaN()}
	for step, p := range rows {
		if step > s.lastStep {
			s.lastStep, s.last, s.lastEpoch = step, p.value, p.epoch
		}
		if math.IsNaN(p.value) {
			continue
		}
		if math.IsNaN(s.min) || p.value < s.min || p.value == s.min && step < s.minStep {
			s.min, s.minStep = p.value, step
		}
		if math.IsNaN(s.max) || p.value > s.max || p.value == s.max && step < s.maxStep {
			s.max, s.maxStep = p.value, step
		}
	}
	return s
}

// storedRows reads the rows of series id.
func storedRows(t testing.TB, db *sql.DB, id int64) map[int64]point {
	t.Helper()
	rows, err := db.Query(`SELECT step, epoch, value FROM metrics WHERE series_id = ?`, id)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[int64]point{}
	for rows.Next() {
		var step int64
		var epoch float64
		var v sql.NullFloat64
		if err := rows.Scan(&step, &epoch, &v); err != nil {
			t.Fatal(err)
		}
		if _, dup := out[step]; dup {
			t.Errorf("series %d: step %d stored twice", id, step)
		}
		out[step] = point{epoch, orNaN(v)}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func seriesIDOf(t testing.TB, db *sql.DB, run int64, key string) int64 {
	t.Helper()
	var id int64
	if err := db.QueryRow(`SELECT id FROM series WHERE run_id = ? AND key = ?`, run, key).Scan(&id); err != nil {
		t.Fatalf("series %s of run %d: %v", key, run, err)
	}
	return id
}

// TestResumeReplaces is the kill -9 + resume sequence: the second attempt
// restarts from a checkpoint and logs steps the first one already
// committed. Each step must be stored once with the second attempt's
// value, and the summaries must be those of the remaining rows, even when
// the replaced rows held the series' minimum or maximum.
func TestResumeReplaces(t *testing.T) {
	db, _ := openTemp(t)
	z := rundb.Ctx("tensor", "z")
	r, err := db.CreateRun(ctx, rundb.RunSpec{Name: "resumed"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]map[int64]point{"loss": {}, "acc": {}}
	log := func(r *rundb.Run, step int64, loss, acc float64) {
		t.Helper()
		ep := float64(step) / 4
		if err := r.Log(step, ep, rundb.Metric{Key: "loss", Value: loss}, rundb.Metric{Key: "acc", Context: z, Value: acc}); err != nil {
			t.Fatal(err)
		}
		want["loss"][step], want["acc"][step] = point{ep, loss}, point{ep, acc}
	}
	// First attempt: steps 0-9; step 7 holds the minimum loss and step 8
	// the maximum accuracy. Two batches.
	for s := range int64(10) {
		loss, acc := 1/float64(s+1), float64(s)/20
		switch s {
		case 7:
			loss = -5
		case 8:
			acc = 0.99
		}
		log(r, s, loss, acc)
		if s == 4 {
			if err := r.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := r.LogEvaluation(ctx, rundb.Evaluation{Protocol: "knn", K: 20, Temperature: 0.1, Step: 8, Epoch: 2, Top1: 0.3, Top5: math.NaN()}); err != nil {
		t.Fatal(err)
	}
	if err := r.LogEvaluation(ctx, rundb.Evaluation{Protocol: "linear", Step: 8, Epoch: 2, Top1: 0.35, Top5: 0.8}); err != nil {
		t.Fatal(err)
	}
	if err := r.LogArray(ctx, "spectrum", z, 8, 2, []int{2}, []float32{1, 2}); err != nil {
		t.Fatal(err)
	}
	// kill -9 in effect: the run never finishes; a resume finds it KILLED
	// or CRASHED. Finish(KILLED) keeps the test in one process.
	if err := r.Finish(rundb.StatusKilled, nil); err != nil {
		t.Fatal(err)
	}

	r2, err := db.ResumeRun(ctx, r.ID())
	if err != nil {
		t.Fatal(err)
	}
	// Second attempt from the checkpoint at step 6: steps 6-9 again with
	// other values (the old minimum and maximum are gone), then 10-13.
	// Step 12 is logged twice in one batch: the later value wins.
	for s := int64(6); s < 14; s++ {
		log(r2, s, 2+float64(s), 0.5)
		if s == 12 {
			log(r2, s, 3, 0.25)
		}
		if s == 9 {
			if err := r2.Flush(); err != nil {
				t.Fatal(err)
			}
			checkSeries(t, db.SQL(), r.ID(), want)
		}
	}
	if err := r2.LogEvaluation(ctx, rundb.Evaluation{Protocol: "knn", K: 20, Temperature: 0.1, Step: 8, Epoch: 2, Top1: 0.4, Top5: math.NaN()}); err != nil {
		t.Fatal(err)
	}
	if err := r2.LogEvaluation(ctx, rundb.Evaluation{Protocol: "linear", Step: 8, Epoch: 2, Top1: 0.45, Top5: 0.8}); err != nil {
		t.Fatal(err)
	}
	if err := r2.LogEvaluation(ctx, rundb.Evaluation{Protocol: "knn", K: 20, Temperature: 0.1, Step: 13, Epoch: 3, Top1: 0.5, Top5: math.NaN()}); err != nil {
		t.Fatal(err)
	}
	if err := r2.LogArray(ctx, "spectrum", z, 8, 2, []int{3}, []float32{3, 4, 5}); err != nil {
		t.Fatal(err)
	}
	if err := r2.Finish(rundb.StatusFinished, nil); err != nil {
		t.Fatal(err)
	}

	checkSeries(t, db.SQL(), r.ID(), want)
	if s := storedSummary(t, db.SQL(), seriesIDOf(t, db.SQL(), r.ID(), "loss")); s.min != 1.0/6 || s.minStep != 5 {
		t.Errorf("loss minimum %v at %d, want 1/6 at 5 (the replaced -5 at step 7 is gone)", s.min, s.minStep)
	}

	d, err := db.ShowRun(ctx, "resumed")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range d.Evaluations {
		got = append(got, fmt.Sprintf("%s@%d=%v", e.Protocol, e.Step, e.Top1))
	}
	if g := strings.Join(got, " "); g != "knn@8=0.4 linear@8=0.45 knn@13=0.5" {
		t.Errorf("evaluations %s, want knn@8=0.4 linear@8=0.45 knn@13=0.5 (step 8 replaced)", g)
	}
	arrs, err := db.Arrays(ctx, r.ID(), "spectrum")
	if err != nil || len(arrs) != 1 || len(arrs[0].Data.([]float32)) != 3 {
		t.Errorf("arrays after resume: %+v %v, want the second attempt's only", arrs, err)
	}
	var knn float64
	if err := db.SQL().QueryRow(`SELECT knn_top1 FROM run_final WHERE run_id = ?`, r.ID()).Scan(&knn); err != nil || knn != 0.5 {
		t.Errorf("run_final knn_top1 = %v %v, want 0.5", knn, err)
	}
	integrity(t, db.SQL())
}

// checkSeries compares the rows and summaries of a run's series with the
// rows they should hold.
func checkSeries(t *testing.T, db *sql.DB, run int64, want map[string]map[int64]point) {
	t.Helper()
	for key, rows := range want {
		id := seriesIDOf(t, db, run, key)
		got := storedRows(t, db, id)
		if len(got) != len(rows) {
			t.Errorf("%s: %d rows, want %d", key, len(got), len(rows))
		}
		for step, p := range rows {
			if g, ok := got[step]; !ok || !eqNaN(g.value, p.value) || g.epoch != p.epoch {
				t.Errorf("%s step %d: %+v (stored %v), want %+v", key, step, g, ok, p)
			}
		}
		if s, w := storedSummary(t, db, id), wantSummary(rows); !s.equal(w) {
			t.Errorf("%s summary\n got %v\nwant %v", key, s, w)
		}
	}
}

// TestSummariesUnderReplacement logs random sequences with steps logged
// again (within a batch and across batches), out of order and NaN values,
// and checks after each flush that every summary equals the one computed
// from the stored rows, and that the rows are the last logged values.
func TestSummariesUnderReplacement(t *testing.T) {
	db, _ := openTemp(t)
	rng := rand.New(rand.NewPCG(1, 2))
	r, err := db.CreateRun(ctx, rundb.RunSpec{Name: "random"})
	if err != nil {
		t.Fatal(err)
	}
	r.SetFlushPolicy(1<<30, time.Hour)
	keys := []string{"a", "b", "c"}
	want := map[string]map[int64]point{}
	for _, k := range keys {
		want[k] = map[int64]point{}
	}
	step := int64(0)
	for round := range 60 {
		for range rng.IntN(20) + 1 {
			switch rng.IntN(6) {
			case 0: // back to an earlier step, as a resume does
				step = max(0, step-int64(rng.IntN(8)))
			case 1: // the same step again
			default:
				step++
			}
			k := keys[rng.IntN(len(keys))]
			v := math.Round(rng.NormFloat64()*100) / 100 // ties happen
			if rng.IntN(10) == 0 {
				v = math.NaN()
			}
			ep := float64(round)
			if err := r.Log(step, ep, rundb.Metric{Key: k, Value: v}); err != nil {
				t.Fatal(err)
			}
			want[k][step] = point{ep, v}
		}
		if err := r.Flush(); err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if len(want[k]) == 0 {
				continue
			}
			id := seriesIDOf(t, db.SQL(), r.ID(), k)
			got := storedRows(t, db.SQL(), id)
			for s, p := range want[k] {
				if g := got[s]; !eqNaN(g.value, p.value) || len(got) != len(want[k]) {
					t.Fatalf("round %d %s step %d: stored %v (%d rows), want %v (%d rows)", round, k, s, g, len(got), p, len(want[k]))
				}
			}
			if s, w := storedSummary(t, db.SQL(), id), wantSummary(want[k]); !s.equal(w) {
				t.Fatalf("round %d %s summary\n got %v\nwant %v", round, k, s, w)
			}
		}
	}
	if err := r.Finish(rundb.StatusFinished, nil); err != nil {
		t.Fatal(err)
	}
}

// TestMigrateFromV1 opens a version-1 file holding what version 1 wrote
// for a resumed run (duplicate metric rows with summaries counting both,
// duplicate arrays and evaluations) and checks that migration keeps the
// latest row of each, recomputes the summaries and that the migrated file
// takes further writes with replacement.
func TestMigrateFromV1(t *testing.T) {
	if rundb.SchemaVersion != len(rundb.Migrations()) {
		t.Fatalf("SchemaVersion %d, %d migrations", rundb.SchemaVersion, len(rundb.Migrations()))
	}
	path := filepath.Join(t.TempDir(), "v1.db")
	raw, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetMaxOpenConns(1)
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := raw.Exec(q, args...); err != nil {
			t.Fatalf("%.60s: %v", q, err)
		}
	}
	exec(rundb.Migrations()[0])
	exec("PRAGMA user_version = 1")
	// Run 1 crashed after step 5 and was resumed from a checkpoint at step
	// 3: steps 3-5 twice, the second attempt's values differ at step 4
	// (the old maximum). Version 1 counted 9 rows. Run 2 has no duplicates.
	exec(`INSERT INTO runs (id, uuid, name, status, start_time, attempt) VALUES (1, 'u1', 'resumed', 'FINISHED', 1, 2),
		(2, 'u2', 'plain', 'FINISHED', 1, 1)`)
	exec(`INSERT INTO series (id, run_id, key, goal, count, last_value, last_step, last_epoch, last_time,
		min_value, min_step, max_value, max_step) VALUES
		(1, 1, 'loss', 'min', 9, 0.1, 5, 5, 9, 0.1, 5, 50, 4),
		(2, 2, 'loss', 'min', 2, 0.5, 1, 1, 2, 0.5, 1, 1, 0)`)
	first := map[int64]float64{0: 1, 1: 0.9, 2: 0.8, 3: 0.7, 4: 50, 5: 0.1}
	for s := int64(0); s < 6; s++ {
		exec(`INSERT INTO metrics (series_id, step, epoch, value, time) VALUES (1, ?, ?, ?, ?)`, s, s, first[s], s)
	}
	second := map[int64]float64{3: 0.7, 4: 0.6, 5: 0.1}
	for s := int64(3); s < 6; s++ {
		exec(`INSERT INTO metrics (series_id, step, epoch, value, time) VALUES (1, ?, ?, ?, ?)`, s, s, second[s], 100+s)
	}
	exec(`INSERT INTO metrics (series_id, step, epoch, value, time) VALUES (2, 0, 0, 1, 1), (2, 1, 1, 0.5, 2)`)
	exec(`INSERT INTO evaluations (run_id, protocol, k, temperature, step, epoch, top1, time) VALUES
		(1, 'knn', 20, 0.1, 4, 4, 0.2, 1), (1, 'knn', 20, 0.1, 4, 4, 0.3, 2), (1, 'linear', NULL, NULL, 4, 4, 0.4, 1),
		(1, 'linear', NULL, NULL, 4, 4, 0.45, 2), (1, 'knn', 20, 0.1, 6, 6, 0.5, 3)`)
	exec(`INSERT INTO arrays (run_id, key, step, epoch, dtype, shape, data, time) VALUES
		(1, 'spectrum', 4, 4, 'float32', '[1]', x'0000803f', 1), (1, 'spectrum', 4, 4, 'float32', '[1]', x'00000040', 2)`)
	raw.Close()

	db := openMigrated(t, path)
	want1 := map[int64]point{}
	for s, v := range first {
		want1[s] = point{float64(s), v}
	}
	for s, v := range second {
		want1[s] = point{float64(s), v}
	}
	if got := storedRows(t, db.SQL(), 1); len(got) != 6 || got[4].value != 0.6 {
		t.Errorf("run 1 rows after migration: %v, want 6 with step 4 = 0.6", got)
	}
	if s, w := storedSummary(t, db.SQL(), 1), wantSummary(want1); !s.equal(w) || s.max != 1 {
		t.Errorf("run 1 summary\n got %v\nwant %v", s, w)
	}
	if s := storedSummary(t, db.SQL(), 2); s.count != 2 || s.last != 0.5 || s.max != 1 {
		t.Errorf("run 2 summary changed: %v", s)
	}
	if n := count(t, db.SQL(), "SELECT count(*) FROM evaluations"); n != 3 {
		t.Errorf("%d evaluations, want 3", n)
	}
	if n := count(t, db.SQL(), "SELECT count(*) FROM evaluations WHERE (protocol, top1) IN (VALUES ('knn', 0.3), ('linear', 0.45))"); n != 2 {
		t.Errorf("the latest evaluations were not kept")
	}
	if n := count(t, db.SQL(), "SELECT count(*) FROM arrays WHERE data = x'00000040'"); n != 1 || count(t, db.SQL(), "SELECT count(*) FROM arrays") != 1 {
		t.Errorf("arrays: the latest one was not kept alone")
	}
	var view string
	if err := db.SQL().QueryRow(`SELECT sql FROM sqlite_master WHERE name = 'run_metrics'`).Scan(&view); err != nil ||
		!strings.Contains(view, "IN ('z', 'p')") {
		t.Errorf("run_metrics is not version 2's view (%v)", err)
	}
	var best float64
	if err := db.SQL().QueryRow(`SELECT best_value FROM summaries WHERE run_id = 1`).Scan(&best); err != nil || best != 0.1 {
		t.Errorf("best loss %v %v, want 0.1", best, err)
	}

	// The migrated file replaces rows from now on.
	r, err := db.ResumeRun(ctx, 2)
	if err == nil {
		t.Fatal("resumed a FINISHED run")
	}
	if _, err := db.SQL().Exec(`UPDATE runs SET status = 'KILLED' WHERE id = 2`); err != nil {
		t.Fatal(err)
	}
	if r, err = db.ResumeRun(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if err := r.Log(1, 1, rundb.Metric{Key: "loss", Value: 0.25}); err != nil {
		t.Fatal(err)
	}
	if err := r.Finish(rundb.StatusFinished, nil); err != nil {
		t.Fatal(err)
	}
	if s := storedSummary(t, db.SQL(), 2); s.count != 2 || s.last != 0.25 || s.min != 0.25 {
		t.Errorf("run 2 after a replacing write: %v", s)
	}
}

// openMigrated opens path for writing (which migrates it) and checks that
// it is at this package's schema version and passes an integrity check.
func openMigrated(t *testing.T, path string) *rundb.DB {
	t.Helper()
	db, err := rundb.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if v := count(t, db.SQL(), "PRAGMA user_version"); v != int64(rundb.SchemaVersion) {
		t.Fatalf("user_version %d after Open, want %d", v, rundb.SchemaVersion)
	}
	integrity(t, db.SQL())
	return db
}
