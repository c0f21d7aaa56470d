package shm

import (
	"errors"
	"fmt"
	"sync"

	"github.com/sslrun/sslrun/core/tensor"
)

// Arena is a bump allocator of tensor regions over segments this process
// owns. Reset starts a new step. When a step needs more than the current
// segment, the arena adds a bigger segment (doubling); the next Reset folds
// all live segments into one big enough for that step. Segments that are
// replaced are retired, not unmapped, until Close: a view a caller kept too
// long then reads stale data instead of faulting the process. Growth is
// geometric, so retired memory is bounded by about the final size.
//
// Arena is safe for concurrent use.
type Arena struct {
	mu      sync.Mutex
	live    []*Segment // current step's segments; the last is allocated from
	retired []*Segment
	off     int // next free byte in the last live segment
	used    int // bytes handed out this step, over all live segments
	nextID  uint32
	closed  bool
}

// NewArena returns an arena whose first segment has size bytes; size 0
// defers creating a segment to the first Alloc.
func NewArena(size int) (*Arena, error) {
	a := &Arena{nextID: 1}
	if size > 0 {
		if err := a.grow(size); err != nil {
			return nil, err
		}
	}
	return a, nil
}

func (a *Arena) grow(need int) error {
	size := need
	if n := len(a.live); n > 0 {
		size = max(size, 2*a.live[n-1].Size())
	}
	seg, err := Create(a.nextID, size)
	if err != nil {
		return err
	}
	a.nextID++
	a.live = append(a.live, seg)
	a.off = 0
	return nil
}

// Alloc returns an uninitialised view of the given shape and its Ref. The
// memory keeps whatever an earlier step left there: callers overwrite it.
func (a *Arena) Alloc(shape ...int) (*tensor.T, Ref, error) {
	n, err := elems(shape)
	if err != nil {
		return nil, Ref{}, fmt.Errorf("shm: alloc: %w", err)
	}
	size := n * 4
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil, Ref{}, errors.New("shm: alloc on closed arena")
	}
	aligned := (size + Align - 1) / Align * Align
	if len(a.live) == 0 || a.off+aligned > a.live[len(a.live)-1].Size() {
		if err := a.grow(max(aligned, Align)); err != nil {
			return nil, Ref{}, err
		}
	}
	seg := a.live[len(a.live)-1]
	ref := Ref{Segment: seg.id, Offset: uint64(a.off), Shape: append([]int(nil), shape...), DType: Float32}
	a.off += aligned
	a.used += aligned
	t, err := seg.View(ref)
	if err != nil {
		return nil, Ref{}, err
	}
	return t, ref, nil
}

// Locate returns t's Ref when t's data already lies in a live segment, so
// that it can be sent without a copy.
func (a *Arena) Locate(t *tensor.T) (Ref, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, s := range a.live {
		if r, ok := s.Locate(t); ok {
			return r, true
		}
	}
	return Ref{}, false
}

// Put returns a Ref for t: t's own region when it lives in the arena,
// otherwise a fresh region holding a copy of t.
func (a *Arena) Put(t *tensor.T) (Ref, error) {
	if r, ok := a.Locate(t); ok {
		return r, nil
	}
	if n, err := elems(t.Shape); err != nil || n != len(t.Data) {
		return Ref{}, fmt.Errorf("shm: put: shape %v does not match %d values", t.Shape, len(t.Data))
	}
	dst, r, err := a.Alloc(t.Shape...)
	if err != nil {
		return Ref{}, err
	}
	copy(dst.Data, t.Data)
	return r, nil
}

// Used reports the bytes handed out since the last Reset.
func (a *Arena) Used() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.used
}

// Reset starts a new step: every region handed out before is free again.
// If the last step spilled over several segments they are retired and
// replaced by one segment large enough for that step.
func (a *Arena) Reset() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.live) > 1 {
		need := a.used
		a.retired = append(a.retired, a.live...)
		a.live = nil
		if err := a.grow(need); err != nil {
			return err
		}
	}
	a.off, a.used = 0, 0
	return nil
}

// Segments returns the live segments; a Ref handed out since the last Reset
// points into one of them.
func (a *Arena) Segments() []*Segment {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]*Segment(nil), a.live...)
}

// Size is the total size of the live segments in bytes.
func (a *Arena) Size() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, s := range a.live {
		n += s.Size()
	}
	return n
}

// Close unmaps and closes every segment, live and retired.
func (a *Arena) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil
	}
	a.closed = true
	var errs []error
	for _, s := range append(a.live, a.retired...) {
		if err := s.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	a.live, a.retired = nil, nil
	return errors.Join(errs...)
}

// Remote is the set of another process's segments mapped into this one.
// Sync maps segments as they are announced; views stay valid until Close
// (segments that are no longer announced are kept mapped for the same
// reason Arena retires rather than unmaps).
//
// Remote is safe for concurrent use.
type Remote struct {
	mu       sync.Mutex
	writable bool
	segs     map[uint32]*Segment
	retired  []*Segment // replaced by a larger mapping; unmapped only by Close
}

// NewRemote returns an empty set; writable says how to map its segments.
func NewRemote(writable bool) *Remote {
	return &Remote{writable: writable, segs: make(map[uint32]*Segment)}
}

// Sync maps every described segment not mapped yet.
func (r *Remote) Sync(descs []Desc) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, d := range descs {
		if s, ok := r.segs[d.ID]; ok && uint64(s.Size()) >= d.Size {
			continue
		}
		s, err := Map(d, r.writable)
		if err != nil {
			return err
		}
		if old := r.segs[d.ID]; old != nil {
			// Views into the old mapping may still be live: unmapping it
			// now would turn a late read into a SIGSEGV. Keep it mapped
			// until Close, as Arena does with its replaced segments.
			r.retired = append(r.retired, old)
		}
		r.segs[d.ID] = s
	}
	return nil
}

// View returns the tensor ref names. The lock is held across the segment's
// View so that a concurrent Close cannot unmap the segment while View reads
// its mapping.
func (r *Remote) View(ref Ref) (*tensor.T, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.segs[ref.Segment]
	if s == nil {
		return nil, fmt.Errorf("shm: unknown segment %d", ref.Segment)
	}
	return s.View(ref)
}

// Locate returns t's Ref when t's data lies in a current (not retired)
// segment of the set, and that segment's description by its owner (its
// process and descriptor there), through which a third process can map
// the same memory. A host uses it to hand one plugin's outputs to another
// without a copy.
func (r *Remote) Locate(t *tensor.T) (Ref, Desc, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.segs {
		if ref, ok := s.Locate(t); ok && s.owner.Pid > 0 && s.owner.OwnerFD >= 0 {
			d := s.owner
			d.Size = uint64(s.Size())
			return ref, d, true
		}
	}
	return Ref{}, Desc{}, false
}

// Contains reports whether addr lies in a mapped segment, so a fault at
// addr can be blamed on a write to a read-only input.
func (r *Remote) Contains(addr uintptr) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.segs {
		if s.contains(addr) {
			return true
		}
	}
	for _, s := range r.retired {
		if s.contains(addr) {
			return true
		}
	}
	return false
}

// Close unmaps every segment, current and retired.
func (r *Remote) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	for id, s := range r.segs {
		if err := s.Close(); err != nil {
			errs = append(errs, err)
		}
		delete(r.segs, id)
	}
	for _, s := range r.retired {
		if err := s.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	r.retired = nil
	return errors.Join(errs...)
}
