package rundb_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sslrun/sslrun/core/rundb"
)

// Child processes: the test binary re-executes itself with childEnv set to
// a mode; TestMain runs that mode instead of the tests.
const childEnv = "RUNDB_TEST_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		if err := runChild(mode, os.Args[len(os.Args)-1]); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// Rows and batch size of the concurrent-writer child.
const (
	childRows  = 25_000
	childBatch = 100
)

func runChild(mode, path string) error {
	db, err := rundb.Open(path)
	if err != nil {
		return err
	}
	defer db.Close()
	switch mode {
	case "writer":
		// Writes childRows rows in batches of childBatch (one
		// transaction each), interleaved with the other writer.
		r, err := db.CreateRun(ctx, rundb.RunSpec{Study: "concurrent", Name: "pid" + strconv.Itoa(os.Getpid())})
		if err != nil {
			return err
		}
		r.SetFlushPolicy(childBatch, time.Hour)
		for i := range childRows {
			if err := r.Log(int64(i), float64(i)/1000, rundb.Metric{Key: "loss", Value: float64(i)}); err != nil {
				return err
			}
		}
		if err := r.SetTags(ctx, map[string]string{"done": "yes"}); err != nil {
			return err
		}
		return r.Finish(rundb.StatusFinished, nil)
	case "killme":
		// Logs forever, printing the number of committed rows after each
		// commit, until the parent kills it.
		r, err := db.CreateRun(ctx, rundb.RunSpec{Study: "kill", Name: "victim"})
		if err != nil {
			return err
		}
		r.SetFlushPolicy(childBatch, time.Hour)
		fmt.Printf("run %d\n", r.ID())
		for i := 0; ; i++ {
			if err := r.Log(int64(i), 0, rundb.Metric{Key: "loss", Value: float64(i)},
				rundb.Metric{Key: "knn/top1", Value: 0.5}); err != nil {
				return err
			}
			if (i+1)%(childBatch/2) == 0 {
				fmt.Printf("committed %d\n", 2*(i+1))
			}
		}
	}
	return fmt.Errorf("unknown child mode %q", mode)
}

func child(t *testing.T, mode, path string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$", path)
	cmd.Env = append(os.Environ(), childEnv+"="+mode)
	return cmd
}

// TestConcurrentProcesses runs two writer processes on one new database
// file at once (they also race to create and migrate it): no error such as
// "database is locked", and every row of both is there.
func TestConcurrentProcesses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "runs.db")
	var wg sync.WaitGroup
	outs := make([]bytes.Buffer, 2)
	errs := make([]error, 2)
	start := time.Now()
	for i := range 2 {
		cmd := child(t, "writer", path)
		cmd.Stdout, cmd.Stderr = &outs[i], &outs[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = cmd.Run()
		}()
	}
	wg.Wait()
	for i := range 2 {
		if errs[i] != nil {
			t.Errorf("writer %d: %v\n%s", i, errs[i], outs[i].String())
		}
	}
	t.Logf("2 processes x %d rows in batches of %d: %v", childRows, childBatch, time.Since(start).Round(time.Millisecond))
	db, err := rundb.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.SQL().Query(`SELECT r.id, r.status, s.count, (SELECT count(*) FROM metrics m WHERE m.series_id = s.id),
		(SELECT count(*) FROM tags g WHERE g.run_id = r.id) FROM runs r JOIN series s ON s.run_id = r.id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var id, cnt, got, tags int64
		var status string
		if err := rows.Scan(&id, &status, &cnt, &got, &tags); err != nil {
			t.Fatal(err)
		}
		if status != "FINISHED" || cnt != childRows || got != childRows || tags != 1 {
			t.Errorf("run %d: %s, summary count %d, %d rows, %d tags; want FINISHED, %d, %d, 1", id, status, cnt, got, tags, childRows, childRows)
		}
		n++
	}
	if n != 2 {
		t.Errorf("%d runs, want 2", n)
	}
	integrity(t, db.SQL())
}

// TestKill9 kills a writer with SIGKILL in the middle of its logging loop:
// the database opens cleanly, every committed row is there and no partial
// batch, the run shows as CRASHED, and it can be resumed to completion.
func TestKill9(t *testing.T) {
	path := filepath.Join(t.TempDir(), "runs.db")
	cmd := child(t, "killme", path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	var runID, committed int64
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == "run" {
			runID, _ = strconv.ParseInt(f[1], 10, 64)
		}
		if len(f) == 2 && f[0] == "committed" {
			committed, _ = strconv.ParseInt(f[1], 10, 64)
			if committed >= 20*childBatch {
				break
			}
		}
	}
	if committed == 0 {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child did not log: %s", stderr.String())
	}
	// Let it write on for a moment (draining its output so it never blocks
	// on the pipe), kill it mid-loop, then reap it (a zombie must count as
	// dead too; TestRecoverCrashed covers the unreaped case).
	var mu sync.Mutex
	go func() {
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) == 2 && f[0] == "committed" {
				mu.Lock()
				committed, _ = strconv.ParseInt(f[1], 10, 64)
				mu.Unlock()
			}
		}
	}()
	time.Sleep(30 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	mu.Lock()
	defer mu.Unlock()

	db, err := rundb.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if got := db.Recovered(); len(got) != 1 || got[0] != runID {
		t.Errorf("Recovered() = %v, want [%d]", got, runID)
	}
	integrity(t, db.SQL())
	n := count(t, db.SQL(), "SELECT count(*) FROM metrics")
	sum := count(t, db.SQL(), "SELECT sum(count) FROM series")
	if n < committed || n%childBatch != 0 || sum != n {
		t.Errorf("%d rows (summaries count %d) after the kill; want >= %d reported committed, a multiple of the batch %d, equal counts",
			n, sum, committed, childBatch)
	}
	t.Logf("killed after >= %d committed rows; %d rows in the database", committed, n)
	d, err := db.ShowRun(ctx, strconv.FormatInt(runID, 10))
	if err != nil {
		t.Fatal(err)
	}
	if d.Status != rundb.StatusCrashed || d.End == nil || !strings.Contains(d.Error, "ended without") {
		t.Errorf("status %s end %v error %q, want CRASHED", d.Status, d.End, d.Error)
	}

	// Resume: RUNNING again, attempt 2, continues after the last step.
	r, err := db.ResumeRun(ctx, runID)
	if err != nil {
		t.Fatal(err)
	}
	last, ok, err := r.LastStep(ctx)
	if err != nil || !ok || last != n/2-1 {
		t.Errorf("LastStep = %d %v %v, want %d", last, ok, err, n/2-1)
	}
	if err := r.Log(last+1, 0, rundb.Metric{Key: "loss", Value: -1}); err != nil {
		t.Fatal(err)
	}
	if err := r.Finish(rundb.StatusFinished, nil); err != nil {
		t.Fatal(err)
	}
	d, err = db.ShowRun(ctx, strconv.FormatInt(runID, 10))
	if err != nil {
		t.Fatal(err)
	}
	if d.Status != rundb.StatusFinished || d.Attempt != 2 || len(d.Attempts) != 2 ||
		d.Attempts[0].Status != rundb.StatusCrashed || d.Attempts[1].Status != rundb.StatusFinished {
		t.Errorf("after resume: status %s attempt %d attempts %+v", d.Status, d.Attempt, d.Attempts)
	}
	if _, err := db.ResumeRun(ctx, runID); err == nil {
		t.Error("resuming a FINISHED run succeeded")
	}
}

// TestRecoverCrashed covers the liveness rules: a live owner is left
// alone; a zombie, a vanished pid and a reused pid (same pid, other start
// time) mean CRASHED; KILLED runs can be resumed, FAILED ones only when
// marked resumable.
func TestRecoverCrashed(t *testing.T) {
	db, _ := openTemp(t)
	live, err := db.CreateRun(ctx, rundb.RunSpec{Name: "live"})
	if err != nil {
		t.Fatal(err)
	}
	// A zombie: started, exited, not reaped yet.
	zombie := exec.Command("true")
	if err := zombie.Start(); err != nil {
		t.Fatal(err)
	}
	defer zombie.Wait()
	// Poll rather than sleep a fixed time: on a loaded machine the child
	// may take long to run and exit.
	waitZombie(t, zombie.Process.Pid)
	fake := func(name string, pid int, start string) int64 {
		r, err := db.CreateRun(ctx, rundb.RunSpec{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.SQL().Exec(`UPDATE runs SET pid = ?, pid_start = `+start+` WHERE id = ?`, pid, r.ID()); err != nil {
			t.Fatal(err)
		}
		return r.ID()
	}
	zid := fake("zombie", zombie.Process.Pid, "pid_start")
	// pid_start of the zombie must be its own for this case to test the
	// zombie rule rather than the reuse rule.
	if _, err := db.SQL().Exec(`UPDATE runs SET pid_start = ? WHERE id = ?`, procStartOf(t, zombie.Process.Pid), zid); err != nil {
		t.Fatal(err)
	}
	gone := fake("gone", 1<<22+12345, "pid_start")
	reused := fake("reused", os.Getpid(), "pid_start + 1")
	got, err := db.RecoverCrashed(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int64]bool{zid: true, gone: true, reused: true}
	if len(got) != 3 {
		t.Errorf("RecoverCrashed = %v, want runs %v", got, want)
	}
	for _, id := range got {
		if !want[id] {
			t.Errorf("run %d marked CRASHED", id)
		}
	}
	var st string
	db.SQL().QueryRow("SELECT status FROM runs WHERE id = ?", live.ID()).Scan(&st)
	if st != "RUNNING" {
		t.Errorf("live run is %s", st)
	}

	// KILLED -> resumable; FAILED only when marked resumable.
	live.Finish(rundb.StatusKilled, errors.New("interrupt"))
	r, err := db.ResumeRun(ctx, live.ID())
	if err != nil {
		t.Fatalf("resume KILLED: %v", err)
	}
	r.Finish(rundb.StatusFailed, errors.New("boom"))
	if _, err := db.ResumeRun(ctx, live.ID()); err == nil {
		t.Error("resumed a FAILED run not marked resumable")
	}
	db.SQL().Exec("UPDATE runs SET resumable = 1 WHERE id = ?", live.ID())
	r, err = db.ResumeRun(ctx, live.ID())
	if err != nil {
		t.Fatalf("resume resumable FAILED: %v", err)
	}
	r.Finish(rundb.StatusFinished, nil)
	if _, err := db.ResumeRun(ctx, 999); !errors.Is(err, rundb.ErrNotFound) {
		t.Errorf("ResumeRun(999): %v", err)
	}
}

func procStartOf(t *testing.T, pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	n, _ := strconv.ParseInt(f[19], 10, 64)
	return n
}

// waitZombie waits until pid has exited but is not reaped yet (state Z in
// /proc/<pid>/stat), with a deadline generous for a loaded machine.
func waitZombie(t *testing.T, pid int) {
	t.Helper()
	path := "/proc/" + strconv.Itoa(pid) + "/stat"
	state := ""
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Skipf("no /proc: %v", err)
		}
		s := string(b)
		if f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]); len(f) > 0 {
			if state = f[0]; state == "Z" {
				return
			}
		}
	}
	t.Fatalf("pid %d did not become a zombie within 30 s (state %q)", pid, state)
}
