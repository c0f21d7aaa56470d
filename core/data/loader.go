package data

import (
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/sslrun/sslrun/core/data/augment"
	"github.com/sslrun/sslrun/core/tensor"
)

// Config configures a Loader.
type Config struct {
	Source Source
	// Views holds one augmentation pipeline per view (two for SimSiam,
	// SimCLR and BYOL; BYOL's differ). Every pipeline must end in a fixed
	// output shape (a crop or resize) unless the source already has one.
	Views     []augment.Pipeline
	BatchSize int
	Shuffle   bool // reshuffle every epoch from (Seed, epoch)
	DropLast  bool // drop the last incomplete batch
	Seed      uint64
	// Workers is the number of augmentation goroutines (default
	// GOMAXPROCS). Results do not depend on it.
	Workers int
	// Prefetch is the number of batch buffers in the ring, i.e. how many
	// batches may be prepared ahead of the consumer (default 2*Workers,
	// at least 2).
	Prefetch int
}

// Batch is one prepared batch. It belongs to the loader: the consumer must
// hand it back with Iter.Release once done, and must not keep references to
// its tensors afterwards, because the buffers are refilled.
type Batch struct {
	Epoch int // epoch the batch belongs to
	Index int // batch index within the epoch
	// Views[v] is a [n, C, H, W] tensor holding view v of the n samples.
	Views []*tensor.T
	// Labels[i] is the label of sample i (-1 when unlabelled).
	Labels []int
	// Indices[i] is the dataset index of sample i.
	Indices []int

	backing [][]float32 // full-capacity data of each view
	chw     []int       // C*H*W of each view
	shapes  [][4]int
}

// Loader turns a Source into augmented multi-view batches with worker
// goroutines, prefetching and per-epoch shuffling. Every random choice of
// sample i in epoch e, view v, comes from an RNG derived from
// (Seed, e, i, v), and the shuffle from (Seed, e), so the batches are
// byte-identical whatever the worker count or scheduling.
//
// The workers are dedicated goroutines rather than core/parallel's pool:
// they run concurrently with the training step, which uses that pool.
type Loader struct {
	cfg    Config
	n      int
	shapes [][3]int
	bufs   []*Batch
	perm   []int
	active bool
	mu     sync.Mutex
}

// NewLoader validates cfg and allocates the batch ring.
func NewLoader(cfg Config) (*Loader, error) {
	if cfg.Source == nil {
		return nil, fmt.Errorf("data: loader: no source")
	}
	if cfg.BatchSize <= 0 {
		return nil, fmt.Errorf("data: loader: batch size %d must be positive", cfg.BatchSize)
	}
	if len(cfg.Views) == 0 {
		return nil, fmt.Errorf("data: loader: no views (give one pipeline per view; an empty pipeline is the identity)")
	}
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	if cfg.Prefetch <= 0 {
		cfg.Prefetch = max(2, 2*cfg.Workers)
	}
	l := &Loader{cfg: cfg, n: cfg.Source.Len()}
	if l.n == 0 {
		return nil, fmt.Errorf("data: loader: empty source")
	}
	c, h, w := cfg.Source.Shape()
	for v, p := range cfg.Views {
		if err := p.Validate(); err != nil {
			return nil, fmt.Errorf("data: loader: view %d: %w", v, err)
		}
		oc, oh, ow := p.OutShape(c, h, w)
		l.shapes = append(l.shapes, [3]int{oc, oh, ow})
	}
	if l.BatchesPerEpoch() == 0 {
		return nil, fmt.Errorf("data: loader: %d samples make no full batch of %d with DropLast", l.n, cfg.BatchSize)
	}
	for range cfg.Prefetch {
		l.bufs = append(l.bufs, l.newBatch())
	}
	return l, nil
}

func (l *Loader) newBatch() *Batch {
	B := l.cfg.BatchSize
	b := &Batch{Labels: make([]int, B), Indices: make([]int, B)}
	for _, s := range l.shapes {
		chw := s[0] * s[1] * s[2]
		data := make([]float32, B*chw)
		b.backing = append(b.backing, data)
		b.chw = append(b.chw, chw)
		b.shapes = append(b.shapes, [4]int{B, s[0], s[1], s[2]})
		b.Views = append(b.Views, &tensor.T{Shape: []int{B, s[0], s[1], s[2]}, Data: data})
	}
	return b
}

// setSize makes the batch hold n samples (n < BatchSize only for the last
// batch without DropLast) without reallocating.
func (b *Batch) setSize(n int) {
	for v, t := range b.Views {
		t.Shape[0] = n
		t.Data = b.backing[v][:n*b.chw[v]]
	}
	b.Labels = b.Labels[:n]
	b.Indices = b.Indices[:n]
}

// Len is the number of samples per epoch drawn from the source.
func (l *Loader) Len() int { return l.n }

// BatchesPerEpoch is the number of batches in every epoch.
func (l *Loader) BatchesPerEpoch() int {
	if l.cfg.DropLast {
		return l.n / l.cfg.BatchSize
	}
	return (l.n + l.cfg.BatchSize - 1) / l.cfg.BatchSize
}

// ViewShape returns the (C, H, W) of view v.
func (l *Loader) ViewShape(v int) (int, int, int) {
	s := l.shapes[v]
	return s[0], s[1], s[2]
}

// Order returns the sample order of an epoch (a copy): the identity without
// Shuffle, otherwise a permutation drawn from (Seed, epoch).
func (l *Loader) Order(epoch int) []int {
	p := make([]int, l.n)
	l.order(epoch, p)
	return p
}

func (l *Loader) order(epoch int, p []int) {
	for i := range p {
		p[i] = i
	}
	if l.cfg.Shuffle {
		r := augment.Derive(l.cfg.Seed, uint64(epoch), math.MaxUint64)
		r.Shuffle(p)
	}
}

// Iter delivers the batches of one epoch in order. Only one Iter per Loader
// may be open at a time, and it must be used from one goroutine.
type Iter struct {
	l      *Loader
	epoch  int
	nb     int
	want   int
	held   int
	next   atomic.Int64
	free   chan *Batch
	done   chan *Batch
	quit   chan struct{}
	slots  []*Batch
	wg     sync.WaitGroup
	closed bool
}

// Epoch starts the workers for epoch, beginning at batch startBatch (for
// resuming a run mid-epoch; 0 normally). It returns an error if another
// Iter is still open or startBatch is out of range.
func (l *Loader) Epoch(epoch, startBatch int) (*Iter, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.active {
		return nil, fmt.Errorf("data: loader: an epoch iterator is still open; Close it first")
	}
	nb := l.BatchesPerEpoch()
	if startBatch < 0 || startBatch > nb {
		return nil, fmt.Errorf("data: loader: start batch %d outside [0, %d]", startBatch, nb)
	}
	l.active = true
	if l.perm == nil {
		l.perm = make([]int, l.n)
	}
	l.order(epoch, l.perm)
	R := len(l.bufs)
	it := &Iter{l: l, epoch: epoch, nb: nb, want: startBatch,
		free: make(chan *Batch, R), done: make(chan *Batch, R), quit: make(chan struct{}), slots: make([]*Batch, R)}
	it.next.Store(int64(startBatch))
	for _, b := range l.bufs {
		it.free <- b
	}
	for range l.cfg.Workers {
		it.wg.Add(1)
		go it.work()
	}
	return it, nil
}

// work is one worker goroutine: take a free buffer, claim the next batch
// index, fill it, hand it to the consumer. A buffer is claimed before the
// index, so at most len(ring) batches are in flight and their indices lie
// in [want, want+len(ring)), which makes slots[index % len(ring)] unique.
func (it *Iter) work() {
	defer it.wg.Done()
	l := it.l
	var (
		src, img augment.Image
		scratch  augment.Scratch
		// Declared once: its address goes through an interface call and
		// would otherwise escape to the heap for every sample.
		rng augment.RNG
	)
	for {
		var b *Batch
		select {
		case <-it.quit:
			return
		case b = <-it.free:
		}
		k := int(it.next.Add(1) - 1)
		if k >= it.nb {
			it.free <- b
			return
		}
		lo := k * l.cfg.BatchSize
		n := min(l.cfg.BatchSize, l.n-lo)
		b.Epoch, b.Index = it.epoch, k
		b.setSize(n)
		for s := 0; s < n; s++ {
			idx := l.perm[lo+s]
			b.Indices[s] = idx
			b.Labels[s] = l.cfg.Source.Load(idx, &src)
			for v, p := range l.cfg.Views {
				img.CopyFrom(&src)
				rng = augment.Derive(l.cfg.Seed, uint64(it.epoch), uint64(idx), uint64(v))
				p.Apply(&img, &rng, &scratch)
				chw := b.chw[v]
				if img.Len() != chw {
					// OutShape and Apply disagree: a bug in a Step.
					panic(fmt.Sprintf("data: loader: view %d produced %v, pipeline declared %v", v, &img, l.shapes[v]))
				}
				copy(b.backing[v][s*chw:(s+1)*chw], img.Pix)
			}
		}
		it.done <- b
	}
}

// Next returns the next batch in order, or false at the end of the epoch.
// It blocks while the batch is being prepared. Holding every ring buffer
// without releasing and asking for more is a programmer error and panics
// rather than deadlocking.
func (it *Iter) Next() (*Batch, bool) {
	if it.closed || it.want >= it.nb {
		return nil, false
	}
	R := len(it.slots)
	if it.held >= R {
		panic("data: loader: all prefetch buffers are held by the consumer; Release batches before calling Next")
	}
	for {
		if b := it.slots[it.want%R]; b != nil && b.Index == it.want {
			it.slots[it.want%R] = nil
			it.want++
			it.held++
			return b, true
		}
		b := <-it.done
		it.slots[b.Index%R] = b
	}
}

// Release returns a batch's buffers to the ring for reuse.
func (it *Iter) Release(b *Batch) {
	if b == nil || it.closed {
		return
	}
	it.held--
	it.free <- b
}

// Close stops the workers and waits for them. Batches obtained from this
// Iter must not be used afterwards. Close is idempotent.
func (it *Iter) Close() {
	if it.closed {
		return
	}
	it.closed = true
	close(it.quit)
	it.wg.Wait()
	it.l.mu.Lock()
	it.l.active = false
	it.l.mu.Unlock()
}
