package data

import (
	"bytes"
	"encoding/binary"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/sslrun/sslrun/core/data/augment"
)

// synthetic returns a dataset of n random c x h x w images with labels
// i % classes.
func synthetic(n, c, h, w, classes int) *Dataset {
	r := augment.NewRNG(42)
	d := &Dataset{Name: "synthetic", C: c, H: h, W: w, Pix: make([]uint8, n*c*h*w), Labels: make([]int32, n), NumClasses: classes}
	for i := range d.Pix {
		d.Pix[i] = uint8(r.Uint64())
	}
	for i := range d.Labels {
		d.Labels[i] = int32(i % classes)
	}
	return d
}

// snapshot is a byte-exact copy of a batch.
type snapshot struct {
	index   int
	shapes  [][]int
	views   [][]byte
	labels  []int
	indices []int
}

func takeSnapshot(b *Batch) snapshot {
	s := snapshot{index: b.Index, labels: slices.Clone(b.Labels), indices: slices.Clone(b.Indices)}
	for _, v := range b.Views {
		s.shapes = append(s.shapes, slices.Clone(v.Shape))
		raw := make([]byte, 0, 4*len(v.Data))
		for _, f := range v.Data {
			raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(f))
		}
		s.views = append(s.views, raw)
	}
	return s
}

func runEpoch(t *testing.T, l *Loader, epoch, start int) []snapshot {
	t.Helper()
	it, err := l.Epoch(epoch, start)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var out []snapshot
	for {
		b, ok := it.Next()
		if !ok {
			return out
		}
		if b.Epoch != epoch {
			t.Fatalf("batch epoch %d, want %d", b.Epoch, epoch)
		}
		out = append(out, takeSnapshot(b))
		it.Release(b)
	}
}

func equalSnapshots(a, b []snapshot) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].index != b[i].index || !slices.Equal(a[i].labels, b[i].labels) || !slices.Equal(a[i].indices, b[i].indices) {
			return false
		}
		for v := range a[i].views {
			if !bytes.Equal(a[i].views[v], b[i].views[v]) || !slices.Equal(a[i].shapes[v], b[i].shapes[v]) {
				return false
			}
		}
	}
	return true
}

func testViews() []augment.Pipeline {
	v1, v2 := augment.BYOLViews(8, augment.CIFAR10Mean, augment.CIFAR10Std)
	v2[4].(*augment.GaussianBlur).Kernel = 3
	return []augment.Pipeline{augment.SimCLRView(8, augment.CIFAR10Mean, augment.CIFAR10Std), v1, v2}
}

func TestLoaderWorkerIndependence(t *testing.T) {
	ds := synthetic(37, 3, 12, 10, 5)
	var ref [][]snapshot
	for _, cfg := range []struct{ workers, prefetch int }{{1, 1}, {4, 3}, {2, 8}, {3, 0}} {
		l, err := NewLoader(Config{Source: ds, Views: testViews(), BatchSize: 8, Shuffle: true, Seed: 7, Workers: cfg.workers, Prefetch: cfg.prefetch})
		if err != nil {
			t.Fatal(err)
		}
		got := [][]snapshot{runEpoch(t, l, 0, 0), runEpoch(t, l, 1, 0)}
		if ref == nil {
			ref = got
			continue
		}
		for e := range got {
			if !equalSnapshots(got[e], ref[e]) {
				t.Errorf("workers=%d prefetch=%d: epoch %d differs from workers=1", cfg.workers, cfg.prefetch, e)
			}
		}
	}
	// Structure of the reference run.
	e0, e1 := ref[0], ref[1]
	if len(e0) != 5 || e0[4].shapes[0][0] != 5 || !slices.Equal(e0[0].shapes[0], []int{8, 3, 8, 8}) {
		t.Fatalf("batches %d, last shape %v", len(e0), e0[len(e0)-1].shapes[0])
	}
	var seen []int
	for _, b := range e0 {
		for i, idx := range b.indices {
			if b.labels[i] != int(ds.Labels[idx]) {
				t.Fatalf("label of index %d = %d", idx, b.labels[i])
			}
		}
		seen = append(seen, b.indices...)
	}
	order0 := slices.Clone(seen)
	slices.Sort(seen)
	for i, v := range seen {
		if v != i {
			t.Fatalf("epoch 0 is not a permutation: %v", seen)
		}
	}
	if slices.Equal(order0[:8], e1[0].indices) {
		t.Error("epoch 1 has the same order as epoch 0")
	}
	if bytes.Equal(e0[0].views[0], e0[0].views[1][:len(e0[0].views[0])]) {
		t.Error("views 0 and 1 identical")
	}
}

func TestLoaderResumeAndDropLast(t *testing.T) {
	ds := synthetic(37, 1, 9, 9, 3)
	views := []augment.Pipeline{augment.MNISTView(7), augment.MNISTView(7)}
	l, err := NewLoader(Config{Source: ds, Views: views, BatchSize: 8, Shuffle: true, DropLast: true, Seed: 3, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	if l.BatchesPerEpoch() != 4 {
		t.Fatalf("BatchesPerEpoch = %d, want 4", l.BatchesPerEpoch())
	}
	full := runEpoch(t, l, 2, 0)
	resumed := runEpoch(t, l, 2, 3)
	if len(full) != 4 || !equalSnapshots(full[3:], resumed) {
		t.Errorf("resume at batch 3 differs (%d vs %d batches)", len(full)-3, len(resumed))
	}
	if n := len(runEpoch(t, l, 2, 4)); n != 0 {
		t.Errorf("start at the end gave %d batches", n)
	}
	if _, err := l.Epoch(0, 5); err == nil {
		t.Error("start batch past the end accepted")
	}

	noShuffle, _ := NewLoader(Config{Source: ds, Views: views, BatchSize: 10, Seed: 3, Workers: 3})
	got := runEpoch(t, noShuffle, 0, 0)
	if len(got) != 4 || len(got[3].indices) != 7 || got[3].indices[6] != 36 || got[0].indices[4] != 4 {
		t.Errorf("unshuffled epoch: %d batches, last %v", len(got), got[len(got)-1].indices)
	}
}

func TestLoaderLifecycle(t *testing.T) {
	ds := synthetic(50, 1, 8, 8, 2)
	l, err := NewLoader(Config{Source: ds, Views: []augment.Pipeline{nil}, BatchSize: 4, Workers: 2, Prefetch: 2})
	if err != nil {
		t.Fatal(err)
	}
	it, err := l.Epoch(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Epoch(1, 0); err == nil {
		t.Error("second open iterator accepted")
	}
	b, _ := it.Next()
	// An empty pipeline is ToTensor: bytes / 255.
	if b.Views[0].Data[5] != float32(ds.Pix[5])/255 {
		t.Errorf("identity view %v, want %v", b.Views[0].Data[5], float32(ds.Pix[5])/255)
	}
	it.Release(b)
	// Close mid-epoch with workers blocked on a full ring.
	time.Sleep(10 * time.Millisecond)
	it.Close()
	it.Close()
	if _, err := l.Epoch(1, 0); err != nil {
		t.Errorf("reopen after Close: %v", err)
	}
}

func TestLoaderConfigErrors(t *testing.T) {
	ds := synthetic(5, 1, 8, 8, 2)
	good := []augment.Pipeline{augment.MNISTView(8)}
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no source", Config{Views: good, BatchSize: 2}},
		{"no views", Config{Source: ds, BatchSize: 2}},
		{"zero batch", Config{Source: ds, Views: good}},
		{"no full batch", Config{Source: ds, Views: good, BatchSize: 6, DropLast: true}},
		{"bad step", Config{Source: ds, Views: []augment.Pipeline{{&augment.GaussianBlur{Kernel: 4, SigmaMin: 0.1, SigmaMax: 2, P: 1}}}, BatchSize: 2}},
	}
	for _, tc := range tests {
		if _, err := NewLoader(tc.cfg); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}
