// Package shm holds the shared-memory arenas through which tensors cross
// between sslrun and its plugin processes.
//
// A Segment is a sealed memfd mapped into a process. Its size is sealed
// (F_SEAL_SHRINK|F_SEAL_GROW|F_SEAL_SEAL) before it is shared, so the other
// side cannot truncate it under a live mapping and SIGBUS this process. An
// Arena is a bump allocator of 64-byte aligned tensor regions over a growing
// list of segments, reset at every step; a Ref names a region (segment id,
// offset, shape, dtype) and is what RPC messages carry instead of data. A
// Remote is the receiving side: the set of another process's segments mapped
// here, read-only when this side must not modify them (PROT_READ over an
// O_RDONLY descriptor: a write faults).
//
// Tensors are views: *tensor.T whose Data is an unsafe.Slice over the
// mapping. Nothing is copied unless a tensor lives outside the arena.
package shm

import (
	"errors"
	"fmt"
	"math"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sslrun/sslrun/core/tensor"
)

// Align is the byte alignment of every region an Arena hands out: a cache
// line, and enough for any SIMD load.
const Align = 64

// requiredSeals are the seals a segment must carry before this process maps
// memory that another process controls.
const requiredSeals = unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_SEAL

// DType is the element type of a region. Only Float32 exists today; the
// field is on the wire so that others can be added without a new protocol.
type DType int32

// Element types.
const (
	Float32 DType = 1
)

// Ref locates a tensor inside a segment.
type Ref struct {
	Segment uint32
	Offset  uint64
	Shape   []int
	DType   DType
}

// Bytes is the region's size in bytes, or 0 when the shape is invalid
// (a negative dimension, or an element count that overflows int).
func (r Ref) Bytes() uint64 {
	n, err := elems(r.Shape)
	if err != nil {
		return 0
	}
	return uint64(n) * 4
}

// maxElems is the largest element count whose float32 byte size still fits
// in an int, so that n*4 and offset arithmetic cannot wrap.
const maxElems = math.MaxInt / 4

// elems is the overflow-checked element count of shape. A shape comes from
// another process and cannot be trusted: [1<<40, 1<<24] passes a
// per-dimension limit, but its product wraps, and a view with a huge shape
// over few values would make this process panic later. The count is checked
// before every multiplication (n > maxElems/d), then cross-checked with
// tensor.Numel, which reports a negative dimension or overflow as -1.
func elems(shape []int) (int, error) {
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("shape %v: negative dimension", shape)
		}
		if d == 0 {
			// The product is 0 whatever the other dimensions are; checking
			// them pairwise could reject a valid empty tensor.
			return 0, nil
		}
	}
	n := 1
	for _, d := range shape {
		if n > maxElems/d {
			return 0, fmt.Errorf("shape %v: element count overflows", shape)
		}
		n *= d
	}
	if m := tensor.Numel(shape); m < 0 || m != n {
		return 0, fmt.Errorf("shape %v: bad element count %d", shape, m)
	}
	return n, nil
}

// Desc describes a segment so that another process can map it: either an
// inherited descriptor number in the receiving process (FD >= 0) or the
// owner's /proc/<Pid>/fd/<OwnerFD>.
type Desc struct {
	ID      uint32
	Size    uint64
	FD      int
	Pid     int
	OwnerFD int
}

// Path is the /proc path through which the receiver can open the segment.
func (d Desc) Path() string { return fmt.Sprintf("/proc/%d/fd/%d", d.Pid, d.OwnerFD) }

// Segment is one memfd mapped into this process.
type Segment struct {
	id       uint32
	file     *os.File
	data     []byte
	writable bool
	owner    Desc // how a mapped segment was described to this process
}

// Create makes a new sealed, writable segment of size bytes (rounded up to
// a page). The descriptor is close-on-exec: it reaches a child only through
// exec.Cmd.ExtraFiles or /proc.
func Create(id uint32, size int) (*Segment, error) {
	if size <= 0 {
		return nil, fmt.Errorf("shm: create segment %d: size %d", id, size)
	}
	page := os.Getpagesize()
	size = (size + page - 1) / page * page
	fd, err := unix.MemfdCreate(fmt.Sprintf("sslrun-arena-%d", id), unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("shm: memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), fmt.Sprintf("memfd:sslrun-arena-%d", id))
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		f.Close()
		return nil, fmt.Errorf("shm: ftruncate segment %d to %d: %w", id, size, err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, requiredSeals); err != nil {
		f.Close()
		return nil, fmt.Errorf("shm: seal segment %d: %w", id, err)
	}
	data, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("shm: mmap segment %d (%d bytes): %w", id, size, err)
	}
	return &Segment{id: id, file: f, data: data, writable: true}, nil
}

// Map maps an existing segment described by d: the inherited descriptor
// d.FD when it is >= 0, otherwise d.Path(). A read-only mapping is made from
// an O_RDONLY descriptor with PROT_READ, so neither a store nor an mprotect
// can make it writable. The segment must carry the size seals and be at
// least d.Size bytes.
func Map(d Desc, writable bool) (*Segment, error) {
	var f *os.File
	if d.FD >= 0 {
		f = os.NewFile(uintptr(d.FD), fmt.Sprintf("segment-%d", d.ID))
		if f == nil {
			return nil, fmt.Errorf("shm: segment %d: bad descriptor %d", d.ID, d.FD)
		}
	} else {
		flag := os.O_RDONLY
		if writable {
			flag = os.O_RDWR
		}
		var err error
		f, err = os.OpenFile(d.Path(), flag, 0)
		if err != nil {
			return nil, fmt.Errorf("shm: open segment %d: %w", d.ID, err)
		}
	}
	seg, err := mapFile(d.ID, f, d.Size, writable)
	if err != nil {
		f.Close()
		return nil, err
	}
	seg.owner = d
	return seg, nil
}

func mapFile(id uint32, f *os.File, size uint64, writable bool) (*Segment, error) {
	fd := int(f.Fd())
	seals, err := unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0)
	if err != nil {
		return nil, fmt.Errorf("shm: segment %d: get seals: %w", id, err)
	}
	if seals&requiredSeals != requiredSeals {
		return nil, fmt.Errorf("shm: segment %d is not size-sealed (seals %#x)", id, seals)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("shm: segment %d: fstat: %w", id, err)
	}
	if size == 0 || uint64(st.Size) < size {
		return nil, fmt.Errorf("shm: segment %d: file has %d bytes, descriptor says %d", id, st.Size, size)
	}
	prot := unix.PROT_READ
	if writable {
		prot |= unix.PROT_WRITE
	}
	data, err := unix.Mmap(fd, 0, int(size), prot, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("shm: mmap segment %d (%d bytes): %w", id, size, err)
	}
	return &Segment{id: id, file: f, data: data, writable: writable}, nil
}

// ID is the segment's id, unique within its arena.
func (s *Segment) ID() uint32 { return s.id }

// Size is the mapped size in bytes.
func (s *Segment) Size() int { return len(s.data) }

// Fd is the segment's descriptor in this process.
func (s *Segment) Fd() int { return int(s.file.Fd()) }

// Writable reports whether this process mapped the segment writable.
func (s *Segment) Writable() bool { return s.writable }

// Bytes is the whole mapping.
func (s *Segment) Bytes() []byte { return s.data }

// ReadOnlyFile reopens the segment O_RDONLY through /proc/self/fd, for
// handing to a process that must only read it: a descriptor opened read-only
// cannot be mapped writable.
func (s *Segment) ReadOnlyFile() (*os.File, error) {
	f, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", s.Fd()), os.O_RDONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("shm: reopen segment %d read-only: %w", s.id, err)
	}
	return f, nil
}

// Desc describes the segment for a receiver that opens it via /proc.
func (s *Segment) Desc() Desc {
	return Desc{ID: s.id, Size: uint64(len(s.data)), FD: -1, Pid: os.Getpid(), OwnerFD: s.Fd()}
}

// View returns the tensor r names, as a zero-copy view over the mapping. It
// checks bounds, alignment and dtype.
func (s *Segment) View(r Ref) (*tensor.T, error) {
	if r.DType != Float32 {
		return nil, fmt.Errorf("shm: segment %d: unsupported dtype %d", s.id, r.DType)
	}
	n, err := elems(r.Shape)
	if err != nil {
		return nil, fmt.Errorf("shm: segment %d: %w", s.id, err)
	}
	size := uint64(len(s.data))
	// n*4 <= MaxInt cannot wrap; checking the size against the room left
	// after the offset keeps end from wrapping either.
	bytes := uint64(n) * 4
	if r.Offset%4 != 0 || r.Offset > size || bytes > size-r.Offset {
		return nil, fmt.Errorf("shm: segment %d: shape %v at offset %d (%d bytes) outside %d bytes", s.id, r.Shape, r.Offset, bytes, size)
	}
	t := &tensor.T{Shape: append([]int(nil), r.Shape...)}
	if n > 0 {
		t.Data = unsafe.Slice((*float32)(unsafe.Pointer(&s.data[r.Offset])), n)
	} else {
		t.Data = []float32{}
	}
	return t, nil
}

// Locate returns the Ref of t when t's data lies inside this segment.
func (s *Segment) Locate(t *tensor.T) (Ref, bool) {
	if len(t.Data) == 0 || len(s.data) == 0 {
		return Ref{}, false
	}
	p := uintptr(unsafe.Pointer(unsafe.SliceData(t.Data)))
	base := uintptr(unsafe.Pointer(unsafe.SliceData(s.data)))
	if p < base || p+uintptr(len(t.Data))*4 > base+uintptr(len(s.data)) {
		return Ref{}, false
	}
	return Ref{Segment: s.id, Offset: uint64(p - base), Shape: append([]int(nil), t.Shape...), DType: Float32}, true
}

func (s *Segment) contains(addr uintptr) bool {
	if len(s.data) == 0 {
		return false
	}
	base := uintptr(unsafe.Pointer(unsafe.SliceData(s.data)))
	return addr >= base && addr < base+uintptr(len(s.data))
}

// Close unmaps the segment and closes its descriptor. Views into it must no
// longer be used.
func (s *Segment) Close() error {
	var errs []error
	if s.data != nil {
		if err := unix.Munmap(s.data); err != nil {
			errs = append(errs, fmt.Errorf("shm: munmap segment %d: %w", s.id, err))
		}
		s.data = nil
	}
	if s.file != nil {
		if err := s.file.Close(); err != nil {
			errs = append(errs, fmt.Errorf("shm: close segment %d: %w", s.id, err))
		}
		s.file = nil
	}
	return errors.Join(errs...)
}
