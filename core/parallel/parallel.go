// Package parallel runs data-parallel loops on a fixed pool of worker
// goroutines shared by every kernel in the process.
//
// A training step calls kernels thousands of times; starting goroutines or
// allocating closures per call would show up both in the profile and in the
// allocation count, so Run hands out work to long-lived workers and needs no
// allocation when its Task is a pointer to a long-lived value. A goroutine that
// waits for its chunks first runs queued work itself and blocks only once the
// queue is empty, so nested Run calls (a parallel kernel inside a parallel
// loop) cannot deadlock, and waiting burns no CPU that a loaded machine needs.
package parallel

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// Task is a loop body over the half-open index range [lo, hi).
type Task interface {
	Do(lo, hi int)
}

// Func adapts a function to Task. Converting a closure to a Task allocates
// when it captures variables; hot paths should implement Task on a long-lived
// struct instead.
type Func func(lo, hi int)

// Do calls f(lo, hi).
func (f Func) Do(lo, hi int) { f(lo, hi) }

type item struct {
	t      Task
	lo, hi int
	b      *batch
}

// batch counts the chunks of one Run still to finish; whoever finishes the
// last one sends the single token on done that the waiting caller receives.
type batch struct {
	pending atomic.Int32
	done    chan struct{}
}

func (it item) run() {
	it.t.Do(it.lo, it.hi)
	if it.b.pending.Add(-1) == 0 {
		it.b.done <- struct{}{}
	}
}

var (
	threads   atomic.Int32
	startOnce sync.Once
	work      chan item
	// batches is a free list rather than a sync.Pool: a GC empties a
	// Pool, and a kernel that allocates after every collection breaks the
	// zero-allocation guarantee of a training step.
	batches = make(chan *batch, 64)
)

func init() { threads.Store(int32(runtime.GOMAXPROCS(0))) }

// Threads reports how many goroutines Run splits work across.
func Threads() int { return int(threads.Load()) }

// SetThreads sets how many goroutines Run splits work across (at least 1) and
// returns the previous value. Benchmarks use it to compare 1 and 2 threads.
func SetThreads(n int) int {
	if n < 1 {
		n = 1
	}
	return int(threads.Swap(int32(n)))
}

func start() {
	n := runtime.NumCPU()
	if n < 2 {
		n = 2
	}
	work = make(chan item, 16*n)
	for i := 0; i < n; i++ {
		go func() {
			for it := range work {
				it.run()
			}
		}()
	}
}

// Run calls t.Do over [0, n) split into at most Threads() contiguous chunks
// of at least grain indices each, and returns when all chunks are done. The
// calling goroutine runs the first chunk itself.
func Run(n, grain int, t Task) {
	if n <= 0 {
		return
	}
	if grain < 1 {
		grain = 1
	}
	chunks := Threads()
	if c := (n + grain - 1) / grain; c < chunks {
		chunks = c
	}
	if chunks <= 1 {
		t.Do(0, n)
		return
	}
	size := (n + chunks - 1) / chunks
	// Rounding the chunk size up can leave fewer chunks than asked for
	// (n=9 over 4 threads is 3 chunks of 3): count the ones that exist.
	chunks = (n + size - 1) / size
	if chunks <= 1 {
		t.Do(0, n)
		return
	}
	startOnce.Do(start)
	b := getBatch()
	b.pending.Store(int32(chunks - 1))
	for lo := size; lo < n; lo += size {
		it := item{t: t, lo: lo, hi: min(lo+size, n), b: b}
		select {
		case work <- it:
		default:
			// The queue is full, possibly of work whose owners are all
			// waiting inside nested Runs: run it here rather than block.
			it.run()
		}
	}
	t.Do(0, size)
	for b.pending.Load() > 0 {
		select {
		case it := <-work:
			it.run()
			continue
		default:
		}
		break
	}
	// Every chunk is finished or running elsewhere; the last to finish
	// sends exactly one token, so receiving it leaves the batch reusable.
	<-b.done
	select {
	case batches <- b:
	default:
	}
}

func getBatch() *batch {
	select {
	case b := <-batches:
		return b
	default:
		return &batch{done: make(chan struct{}, 1)}
	}
}

// For is Run for a plain function; convenient where an allocation per call
// does not matter.
func For(n, grain int, f func(lo, hi int)) { Run(n, grain, Func(f)) }
