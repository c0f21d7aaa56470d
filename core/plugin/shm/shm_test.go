package shm

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sslrun/sslrun/core/tensor"
)

// The read-only test re-executes this test binary as a child that maps a
// segment it inherited as fd 3 and writes to it.
func TestMain(m *testing.M) {
	if mode := os.Getenv("SSLRUN_SHM_CHILD"); mode != "" {
		os.Exit(child(mode))
	}
	os.Exit(m.Run())
}

func child(mode string) int {
	size, _ := strconv.ParseUint(os.Getenv("SSLRUN_SHM_SIZE"), 10, 64)
	writable := mode == "write-rw"
	seg, err := Map(Desc{ID: 1, Size: size, FD: 3}, writable)
	if err != nil {
		fmt.Fprintln(os.Stderr, "map:", err)
		return 2
	}
	v, err := seg.View(Ref{Segment: 1, Offset: 0, Shape: []int{4}, DType: Float32})
	if err != nil {
		fmt.Fprintln(os.Stderr, "view:", err)
		return 2
	}
	fmt.Printf("read %v\n", v.Data[0])
	v.Data[0] = 42 // faults when mapped read-only
	fmt.Println("wrote")
	return 0
}

func TestAllocAlignAndGrow(t *testing.T) {
	a, err := NewArena(4096)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	shapes := [][]int{{3}, {5, 7}, {1}, {512, 4}, {1000}}
	var refs []Ref
	for _, s := range shapes {
		v, r, err := a.Alloc(s...)
		if err != nil {
			t.Fatal(err)
		}
		if r.Offset%Align != 0 {
			t.Errorf("shape %v: offset %d not %d-aligned", s, r.Offset, Align)
		}
		for i := range v.Data {
			v.Data[i] = float32(len(refs)*10000 + i)
		}
		refs = append(refs, r)
	}
	if n := len(a.Segments()); n < 2 {
		t.Fatalf("expected growth into a second segment, have %d", n)
	}
	// Every region still holds its own values: no overlap across growth.
	for k, r := range refs {
		seg := findSeg(a.Segments(), r.Segment)
		v, err := seg.View(r)
		if err != nil {
			t.Fatal(err)
		}
		for i, x := range v.Data {
			if x != float32(k*10000+i) {
				t.Fatalf("ref %d elem %d = %v", k, i, x)
			}
		}
	}
	used := a.used
	if err := a.Reset(); err != nil {
		t.Fatal(err)
	}
	if segs := a.Segments(); len(segs) != 1 || segs[0].Size() < used {
		t.Fatalf("after reset: %d segments, want 1 of >= %d bytes", len(segs), used)
	}
	// The same step now fits in one segment.
	for _, s := range shapes {
		if _, _, err := a.Alloc(s...); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(a.Segments()); n != 1 {
		t.Fatalf("after reset the step spilled into %d segments", n)
	}
}

func findSeg(segs []*Segment, id uint32) *Segment {
	for _, s := range segs {
		if s.ID() == id {
			return s
		}
	}
	return nil
}

func TestPutZeroCopy(t *testing.T) {
	a, err := NewArena(1 << 16)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	in, r1, err := a.Alloc(2, 3)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := a.Put(in)
	if err != nil {
		t.Fatal(err)
	}
	if r1.Offset != r2.Offset || r1.Segment != r2.Segment {
		t.Errorf("Put of an arena tensor copied: %+v vs %+v", r1, r2)
	}
	heap, _ := tensor.FromSlice([]float32{1, 2, 3, 4}, 2, 2)
	r3, err := a.Put(heap)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := a.Segments()[0].View(r3)
	if fmt.Sprint(v.Data) != "[1 2 3 4]" {
		t.Errorf("copied data %v", v.Data)
	}
}

func TestRemoteViaProc(t *testing.T) {
	seg, err := Create(7, 8192)
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	w, err := seg.View(Ref{Segment: 7, Offset: 128, Shape: []int{2, 2}, DType: Float32})
	if err != nil {
		t.Fatal(err)
	}
	copy(w.Data, []float32{1, 2, 3, 4})
	r := NewRemote(false)
	defer r.Close()
	if err := r.Sync([]Desc{seg.Desc()}); err != nil {
		t.Fatal(err)
	}
	v, err := r.View(Ref{Segment: 7, Offset: 128, Shape: []int{2, 2}, DType: Float32})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(v.Data) != "[1 2 3 4]" {
		t.Errorf("remote view %v", v.Data)
	}
	w.Data[0] = 9 // shared, not copied
	if v.Data[0] != 9 {
		t.Error("remote view does not share memory")
	}
	tests := []struct {
		name string
		ref  Ref
	}{
		{"past end", Ref{Segment: 7, Offset: 8190, Shape: []int{4}, DType: Float32}},
		{"unknown segment", Ref{Segment: 8, Shape: []int{1}, DType: Float32}},
		{"bad dtype", Ref{Segment: 7, Shape: []int{1}, DType: 9}},
		{"negative dim", Ref{Segment: 7, Shape: []int{-1}, DType: Float32}},
	}
	for _, tc := range tests {
		if _, err := r.View(tc.ref); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
}

func TestUnsealedRejected(t *testing.T) {
	fd, err := unix.MemfdCreate("unsealed", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Ftruncate(fd, 4096); err != nil {
		t.Fatal(err)
	}
	_, err = Map(Desc{ID: 1, Size: 4096, FD: -1, Pid: os.Getpid(), OwnerFD: fd}, false)
	if err == nil || !strings.Contains(err.Error(), "not size-sealed") {
		t.Fatalf("err = %v, want not size-sealed", err)
	}
}

// TestReadOnlyFaults maps a segment read-only in a child process and writes
// to it: the child must die of a fault, and the host's data must be intact.
// The writable control proves the child otherwise works.
func TestReadOnlyFaults(t *testing.T) {
	for _, mode := range []string{"write-ro", "write-rw"} {
		t.Run(mode, func(t *testing.T) {
			seg, err := Create(1, 4096)
			if err != nil {
				t.Fatal(err)
			}
			defer seg.Close()
			v, _ := seg.View(Ref{Segment: 1, Shape: []int{4}, DType: Float32})
			v.Data[0] = 7
			f, err := seg.ReadOnlyFile()
			if mode == "write-rw" {
				f, err = os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", seg.Fd()), os.O_RDWR, 0)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), "SSLRUN_SHM_CHILD="+mode, fmt.Sprintf("SSLRUN_SHM_SIZE=%d", seg.Size()))
			cmd.ExtraFiles = []*os.File{f}
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err = cmd.Run()
			if mode == "write-rw" {
				if err != nil || v.Data[0] != 42 {
					t.Fatalf("writable child: err %v, value %v, stderr %s", err, v.Data[0], stderr.String())
				}
				return
			}
			if err == nil || strings.Contains(stdout.String(), "wrote") {
				t.Fatalf("child wrote to a read-only mapping: %v %q", err, stdout.String())
			}
			if !strings.Contains(stdout.String(), "read 7") {
				t.Fatalf("child could not read: stdout %q stderr %s", stdout.String(), stderr.String())
			}
			if !strings.Contains(stderr.String(), "unexpected fault address") {
				t.Errorf("child did not fault: %s", stderr.String())
			}
			if v.Data[0] != 7 {
				t.Errorf("host data changed to %v", v.Data[0])
			}
		})
	}
}

func TestReadOnlyDescriptorCannotMapWritable(t *testing.T) {
	seg, err := Create(1, 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	f, err := seg.ReadOnlyFile()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := unix.Mmap(int(f.Fd()), 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err == nil {
		t.Fatal("a read-only descriptor was mapped writable")
	}
}

// TestViewRejectsOverflowingShape feeds View shapes whose element count
// overflows int (each dimension alone looks harmless). Before the
// overflow-checked count, [1<<40, 1<<24] wrapped to 0 elements and View
// returned a tensor with no values but a huge shape.
func TestViewRejectsOverflowingShape(t *testing.T) {
	seg, err := Create(3, 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	r := NewRemote(false)
	defer r.Close()
	if err := r.Sync([]Desc{seg.Desc()}); err != nil {
		t.Fatal(err)
	}
	a, err := NewArena(0)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	tests := []struct {
		name  string
		shape []int
		ok    bool
		n     int
	}{
		{"wraps to zero", []int{1 << 40, 1 << 24}, false, 0},
		{"wraps to small", []int{1<<62 + 1, 4}, false, 0},
		{"three dims", []int{1 << 31, 1 << 31, 4}, false, 0},
		{"bytes overflow", []int{math.MaxInt/4 + 1}, false, 0},
		{"larger than segment", []int{1 << 20}, false, 0},
		{"empty with huge dim", []int{0, 1 << 62}, true, 0},
		{"fits", []int{4, 8}, true, 32},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ref := Ref{Segment: 3, Shape: tc.shape, DType: Float32}
			for _, view := range []func(Ref) (*tensor.T, error){seg.View, r.View} {
				v, err := view(ref)
				if !tc.ok {
					if err == nil {
						t.Fatalf("shape %v: View returned %d values, want an error", tc.shape, len(v.Data))
					}
					if !strings.Contains(err.Error(), fmt.Sprint(tc.shape)) {
						t.Errorf("error %q does not name the shape %v", err, tc.shape)
					}
					continue
				}
				if err != nil {
					t.Fatalf("shape %v: %v", tc.shape, err)
				}
				if len(v.Data) != tc.n {
					t.Errorf("shape %v: %d values, want %d", tc.shape, len(v.Data), tc.n)
				}
			}
			// Alloc must refuse the overflowing shapes too (a shape that is
			// merely larger than one segment is fine: the arena grows).
			if !tc.ok && tc.name != "larger than segment" {
				if _, _, err := a.Alloc(tc.shape...); err == nil || !strings.Contains(err.Error(), fmt.Sprint(tc.shape)) {
					t.Errorf("Alloc(%v): %v, want an error naming the shape", tc.shape, err)
				}
			}
		})
	}
}

// TestRemoteRegrowKeepsOldViews re-announces a segment larger while a view
// into the old mapping is live. The old mapping must stay valid until Close:
// before the fix Sync unmapped it and reading the view faulted the process.
func TestRemoteRegrowKeepsOldViews(t *testing.T) {
	small, err := Create(5, 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer small.Close()
	w, err := small.View(Ref{Segment: 5, Shape: []int{4}, DType: Float32})
	if err != nil {
		t.Fatal(err)
	}
	copy(w.Data, []float32{1, 2, 3, 4})
	r := NewRemote(false)
	if err := r.Sync([]Desc{small.Desc()}); err != nil {
		t.Fatal(err)
	}
	old, err := r.View(Ref{Segment: 5, Shape: []int{4}, DType: Float32})
	if err != nil {
		t.Fatal(err)
	}
	big, err := Create(5, 4*4096)
	if err != nil {
		t.Fatal(err)
	}
	defer big.Close()
	if err := r.Sync([]Desc{big.Desc()}); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(old.Data) != "[1 2 3 4]" { // faults if the old mapping was unmapped
		t.Errorf("old view reads %v", old.Data)
	}
	if _, err := r.View(Ref{Segment: 5, Offset: 3 * 4096, Shape: []int{16}, DType: Float32}); err != nil {
		t.Errorf("view into the larger mapping: %v", err)
	}
	if !r.Contains(uintptr(unsafe.Pointer(&old.Data[0]))) {
		t.Error("Contains does not know the retired mapping")
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestRemoteViewCloseRace runs View concurrently with Close; under -race it
// catches View reading a segment's mapping after dropping the lock.
func TestRemoteViewCloseRace(t *testing.T) {
	seg, err := Create(6, 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	r := NewRemote(false)
	if err := r.Sync([]Desc{seg.Desc()}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 1000 {
			if _, err := r.View(Ref{Segment: 6, Shape: []int{4}, DType: Float32}); err != nil {
				return // closed: unknown segment
			}
		}
	}()
	if err := r.Close(); err != nil {
		t.Error(err)
	}
	<-done
}
