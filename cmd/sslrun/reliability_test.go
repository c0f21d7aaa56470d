//go:build linux

package main

import (
	"bytes"
	"database/sql"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sslrun/sslrun/core/rundb"
)

// The reliability tests of docs/rundb.md, end to end: the real sslrun
// binary, built once, trains a small pipeline on MNIST while the tests run
// a second writer next to it, kill -9 it mid-run, fill its disk or make its
// database read-only, and then read the run database with core/rundb.

// relPipeline trains SimSiam on 16k MNIST images for 5 epochs of 256
// steps (about half a second each on the 2-core CI machine) and
// checkpoints every epoch. The decompose analyzer runs every 4 steps, so
// that the run logs about 2700 metric rows an epoch: the run database
// commits a batch every 4096 rows, about every 1.5 epochs whatever the
// speed of the machine (and every 2 s), and a run sees several commits
// between checkpoints.
const relPipeline = `
variable "epochs" {
  type    = number
  default = 5
}

variable "database" {
  type    = string
  default = "sslrun.db"
}

variable "checkpoints" {
  type    = string
  default = "checkpoints"
}

run {
  name       = "rel"
  seed       = 3
  epochs     = var.epochs
  batch_size = 64
  database   = var.database
}

dataset "train" {
  source = "mnist"
  limit  = 16384
}

dataset "memory" {
  source = "mnist"
  limit  = 1024
}

dataset "test" {
  source = "mnist"
  split  = "test"
  limit  = 256
}

augment {
  view {
    random_resized_crop {
      size  = [28]
      scale = [0.3, 1.0]
    }
    normalize {
      mean = [0.1307]
      std  = [0.3081]
    }
  }
}

encoder {
  backbone = "mlp"
  widths   = [64]
  projector {
    dims    = [32, 32]
    last_bn = "plain"
  }
  predictor {
    dims = [8, 32]
  }
}

loss "simsiam" {}

optimizer {
  name               = "sgd"
  lr                 = 0.05
  lr_scaling         = "linear"
  momentum           = 0.9
  weight_decay       = 5e-4
  predictor_fixed_lr = true
}

analyzer "decompose" {
  every   = 4
  tensors = ["z", "p"]
}

evaluate "knn" {
  train = dataset.memory
  test  = dataset.test
  k     = 20
}

checkpoint {
  every_epochs = 1
  keep         = 1
  dir          = var.checkpoints
}
`

// relSteps is the number of optimizer steps of relPipeline's run.
const relSteps = 5 * 16384 / 64

// relEnv is a built sslrun binary and a directory holding relPipeline.
type relEnv struct {
	bin, dir, pipeline, db string
}

// TestReliability builds sslrun once and runs the end-to-end reliability
// checks as subtests, in order: the runs of ConcurrentWriters are the
// uninterrupted reference of Kill9Resume.
func TestReliability(t *testing.T) {
	if testing.Short() {
		t.Skip("builds sslrun and trains several small runs; skipped with -short")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("the go tool is not on PATH: %v", err)
	}
	e := relEnv{dir: t.TempDir()}
	e.bin = filepath.Join(t.TempDir(), "sslrun")
	// No DWARF and no VCS stamp: linking is most of the build's time on
	// the shared CI machine, and the code is the same.
	build := exec.Command(goTool, "build", "-ldflags=-w", "-buildvcs=false", "-o", e.bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	e.pipeline = filepath.Join(e.dir, "rel.hcl")
	if err := os.WriteFile(e.pipeline, []byte(relPipeline), 0o644); err != nil {
		t.Fatal(err)
	}
	e.db = filepath.Join(e.dir, "sslrun.db")

	var reference int64
	t.Run("ConcurrentWriters", func(t *testing.T) { reference = testConcurrentWriters(t, e) })
	t.Run("Kill9Resume", func(t *testing.T) { testKill9Resume(t, e, reference) })
	t.Run("Compare", func(t *testing.T) { testCompare(t, e) })
	t.Run("FullDisk", func(t *testing.T) { testFullDisk(t, e) })
	t.Run("ReadOnlyDatabase", func(t *testing.T) { testReadOnlyDatabase(t, e) })
}

// start starts sslrun in e.dir with JSON logs; its output goes to buffers.
func (e relEnv) start(t *testing.T, args ...string) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(e.bin, append([]string{"--log-json"}, args...)...)
	cmd.Dir = e.dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, &out, &errb
}

// wait waits for cmd at most two minutes (then kills it) and returns its
// exit code.
func wait(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		<-done
		t.Fatalf("%v did not exit within 2 minutes", cmd.Args)
		return -1
	}
}

// run runs sslrun to completion.
func (e relEnv) run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd, out, errb := e.start(t, args...)
	code = wait(t, cmd)
	return code, out.String(), errb.String()
}

// openRO opens a run database read-only, as sslrun sql does; the writer
// is never blocked by it.
func openRO(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := rundb.OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db.SQL()
}

// rows returns a run's metric rows as "key context step" -> "epoch value"
// (exact decimal forms; NULL for NaN).
func rows(t *testing.T, db *sql.DB, run int64) map[string]string {
	t.Helper()
	rs, err := db.Query(`SELECT s.key, s.context, m.step, m.epoch, m.value FROM metrics m
		JOIN series s ON s.id = m.series_id WHERE s.run_id = ?`, run)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	out := map[string]string{}
	for rs.Next() {
		var key, c string
		var step int64
		var epoch float64
		var v sql.NullFloat64
		if err := rs.Scan(&key, &c, &step, &epoch, &v); err != nil {
			t.Fatal(err)
		}
		val := "NULL"
		if v.Valid {
			val = strconv.FormatFloat(v.Float64, 'g', -1, 64)
		}
		k := fmt.Sprintf("%s %s %d", key, c, step)
		if _, dup := out[k]; dup {
			t.Errorf("run %d: %s stored twice", run, k)
		}
		out[k] = strconv.FormatFloat(epoch, 'g', -1, 64) + " " + val
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// strings1 returns the rows of a one-column query as strings.
func strings1(t *testing.T, db *sql.DB, q string, args ...any) []string {
	t.Helper()
	rs, err := db.Query(q, args...)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rs.Close()
	var out []string
	for rs.Next() {
		var s sql.NullString
		if err := rs.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s.String)
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// evaluationsAndArrays lists a run's evaluations and analyzer arrays, in a
// canonical order.
func evaluationsAndArrays(t *testing.T, db *sql.DB, run int64) []string {
	t.Helper()
	ev := strings1(t, db, `SELECT protocol || ' ' || step || ' ' || epoch || ' ' || quote(top1) || ' ' || quote(top5) || ' ' || options
		FROM evaluations WHERE run_id = ? ORDER BY protocol, step, options`, run)
	ar := strings1(t, db, `SELECT key || ' ' || context || ' ' || step || ' ' || shape || ' ' || hex(data)
		FROM arrays WHERE run_id = ? ORDER BY key, context, step`, run)
	return append(ev, ar...)
}

// checkOnce checks that every (key, context, step) of a run is stored once
// and that the summaries count exactly the stored rows.
func checkOnce(t *testing.T, db *sql.DB, run int64) {
	t.Helper()
	var dups, badCounts int64
	if err := db.QueryRow(`SELECT count(*) FROM (SELECT m.series_id, m.step FROM metrics m JOIN series s ON s.id = m.series_id
		WHERE s.run_id = ? GROUP BY m.series_id, m.step HAVING count(*) > 1)`, run).Scan(&dups); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(`SELECT count(*) FROM series s WHERE s.run_id = ?
		AND s.count != (SELECT count(*) FROM metrics m WHERE m.series_id = s.id)`, run).Scan(&badCounts); err != nil {
		t.Fatal(err)
	}
	if dups != 0 || badCounts != 0 {
		t.Errorf("run %d: %d (series, step) pairs stored more than once, %d series whose summary count is wrong", run, dups, badCounts)
	}
	steps := strings1(t, db, `SELECT count(DISTINCT m.step) || ' ' || min(m.step) || ' ' || max(m.step) FROM metrics m
		JOIN series s ON s.id = m.series_id WHERE s.run_id = ? AND s.key = 'train/loss'`, run)
	if want := fmt.Sprintf("%d 0 %d", relSteps, relSteps-1); len(steps) != 1 || steps[0] != want {
		t.Errorf("run %d: train/loss steps (count min max) %v, want %s", run, steps, want)
	}
}

func integrityOK(t *testing.T, db *sql.DB) {
	t.Helper()
	var res string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&res); err != nil || res != "ok" {
		t.Errorf("integrity_check: %q %v", res, err)
	}
}

// sameRows reports the first differences between two runs' rows.
func sameRows(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	n := 0
	for k, w := range want {
		if g, ok := got[k]; !ok || g != w {
			if n++; n <= 5 {
				t.Errorf("%s: %s = %q (stored: %v), want %q", what, k, g, ok, w)
			}
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			if n++; n <= 5 {
				t.Errorf("%s: extra row %s", what, k)
			}
		}
	}
	if n > 5 {
		t.Errorf("%s: %d differences in all", what, n)
	}
}

// runOfPID returns the id of the run a process created, waiting for it.
func runOfPID(db *sql.DB, pid int) (int64, error) {
	var id int64
	err := db.QueryRow(`SELECT id FROM runs WHERE pid = ? ORDER BY id DESC LIMIT 1`, pid).Scan(&id)
	return id, err
}

// testConcurrentWriters runs two `sslrun run` processes on one database at
// once: both finish, no "database is locked", and both runs (same seed) hold
// every step's metrics exactly once, the same in both. It returns one of
// them as the uninterrupted reference run.
func testConcurrentWriters(t *testing.T, e relEnv) int64 {
	c1, out1, err1 := e.start(t, "run", e.pipeline)
	c2, out2, err2 := e.start(t, "run", e.pipeline)
	code1, code2 := wait(t, c1), wait(t, c2)
	for i, r := range []struct {
		code        int
		out, stderr string
	}{{code1, out1.String(), err1.String()}, {code2, out2.String(), err2.String()}} {
		if r.code != exitOK || !strings.Contains(r.out, "FINISHED") {
			t.Errorf("writer %d: exit %d\n%s\n%s", i+1, r.code, r.out, tail(r.stderr, 20))
		}
		if s := strings.ToLower(r.stderr); strings.Contains(s, "locked") || strings.Contains(s, "busy") {
			t.Errorf("writer %d reports a locked database:\n%s", i+1, tail(r.stderr, 20))
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	db := openRO(t, e.db)
	ids := make([]int64, 2)
	var spans [2][2]int64
	for i, c := range []*exec.Cmd{c1, c2} {
		id, err := runOfPID(db, c.Process.Pid)
		if err != nil {
			t.Fatalf("no run of writer %d (pid %d): %v", i+1, c.Process.Pid, err)
		}
		var status string
		if err := db.QueryRow(`SELECT status, start_time, end_time FROM runs WHERE id = ?`, id).Scan(&status, &spans[i][0], &spans[i][1]); err != nil {
			t.Fatal(err)
		}
		if status != "FINISHED" {
			t.Errorf("run %d is %s, want FINISHED", id, status)
		}
		ids[i] = id
		checkOnce(t, db, id)
	}
	if spans[0][0] >= spans[1][1] || spans[1][0] >= spans[0][1] {
		t.Errorf("the two runs did not overlap in time: %v", spans)
	}
	r1, r2 := rows(t, db, ids[0]), rows(t, db, ids[1])
	sameRows(t, "second writer vs first", r2, r1)
	if a, b := evaluationsAndArrays(t, db, ids[0]), evaluationsAndArrays(t, db, ids[1]); !slices.Equal(a, b) || len(a) == 0 {
		t.Errorf("evaluations and arrays differ between the writers (%d vs %d)", len(a), len(b))
	}
	integrityOK(t, db)
	t.Logf("runs %d and %d: %d metric rows each", ids[0], ids[1], len(r1))
	return ids[0]
}

// runState is what the tests read of a run directory's run.json.
type runState struct {
	Status     string
	Checkpoint string
	Step       int64
}

func readRunState(t *testing.T, dir string) runState {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "run.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st runState
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("run.json: %v", err)
	}
	return st
}

// lastCommitted returns the largest committed train/loss step of a run, or
// -1.
func lastCommitted(t *testing.T, db *sql.DB, run int64) int64 {
	t.Helper()
	var m sql.NullInt64
	if err := db.QueryRow(`SELECT max(m.step) FROM metrics m JOIN series s ON s.id = m.series_id
		WHERE s.run_id = ? AND s.key = 'train/loss'`, run).Scan(&m); err != nil {
		t.Fatal(err)
	}
	if !m.Valid {
		return -1
	}
	return m.Int64
}

// testKill9Resume kills `sslrun run` with SIGKILL once the database holds
// steps past its last checkpoint, then checks that the file is intact and
// lost nothing committed, that no plugin child outlives the killed
// process, that the next sslrun start shows the run CRASHED, and that
// `sslrun resume` finishes it with each (key, context, step) stored once
// and the same metrics as an uninterrupted run.
func testKill9Resume(t *testing.T, e relEnv, reference int64) {
	if reference == 0 {
		code, out, stderr := e.run(t, "run", e.pipeline)
		if code != exitOK {
			t.Fatalf("reference run: exit %d\n%s\n%s", code, out, tail(stderr, 20))
		}
		db := openRO(t, e.db)
		if err := db.QueryRow(`SELECT max(id) FROM runs WHERE status = 'FINISHED'`).Scan(&reference); err != nil {
			t.Fatal(err)
		}
	}
	victim, _, stderr := e.start(t, "run", e.pipeline)
	pid := victim.Process.Pid
	exited := watchExit(pid)

	// Wait until a commit holds a step past the latest checkpoint (M >= S:
	// the resumed attempt will log steps the database already has).
	var (
		db       *sql.DB
		run      int64
		runDir   string
		snapshot map[string]string
		children []int
	)
	deadline := time.Now().Add(90 * time.Second)
	for {
		select {
		case <-exited:
			wait(t, victim)
			t.Fatalf("sslrun exited before it could be killed (the run is too short for this machine?)\n%s", tail(stderr.String(), 20))
		default:
		}
		if time.Now().After(deadline) {
			victim.Process.Kill()
			wait(t, victim)
			t.Fatalf("no commit past a checkpoint within 90 s\n%s", tail(stderr.String(), 20))
		}
		time.Sleep(20 * time.Millisecond)
		if db == nil {
			if _, err := os.Stat(e.db); err != nil {
				continue
			}
			db = openRO(t, e.db)
		}
		if run == 0 {
			id, err := runOfPID(db, pid)
			if err != nil {
				continue
			}
			run = id
			if err := db.QueryRow(`SELECT value FROM tags WHERE run_id = ? AND key = 'run_dir'`, run).Scan(&runDir); err != nil {
				t.Fatalf("run %d has no run_dir tag: %v", run, err)
			}
		}
		m := lastCommitted(t, db, run)
		if _, err := os.Stat(filepath.Join(runDir, "run.json")); err != nil {
			continue // the run's row is committed before its state file is first written
		}
		st := readRunState(t, runDir) // after m: S is at least as recent
		if st.Checkpoint == "" || m < st.Step {
			continue
		}
		snapshot = rows(t, db, run)
		children = descendants(pid)
		break
	}
	if err := victim.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if code := wait(t, victim); code != -1 {
		t.Errorf("killed sslrun exited with %d", code)
	}

	// No plugin subprocess may outlive its host for more than a few
	// seconds (go-plugin children exit when the host is gone).
	if left := waitGone(children, e, 5*time.Second); len(left) > 0 {
		t.Errorf("processes of the killed sslrun (pid %d) still alive 5 s after kill -9 (the runner's plugin children must exit with their host):\n%s",
			pid, strings.Join(left, "\n"))
	}

	// The file opens cleanly and holds everything committed before the kill.
	after := openRO(t, e.db)
	integrityOK(t, after)
	var status string
	if err := after.QueryRow(`SELECT status FROM runs WHERE id = ?`, run).Scan(&status); err != nil || status != "RUNNING" {
		t.Errorf("before any sslrun start the file says %q (%v), want RUNNING", status, err)
	}
	got := rows(t, after, run)
	lost := 0
	for k, v := range snapshot {
		if got[k] != v {
			lost++
		}
	}
	if lost > 0 || len(snapshot) == 0 {
		t.Errorf("%d of %d rows committed before the kill are gone or changed", lost, len(snapshot))
	}
	killedAt := lastCommitted(t, after, run)
	ckpt := readRunState(t, runDir)
	overlap := killedAt >= ckpt.Step
	t.Logf("killed run %d: %d rows committed (train/loss up to step %d), checkpoint %s at step %d",
		run, len(got), killedAt, ckpt.Checkpoint, ckpt.Step)
	if !overlap {
		// A checkpoint was written between the last poll and the kill.
		t.Logf("the kill landed right after a checkpoint: resume will not log steps the database has")
	}

	// The next sslrun start shows the run CRASHED.
	code, out, errOut := e.run(t, "runs", "ls", "-f", "csv", "--db", e.db)
	if code != exitOK {
		t.Fatalf("runs ls: exit %d\n%s", code, errOut)
	}
	if st := csvStatus(t, out, run); st != "CRASHED" {
		t.Errorf("runs ls shows run %d as %q, want CRASHED:\n%s", run, st, out)
	}

	// Resume continues it to FINISHED.
	code, out, errOut = e.run(t, "resume", runDir)
	if code != exitOK || !strings.Contains(out, "FINISHED") {
		t.Fatalf("resume: exit %d\n%s\n%s", code, out, tail(errOut, 20))
	}
	final := openRO(t, e.db)
	var attempt int
	if err := final.QueryRow(`SELECT status, attempt FROM runs WHERE id = ?`, run).Scan(&status, &attempt); err != nil {
		t.Fatal(err)
	}
	attempts := strings1(t, final, `SELECT status FROM run_attempts WHERE run_id = ? ORDER BY attempt`, run)
	if status != "FINISHED" || attempt != 2 || strings.Join(attempts, ",") != "CRASHED,FINISHED" {
		t.Errorf("after resume: %s, attempt %d, attempts %v; want FINISHED, 2, [CRASHED FINISHED]", status, attempt, attempts)
	}
	checkOnce(t, final, run)
	resumed := rows(t, final, run)
	sameRows(t, "resumed run vs uninterrupted run", resumed, rows(t, final, reference))
	for k, v := range snapshot {
		if resumed[k] != v {
			t.Errorf("row %s committed before the kill: %q after resume, was %q", k, resumed[k], v)
			break
		}
	}
	if a, b := evaluationsAndArrays(t, final, run), evaluationsAndArrays(t, final, reference); !slices.Equal(a, b) {
		t.Errorf("evaluations and arrays of the resumed run differ from the uninterrupted run's (%d vs %d)", len(a), len(b))
	}
	var f1, f2 string
	q := `SELECT quote(loss) || quote(knn_top1) || quote(m_o) || quote(std_sqrt_d) || quote(eff_rank) || quote(collapsed) FROM run_final WHERE run_id = ?`
	if err := errors.Join(final.QueryRow(q, run).Scan(&f1), final.QueryRow(q, reference).Scan(&f2)); err != nil || f1 != f2 {
		t.Errorf("run_final: resumed %s, uninterrupted %s (%v)", f1, f2, err)
	}
	integrityOK(t, final)
}

// watchExit returns a channel closed when process pid has exited (it may
// not be reaped yet: a zombie has exited).
func watchExit(pid int) <-chan struct{} {
	exited := make(chan struct{})
	go func() {
		for {
			if p, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err != nil || statField(string(p), 0) == "Z" {
				close(exited)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	return exited
}

// testCompare reads the runs of the subtests before it with `sslrun
// compare`: one method/variant row, every column of the unified table
// filled, and a standard deviation of 0 over its runs, which are the same
// seed (the resumed run included).
func testCompare(t *testing.T, e relEnv) {
	if _, err := os.Stat(e.db); err != nil {
		t.Skip("no runs: the subtests before this one did not run")
	}
	code, out, stderr := e.run(t, "compare", "-f", "json", "--db", e.db)
	if code != exitOK {
		t.Fatalf("compare: exit %d\n%s", code, stderr)
	}
	var rows []map[string]any
	if err := json.Unmarshal([]byte(out), &rows); err != nil || len(rows) != 1 {
		t.Fatalf("compare -f json: %v, %d rows, want 1:\n%s", err, len(rows), out)
	}
	r := rows[0]
	n, _ := r["runs"].(float64)
	if r["method"] != "simsiam" || r["collapsed"] != "no" || n < 1 {
		t.Errorf("compare row: method %v, collapsed %v, runs %v; want simsiam, no, >= 1", r["method"], r["collapsed"], r["runs"])
	}
	for _, col := range []string{"knn_top1", "m_o", "std_sqrt_d", "eff_rank", "grad_decenter", "grad_decorr", "loss"} {
		mean, ok := r[col].(float64)
		if !ok {
			t.Errorf("compare: %s = %v, want a number", col, r[col])
		}
		// Equal values: the standard deviation is 0 up to the rounding of
		// the mean.
		if std, ok := r[col+"_std"].(float64); n >= 2 && (!ok || std > 1e-9*(1+math.Abs(mean))) {
			t.Errorf("compare: %s_std = %v over %v runs of one seed, want 0", col, r[col+"_std"], n)
		}
	}
	if r["linear_top1"] != nil {
		t.Errorf("compare: linear_top1 = %v, but the pipeline has no linear probe", r["linear_top1"])
	}
	code, out, stderr = e.run(t, "compare", "--db", e.db)
	if code != exitOK || (n >= 2 && !strings.Contains(out, "± 0")) {
		t.Errorf("compare: exit %d, want mean ± 0 cells:\n%s%s", code, out, stderr)
	}
	t.Logf("compare:\n%s", out)
}

// csvStatus returns the status column of run id in `runs ls -f csv`.
func csvStatus(t *testing.T, out string, id int64) string {
	t.Helper()
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil || len(recs) == 0 {
		t.Fatalf("runs ls CSV: %v\n%s", err, out)
	}
	col := slices.Index(recs[0], "status")
	for _, r := range recs[1:] {
		if r[0] == strconv.FormatInt(id, 10) && col >= 0 {
			return r[col]
		}
	}
	return ""
}

// statField returns field i (0: state) after the command name of a
// /proc/<pid>/stat line.
func statField(stat string, i int) string {
	j := strings.LastIndexByte(stat, ')')
	if j < 0 {
		return ""
	}
	f := strings.Fields(stat[j+1:])
	if i < len(f) {
		return f[i]
	}
	return ""
}

// descendants returns the processes below pid (children, grandchildren).
func descendants(pid int) []int {
	parent := map[int]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		if pp, err := strconv.Atoi(statField(string(b), 1)); err == nil {
			parent[p] = pp
		}
	}
	var out []int
	frontier := []int{pid}
	for len(frontier) > 0 {
		var next []int
		for p, pp := range parent {
			if slices.Contains(frontier, pp) {
				out = append(out, p)
				next = append(next, p)
			}
		}
		frontier = next
	}
	return out
}

// waitGone waits until none of pids is alive (zombies count as gone) and
// no process runs the test's binary or has the test directory in its
// command line, and returns what is left after timeout.
func waitGone(pids []int, e relEnv, timeout time.Duration) []string {
	deadline := time.Now().Add(timeout)
	for {
		var left []string
		alive := func(p int) (string, bool) {
			stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
			if err != nil || statField(string(stat), 0) == "Z" {
				return "", false
			}
			cl, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p))
			return strings.ReplaceAll(strings.TrimRight(string(cl), "\x00"), "\x00", " "), true
		}
		for _, p := range pids {
			if cl, ok := alive(p); ok {
				left = append(left, fmt.Sprintf("pid %d (child of the killed process): %s", p, cl))
			}
		}
		ents, _ := os.ReadDir("/proc")
		for _, ent := range ents {
			p, err := strconv.Atoi(ent.Name())
			if err != nil || p == os.Getpid() || slices.Contains(pids, p) {
				continue
			}
			if cl, ok := alive(p); ok && (strings.Contains(cl, e.dir) || strings.Contains(cl, e.bin)) {
				left = append(left, fmt.Sprintf("pid %d: %s", p, cl))
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// mountTmpfs mounts a tmpfs of the given size on a new directory, or skips
// the test when this process may not mount (it needs root).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Skipf("cannot mount a tmpfs for a real full or read-only file system (needs root): %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// testFullDisk fills the file system of the run database while `sslrun run`
// trains: the run stops with an error naming the database and the full
// disk, sslrun exits (no hang, no panic), and once space is freed the file
// is intact, holds every row committed before, and the run is not left
// RUNNING.
func testFullDisk(t *testing.T, e relEnv) {
	mnt := mountTmpfs(t, "8m")
	path := filepath.Join(mnt, "runs.db")
	cmd, out, stderr := e.start(t, "run", e.pipeline, "-var", "database="+path,
		"-var", "checkpoints="+filepath.Join(e.dir, "full-checkpoints"))
	exited := watchExit(cmd.Process.Pid)
	var db *sql.DB
	var run int64
	var snapshot map[string]string
	deadline := time.Now().Add(90 * time.Second)
	for snapshot == nil {
		select {
		case <-exited:
			wait(t, cmd)
			t.Fatalf("sslrun exited before its first commit\n%s", tail(stderr.String(), 20))
		default:
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			wait(t, cmd)
			t.Fatalf("no committed metrics within 90 s\n%s", tail(stderr.String(), 20))
		}
		time.Sleep(20 * time.Millisecond)
		if db == nil {
			if _, err := os.Stat(path); err != nil {
				continue
			}
			db = openRO(t, path)
		}
		if run == 0 {
			id, err := runOfPID(db, cmd.Process.Pid)
			if err != nil {
				continue
			}
			run = id
		}
		if lastCommitted(t, db, run) >= 0 {
			snapshot = rows(t, db, run)
		}
	}
	filler := filepath.Join(mnt, "filler")
	if err := fill(filler); err != nil {
		t.Fatalf("fill %s: %v", mnt, err)
	}
	code := wait(t, cmd)
	errText := stderr.String()
	if code != exitFailed {
		t.Errorf("sslrun exited with %d on a full disk, want %d\n%s", code, exitFailed, tail(errText, 20))
	}
	if !strings.Contains(errText, "disk full") || !strings.Contains(errText, path) {
		t.Errorf("the error does not name the database and the full disk:\n%s", tail(errText, 20))
	}
	if strings.Contains(errText, "panic") || strings.Contains(errText, "goroutine ") {
		t.Errorf("sslrun panicked:\n%s", tail(errText, 40))
	}
	if !strings.Contains(out.String(), "FAILED") {
		t.Errorf("results table does not show the run FAILED:\n%s", out.String())
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	w, err := rundb.Open(path) // as the next sslrun start
	if err != nil {
		t.Fatalf("open after freeing space: %v", err)
	}
	defer w.Close()
	integrityOK(t, w.SQL())
	got := rows(t, w.SQL(), run)
	for k, v := range snapshot {
		if got[k] != v {
			t.Errorf("row %s committed before the disk filled is %q, was %q", k, got[k], v)
			break
		}
	}
	var status, msg string
	if err := w.SQL().QueryRow(`SELECT status, error FROM runs WHERE id = ?`, run).Scan(&status, &msg); err != nil {
		t.Fatal(err)
	}
	if status != "FAILED" && status != "CRASHED" {
		t.Errorf("run %d is %s after the full disk, want FAILED (or CRASHED when even the status could not be written)", run, status)
	}
	t.Logf("full disk: exit %d, %d rows kept, run %s (%q); sslrun said: %s", code, len(got), status, msg, lastLine(errText, "Error:"))
}

// fill writes a file until the file system is full.
func fill(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return nil
			}
			return err
		}
	}
}

// testReadOnlyDatabase runs `sslrun run` on a database on a read-only file
// system: a clear error naming the file, exit code 1, and the file
// unchanged; `sslrun runs ls` still reads it.
func testReadOnlyDatabase(t *testing.T, e relEnv) {
	mnt := mountTmpfs(t, "8m")
	path := filepath.Join(mnt, "runs.db")
	db, err := rundb.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
		t.Fatalf("remount read-only: %v", err)
	}
	defer syscall.Mount("tmpfs", mnt, "tmpfs", syscall.MS_REMOUNT, "")
	code, out, stderr := e.run(t, "run", e.pipeline, "-var", "database="+path,
		"-var", "checkpoints="+filepath.Join(e.dir, "ro-checkpoints"))
	if code != exitFailed {
		t.Errorf("sslrun run on a read-only database: exit %d, want %d\n%s\n%s", code, exitFailed, out, tail(stderr, 20))
	}
	if !strings.Contains(stderr, "read-only") || !strings.Contains(stderr, path) {
		t.Errorf("the error does not say the database %s is read-only:\n%s", path, tail(stderr, 20))
	}
	if strings.Contains(stderr, "panic") {
		t.Errorf("sslrun panicked:\n%s", tail(stderr, 40))
	}
	t.Logf("read-only: sslrun said:\n%s", tail(stderr, 3))
	if code, out, stderr := e.run(t, "runs", "ls", "--db", path); code != exitOK {
		t.Errorf("runs ls on the read-only database: exit %d\n%s%s", code, out, stderr)
	}
	ro := openRO(t, path)
	integrityOK(t, ro)
	if n := strings1(t, ro, `SELECT count(*) FROM runs`); len(n) != 1 || n[0] != "0" {
		t.Errorf("runs in the read-only database: %v, want 0", n)
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// lastLine returns the last line of s starting with prefix.
func lastLine(s, prefix string) string {
	lines := strings.Split(s, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(lines[i], prefix) {
			return lines[i]
		}
	}
	return ""
}
