package parallel

import (
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

type sumTask struct {
	data []int64
	sum  atomic.Int64
}

func (s *sumTask) Do(lo, hi int) {
	var t int64
	for _, v := range s.data[lo:hi] {
		t += v
	}
	s.sum.Add(t)
}

func TestRunCoversEveryIndexOnce(t *testing.T) {
	for threads := 1; threads <= 32; threads++ {
		prev := SetThreads(threads)
		for n := 0; n <= 100; n++ {
			for _, grain := range []int{1, 3, 64} {
				hits := make([]atomic.Int32, n)
				For(n, grain, func(lo, hi int) {
					for i := lo; i < hi; i++ {
						hits[i].Add(1)
					}
				})
				for i := range hits {
					if h := hits[i].Load(); h != 1 {
						t.Fatalf("threads=%d n=%d grain=%d: index %d ran %d times", threads, n, grain, i, h)
					}
				}
			}
		}
		SetThreads(prev)
	}
}

func TestNestedRunDoesNotDeadlock(t *testing.T) {
	prev := SetThreads(4)
	defer SetThreads(prev)
	var total atomic.Int64
	For(16, 1, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			For(100, 1, func(lo, hi int) { total.Add(int64(hi - lo)) })
		}
	})
	if got := total.Load(); got != 1600 {
		t.Fatalf("nested total = %d, want 1600", got)
	}
}

// TestFullQueueDoesNotDeadlock floods the queue from inside nested loops on
// many threads; chunks that find the queue full run in place.
func TestFullQueueDoesNotDeadlock(t *testing.T) {
	prev := SetThreads(256)
	defer SetThreads(prev)
	var total atomic.Int64
	For(256, 1, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			For(256, 1, func(lo, hi int) { total.Add(int64(hi - lo)) })
		}
	})
	if got := total.Load(); got != 256*256 {
		t.Fatalf("total = %d, want %d", got, 256*256)
	}
}

func TestRunDoesNotAllocate(t *testing.T) {
	prev := SetThreads(2)
	defer SetThreads(prev)
	task := &sumTask{data: make([]int64, 1<<16)}
	for i := range task.data {
		task.data[i] = int64(i)
	}
	Run(len(task.data), 1024, task) // start the pool
	allocs := testing.AllocsPerRun(100, func() {
		Run(len(task.data), 1024, task)
		runtime.GC() // a collection must not cost the next call an allocation
	})
	if allocs != 0 {
		t.Fatalf("Run allocated %.1f times per call, want 0", allocs)
	}
}

func BenchmarkRunOverhead(b *testing.B) {
	task := &sumTask{data: make([]int64, 64)}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		Run(len(task.data), 1, task)
	}
}

func TestFreeListSurvivesGC(t *testing.T) {
	made := 0
	fl := NewFreeList(4, func() *[64]byte { made++; return new([64]byte) })
	v := fl.Get()
	fl.Put(v)
	allocs := testing.AllocsPerRun(50, func() {
		fl.Put(fl.Get())
		runtime.GC()
	})
	if allocs != 0 || made != 1 {
		t.Fatalf("allocs per Get/Put = %v, values made = %d; want 0 and 1", allocs, made)
	}
}

// TestSpinWaitSettings runs nested loops with polling off, short and
// default: with polling off every item needs a wake token, with a short
// poll the workers keep timing out and parking between calls, which
// exercises the hand-over between polling and parked workers.
func TestSpinWaitSettings(t *testing.T) {
	prevT := SetThreads(4)
	defer SetThreads(prevT)
	def := SetSpinWait(0)
	SetSpinWait(def)
	for _, tc := range []struct {
		name string
		d    time.Duration
	}{{"off", 0}, {"1us", time.Microsecond}, {"default", def}} {
		t.Run(tc.name, func(t *testing.T) {
			prev := SetSpinWait(tc.d)
			defer SetSpinWait(prev)
			for rep := 0; rep < 200; rep++ {
				var total atomic.Int64
				For(8, 1, func(lo, hi int) {
					for i := lo; i < hi; i++ {
						For(50, 1, func(lo, hi int) { total.Add(int64(hi - lo)) })
					}
				})
				if got := total.Load(); got != 400 {
					t.Fatalf("rep %d: total = %d, want 400", rep, got)
				}
				if rep%50 == 0 {
					time.Sleep(time.Millisecond) // let polling workers park
				}
			}
		})
	}
}

// TestRunDynamicCoversEveryIndexOnce checks that the claimed chunks of
// RunDynamic cover [0, n) exactly once, respect the grain (except the last
// chunk) and nest.
func TestRunDynamicCoversEveryIndexOnce(t *testing.T) {
	for threads := 1; threads <= 8; threads++ {
		prev := SetThreads(threads)
		for n := 0; n <= 100; n++ {
			for _, grain := range []int{1, 3, 64} {
				hits := make([]atomic.Int32, n)
				var short atomic.Int32
				RunDynamic(n, grain, Func(func(lo, hi int) {
					if hi-lo < grain && hi != n {
						short.Add(1)
					}
					for i := lo; i < hi; i++ {
						hits[i].Add(1)
					}
				}))
				for i := range hits {
					if h := hits[i].Load(); h != 1 {
						t.Fatalf("threads=%d n=%d grain=%d: index %d ran %d times", threads, n, grain, i, h)
					}
				}
				if short.Load() != 0 {
					t.Fatalf("threads=%d n=%d grain=%d: %d chunks below the grain", threads, n, grain, short.Load())
				}
			}
		}
		SetThreads(prev)
	}
	prev := SetThreads(4)
	defer SetThreads(prev)
	var total atomic.Int64
	RunDynamic(16, 1, Func(func(lo, hi int) {
		for i := lo; i < hi; i++ {
			RunDynamic(100, 1, Func(func(lo, hi int) { total.Add(int64(hi - lo)) }))
		}
	}))
	if got := total.Load(); got != 1600 {
		t.Fatalf("nested total = %d, want 1600", got)
	}
}

// TestRunDynamicDoesNotAllocate: kernels call it on every step.
func TestRunDynamicDoesNotAllocate(t *testing.T) {
	prev := SetThreads(2)
	defer SetThreads(prev)
	s := &sumTask{data: make([]int64, 1<<12)}
	RunDynamic(len(s.data), 64, s)
	if n := testing.AllocsPerRun(100, func() { RunDynamic(len(s.data), 64, s) }); n != 0 {
		t.Fatalf("RunDynamic allocates %v times per call", n)
	}
}

// TestParkStopsPolling checks that Park ends the polling of idle workers
// long before their spin wait would, and that work runs normally after it.
func TestParkStopsPolling(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("no worker polls with GOMAXPROCS 1")
	}
	prevT := SetThreads(2)
	defer SetThreads(prevT)
	prev := SetSpinWait(time.Minute)
	defer SetSpinWait(prev)
	polling := func() bool {
		// A worker starts polling after the Run that fed it returns.
		for range 1000 {
			if spinners.Load() > 0 {
				return true
			}
			runtime.Gosched()
		}
		return false
	}
	var total atomic.Int64
	For(64, 1, func(lo, hi int) { total.Add(int64(hi - lo)) })
	if !polling() {
		t.Skip("no worker started polling (machine too busy to observe)")
	}
	Park()
	// With a one-minute spin wait, only Park can end the polling; give
	// the worker a generous while to notice.
	deadline := time.Now().Add(10 * time.Second)
	for spinners.Load() > 0 {
		if time.Now().After(deadline) {
			t.Fatal("workers still polling 10 s after Park")
		}
		time.Sleep(time.Millisecond)
	}
	For(64, 1, func(lo, hi int) { total.Add(int64(hi - lo)) })
	if got := total.Load(); got != 128 {
		t.Fatalf("total = %d, want 128", got)
	}
}
