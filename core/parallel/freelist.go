package parallel

// FreeList recycles values like sync.Pool, except that a garbage collection
// does not empty it. Kernels keep their per-call task structs and scratch
// buffers in free lists so that a training step allocates nothing even when
// it is long enough for the collector to run in the middle of it, which with
// a sync.Pool cost a few allocations per step (and with GEMM packing
// buffers, megabytes).
//
// At most the list's capacity of idle values is kept; extra ones are left
// to the collector. A FreeList is safe for concurrent use.
type FreeList[T any] struct {
	idle chan *T
	make func() *T
}

// NewFreeList returns a list keeping up to size idle values; newValue
// makes one when the list is empty.
func NewFreeList[T any](size int, newValue func() *T) *FreeList[T] {
	return &FreeList[T]{idle: make(chan *T, size), make: newValue}
}

// Get returns an idle value, or a new one.
func (f *FreeList[T]) Get() *T {
	select {
	case v := <-f.idle:
		return v
	default:
		return f.make()
	}
}

// Put returns v to the list for reuse.
func (f *FreeList[T]) Put(v *T) {
	select {
	case f.idle <- v:
	default:
	}
}
