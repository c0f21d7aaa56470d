package parallel

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestQuietMonitor checks that QuietMonitor moves exactly one thread of
// this process to SCHED_IDLE, only once, and that it is the runtime's
// monitor, which gives itself away first: after each burst of work it
// polls every 20 us for a while, so across bursts separated by idle
// sleeps it switches far more often than any other thread.
func TestQuietMonitor(t *testing.T) {
	before := switches(t)
	for range 20 {
		for start := time.Now(); time.Since(start) < 2*time.Millisecond; {
		}
		time.Sleep(3 * time.Millisecond)
	}
	after := switches(t)
	// The main thread runs this test's loop (and, under the race
	// detector, switches as often as the monitor); the monitor is another.
	monitor, most := 0, 0
	for id, n := range after {
		if d := n - before[id]; d > most && id != os.Getpid() {
			monitor, most = id, d
		}
	}
	t.Logf("voluntary switches per thread across the bursts: before %v, after %v", before, after)

	tid, err := QuietMonitor()
	if err != nil {
		t.Fatal(err)
	}
	if tid == 0 {
		t.Skip("race detector, or thread ids wrapped around: QuietMonitor rightly did nothing")
	}
	t.Logf("QuietMonitor picked thread %d; thread %d switched most (%d times)", tid, monitor, most)
	if tid != monitor {
		t.Errorf("QuietMonitor picked thread %d, but the monitor is thread %d", tid, monitor)
	}
	idle := 0
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		id, _ := strconv.Atoi(e.Name())
		attr, err := unix.SchedGetAttr(id, 0)
		if err != nil {
			t.Fatal(err)
		}
		if attr.Policy == unix.SCHED_IDLE {
			idle++
			if id != tid {
				t.Errorf("thread %d is SCHED_IDLE, QuietMonitor reported %d", id, tid)
			}
		}
	}
	if idle != 1 {
		t.Errorf("%d SCHED_IDLE threads, want 1", idle)
	}
	if again, err := QuietMonitor(); again != tid || err != nil {
		t.Errorf("second call = %d, %v; want %d, nil", again, err, tid)
	}
}

// switches counts each thread's voluntary context switches.
func switches(t *testing.T) map[int]int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]int{}
	for _, e := range ents {
		id, _ := strconv.Atoi(e.Name())
		b, err := os.ReadFile("/proc/self/task/" + e.Name() + "/status")
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "voluntary_ctxt_switches:"); ok {
				out[id], _ = strconv.Atoi(strings.TrimSpace(v))
			}
		}
	}
	return out
}
