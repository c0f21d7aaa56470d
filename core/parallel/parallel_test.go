package parallel

import (
	"sync/atomic"
	"testing"
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
	for _, threads := range []int{1, 2, 3, 8} {
		prev := SetThreads(threads)
		for _, n := range []int{0, 1, 2, 7, 100, 1001} {
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

func TestRunDoesNotAllocate(t *testing.T) {
	prev := SetThreads(2)
	defer SetThreads(prev)
	task := &sumTask{data: make([]int64, 1<<16)}
	for i := range task.data {
		task.data[i] = int64(i)
	}
	Run(len(task.data), 1024, task) // start the pool
	allocs := testing.AllocsPerRun(100, func() { Run(len(task.data), 1024, task) })
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
