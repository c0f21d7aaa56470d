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
	"time"
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
	// wake holds tokens that unpark idle workers. Workers never block
	// on work itself: a send on a channel with a blocked receiver hands
	// the item to that (parked) receiver, bypassing a worker that polls.
	wake chan struct{}
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

// spinWait (nanoseconds) is how long an idle worker keeps polling for work
// before it parks, and how long Run polls for its chunks to finish before
// it blocks. Waking a parked goroutine costs a futex wake of an idle OS
// thread, which on a VM whose idle vCPU has halted took 0.2-0.4 ms
// (measured on the 2-vCPU EPYC VM: the second worker of a 5 ms GEMM
// started that late), more than a whole work item of a mid-sized kernel;
// kernels called back to back find a polling worker instead. OpenMP
// runtimes do the same (libgomp spins for a while, GOMP_SPINCOUNT, before
// sleeping).
var spinWait atomic.Int64

func init() { spinWait.Store(int64(500 * time.Microsecond)) }

// SetSpinWait sets how long idle workers poll for work before they park,
// and Run for its chunks before it blocks (0 disables polling), and
// returns the previous value. Polling trades idle CPU time for a faster
// start of the next parallel call.
func SetSpinWait(d time.Duration) time.Duration {
	return time.Duration(spinWait.Swap(int64(max(d, 0))))
}

// parkEpoch changes on every Park; a polling worker that sees it change
// stops polling and parks.
var parkEpoch atomic.Uint32

// Park tells the workers polling for work (see SetSpinWait) to stop and park
// now rather than when their spin wait runs out. A process about to block
// on another process, such as a plugin that has answered its call or a host
// that has sent one, calls it: nothing will come to its queue until the
// other side is done, and on a machine with as many cores as threads the
// polling would take a core that the other side computes on.
func Park() { parkEpoch.Add(1) }

// spinners counts the idle workers polling for work; at most
// GOMAXPROCS-1 poll, so that a polling worker never holds the last P that
// the goroutine calling Run needs.
var spinners atomic.Int32

func start() {
	n := runtime.NumCPU()
	if n < 2 {
		n = 2
	}
	work = make(chan item, 16*n)
	wake = make(chan struct{}, n)
	for i := 0; i < n; i++ {
		go worker()
	}
}

func worker() {
	// epoch is Park's count when this worker last took an item: a worker
	// that has had no work since a Park (one woken by a spare token, say)
	// must not start polling after it.
	epoch := parkEpoch.Load()
	for {
		select {
		case it := <-work:
			epoch = parkEpoch.Load()
			it.run()
			continue
		default:
		}
		if it, ok := spinForWork(epoch); ok {
			epoch = parkEpoch.Load()
			it.run()
			continue
		}
		// A Run that saw this worker polling sent no token; look once
		// more before parking so that its item is not left to its caller.
		select {
		case it := <-work:
			epoch = parkEpoch.Load()
			it.run()
			continue
		default:
		}
		<-wake
	}
}

// spinForWork polls the queue for up to spinWait, if no more than
// GOMAXPROCS-1 workers are polling already and Park has not been called
// since epoch.
func spinForWork(epoch uint32) (item, bool) {
	d := time.Duration(spinWait.Load())
	if d <= 0 || parkEpoch.Load() != epoch {
		return item{}, false
	}
	if spinners.Add(1) > int32(runtime.GOMAXPROCS(0)-1) {
		spinners.Add(-1)
		return item{}, false
	}
	defer spinners.Add(-1)
	start := time.Now()
	for i := 1; ; i++ {
		select {
		case it := <-work:
			return it, true
		default:
		}
		if i%64 == 0 {
			if time.Since(start) > d || parkEpoch.Load() != epoch {
				return item{}, false
			}
			// Let a goroutine that this P should run (the Run caller
			// woken by a finished batch, say) have it.
			runtime.Gosched()
		}
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
	queued := 0
	for lo := size; lo < n; lo += size {
		it := item{t: t, lo: lo, hi: min(lo+size, n), b: b}
		select {
		case work <- it:
			queued++
		default:
			// The queue is full, possibly of work whose owners are all
			// waiting inside nested Runs: run it here rather than block.
			it.run()
		}
	}
	// Wake parked workers for the items that polling workers will not
	// take. A spare token only makes a worker look and park again; a
	// missing one only leaves an item for this goroutine to run below.
	for w := queued - int(spinners.Load()); w > 0; w-- {
		select {
		case wake <- struct{}{}:
		default:
			w = 0
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
	// Poll for the other chunks to finish rather than block at once: the
	// token then finds this goroutine running instead of having to wake
	// its thread (see spinWait).
	if d := time.Duration(spinWait.Load()); d > 0 && b.pending.Load() > 0 {
		start := time.Now()
		for i := 1; b.pending.Load() > 0; i++ {
			select {
			case it := <-work:
				// A chunk nobody took (see the wake tokens above).
				it.run()
				continue
			default:
			}
			if i%64 == 0 {
				if time.Since(start) > d {
					break
				}
				runtime.Gosched()
			}
		}
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

// dynChunks is how many chunks per thread RunDynamic aims for: enough that
// the chunks of a descheduled worker are few and small, few enough that
// claiming them (one atomic add each) costs nothing measurable.
const dynChunks = 4

// dynTask runs one RunDynamic call: every runner claims chunks of size
// indices with one atomic add until none are left.
type dynTask struct {
	t       Task
	n, size int
	next    atomic.Int64
}

func (d *dynTask) Do(_, _ int) {
	for {
		lo := int(d.next.Add(1)-1) * d.size
		if lo >= d.n {
			return
		}
		d.t.Do(lo, min(lo+d.size, d.n))
	}
}

var dynTasks = NewFreeList(64, func() *dynTask { return new(dynTask) })

// RunDynamic calls t.Do over [0, n) like Run, but in about 4 chunks per
// thread (each at least grain indices) that the calling goroutine and the
// workers claim one at a time instead of one fixed share each. On a shared
// machine that deschedules a worker for milliseconds at a time, the others
// then take over its remaining chunks rather than wait for them, as
// core/gemm's drivers do; with the machine to itself it costs an atomic add
// per chunk. t.Do must accept any sub-range and run concurrently on
// disjoint ones.
func RunDynamic(n, grain int, t Task) {
	if n <= 0 {
		return
	}
	grain = max(grain, 1)
	threads := Threads()
	chunks := min((n+grain-1)/grain, dynChunks*threads)
	if threads <= 1 || chunks <= 1 {
		t.Do(0, n)
		return
	}
	d := dynTasks.Get()
	d.t, d.n, d.size = t, n, max(grain, (n+chunks-1)/chunks)
	d.next.Store(0)
	Run(min(threads, chunks), 1, d)
	d.t = nil
	dynTasks.Put(d)
}

// For is Run for a plain function; convenient where an allocation per call
// does not matter.
func For(n, grain int, f func(lo, hi int)) { Run(n, grain, Func(f)) }
