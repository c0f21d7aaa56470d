package gemm

import (
	"runtime"
	"sync/atomic"

	"github.com/sslrun/sslrun/core/parallel"
)

// The multi-threaded driver for products whose packed operands fit in a
// few MiB (every W1 GEMM and the square sizes up to 1024); on one thread
// it also takes the A^T products with n <= m (see usePrepack).
//
// The phase driver (driver.go) separates every depth block into a pack
// phase and a compute phase with a barrier between them, and splits the
// packing of both operands across the workers, so that every worker
// computes with panels that another core packed. Here instead C is cut
// into items (a block of rows × a block of columns, over the whole depth)
// that the workers claim one at a time, and op(A) and op(B) are packed
// into buffers that hold every depth block side by side, unit by unit, by
// the first worker that needs a unit: a worker that claims a B unit packs
// it and at once multiplies its row block by it while the panels are
// still in L1. Nothing ever waits for a unit that nobody has claimed, so a
// worker that starts late, or never, costs time but cannot deadlock; and
// because every depth block has its own packed copy, no worker waits for
// others to finish with a buffer before refilling it.
//
// Every worker packs op(B) into a buffer of its own (privateB) rather than
// share one, and when B is the larger operand each worker starts on a
// column block of its own (affinity), so that it packs only its part of B
// and shares the packed A instead. On the 2-vCPU EPYC VM this took the
// 2-thread W1 GEMMs from 0.5-0.9x torch.mm (OpenBLAS) to 0.93-1.35x.
//
// The price is memory: (m + workers·n)·k floats, which prepackMaxFloats
// bounds.

// prepackMaxFloats bounds the packed copies of both operands (16 MiB).
// Larger products go to the phase driver, whose buffers hold one block.
var prepackMaxFloats = 1 << 22

// Unit states of the prepacked driver.
const (
	unitFree    = 0
	unitClaimed = 1
	unitDone    = 2
)

// prepackItemsPerThread is how many items each thread should get, so that
// the last items do not leave a thread idle for long.
var prepackItemsPerThread = 4

// prepackAffinity gives every worker a column block of its own (with
// private B buffers) when there are enough columns.
var prepackAffinity = true

// prepackMaxWorkers bounds the workers that get a private B buffer.
const prepackMaxWorkers = 4

// prepackPrivateB selects private B buffers (see prepack.privateB).
var prepackPrivateB = true

// prepackMinRows is the smallest row block worth splitting to: each B panel
// is loaded into L1 once per row block, so fewer rows than this make the
// kernel wait for B rather than compute.
var prepackMinRows = 48

// prepack holds the prepacked driver's state for one call; it lives in the
// driver so that steady-state calls allocate nothing.
type prepack struct {
	mpad, npad     int // rows and columns of the packed operands
	mcb, ncb       int // rows and columns of an item (multiples of mr, nr)
	tilesM, tilesN int
	depths         int // depth blocks
	groupsB        int // B units per depth block (packGroupB panels each)
	unitsA, unitsB []atomic.Uint32
	nextRow        []atomic.Int64 // per column block: next row block to claim

	// With privateB every worker packs op(B) into a buffer of its own
	// (worker w uses bufBW[w] and unitsBW[w]), otherwise all share
	// d.bufB and unitsB.
	privateB bool
	bufBW    [prepackMaxWorkers][]float32
	unitsBW  [prepackMaxWorkers][]atomic.Uint32
}

// usePrepack reports whether the prepacked driver handles this call, and
// if so sets it up.
func (d *driver) usePrepack(threads int) bool {
	if !d.asm {
		return false
	}
	if threads < 2 && !(d.transA && d.n <= d.m && 2*float64(d.m)*float64(d.n)*float64(d.k) >= float64(parallelFlops)) {
		// On one thread the phase driver is as fast or up to 5% faster,
		// except for op(A) = A^T with n <= m, where packing A^T costs
		// most per flop: packing it a row block at a time, just before
		// the block is used, took the weight gradient 512x128x512 TN from
		// 71 to 98 GFLOP/s and 512x512x512 TN from 95 to 100.
		return false
	}
	m, n, k := d.m, d.n, d.k
	mpad, npad := roundUp(m, mr), roundUp(n, nr)
	pp := &d.pp
	pp.privateB = prepackPrivateB && threads <= prepackMaxWorkers
	copiesB := 1
	if pp.privateB {
		copiesB = threads
	}
	if (mpad+copiesB*npad)*k > prepackMaxFloats {
		return false
	}
	pp.mpad, pp.npad = mpad, npad
	kc := d.kcMax
	pp.depths = ceilDiv(k, kc)

	// Items: as many rows as the L2 block allows, then split rows down to
	// prepackMinRows and columns until every thread has enough items.
	target := prepackItemsPerThread * threads
	panA := mpad / mr
	tm := ceilDiv(m, d.mcMax)
	if tm < target {
		tm = max(tm, min(target, ceilDiv(m, prepackMinRows), panA))
	}
	pp.mcb = roundUp(ceilDiv(m, tm), mr)
	pp.tilesM = ceilDiv(m, pp.mcb)
	tn := ceilDiv(n, d.ncMax)
	if prepackAffinity && pp.privateB && tn < threads && n >= m && npad/nr >= 4*threads {
		// One column block per worker, so that a worker packs only its
		// own part of B unless it runs out of work and helps another.
		// The workers then share the packed A instead, which only pays
		// when B is the larger operand: for m=512, n=1024 (k=784, NT)
		// this took 2 threads from 155 to 178 GFLOP/s, for n=128 it lost
		// 20%.
		tn = threads
	}
	if pp.tilesM*tn < target {
		tn = max(tn, min(ceilDiv(target, pp.tilesM), npad/nr))
	}
	pp.ncb = roundUp(ceilDiv(n, tn), nr)
	pp.tilesN = ceilDiv(n, pp.ncb)
	pp.groupsB = ceilDiv(npad/nr, packGroupB)
	if ceilDiv(pp.ncb/nr, packGroupB)+1 > 64 {
		return false // an item's B units must fit prepackItem's bit mask
	}

	pp.unitsA = resetUnits(pp.unitsA, pp.tilesM*pp.depths)
	if pp.privateB {
		for w := 0; w < threads; w++ {
			pp.unitsBW[w] = resetUnits(pp.unitsBW[w], pp.groupsB*pp.depths)
			if need := npad * k; cap(pp.bufBW[w]) < need {
				pp.bufBW[w] = make([]float32, need)
			}
		}
	} else {
		pp.unitsB = resetUnits(pp.unitsB, pp.groupsB*pp.depths)
	}
	if cap(pp.nextRow) < pp.tilesN {
		pp.nextRow = make([]atomic.Int64, pp.tilesN)
	}
	pp.nextRow = pp.nextRow[:pp.tilesN]
	for i := range pp.nextRow {
		pp.nextRow[i].Store(0)
	}
	if need := mpad * k; cap(d.bufA) < need {
		d.bufA = make([]float32, need)
	}
	if need := npad * k; !pp.privateB && cap(d.bufB) < need {
		d.bufB = make([]float32, need)
	}
	return true
}

// prepackMinSliceCols is the narrowest column slice prepackSlices makes
// before it slices the depth too: narrower slices would leave the two
// workers too few items. A variable only so that tests can slice small
// products.
var prepackMinSliceCols = 256

// prepackSlices returns, for a multi-threaded product too large for the
// prepacked driver as a whole, the width ns and depth kc (a multiple of
// the depth block, or all of k) of the slices it can take one at a time,
// or 0, 0 when even one depth block of a minimal slice does not fit (or
// one thread runs the call). The slices then run one after another, each
// barrier-free inside, later depth slices adding to C and every column
// slice packing A anew (m·k copies against 2·m·ns·k flops): one join per
// slice instead of the phase driver's two barriers per block, at which a
// worker the shared machine deschedules holds up the other. On the W2
// conv4 forward (512x1024x2304, two slices) this took two threads from
// 53-55 to 67-75 GFLOP per CPU-second.
func (d *driver) prepackSlices(threads int) (ns, kc int) {
	if !d.asm || threads < 2 {
		return 0, 0
	}
	copiesB := 1
	if prepackPrivateB && threads <= prepackMaxWorkers {
		copiesB = threads
	}
	mpad := roundUp(d.m, mr)
	minCols := min(roundUp(d.n, nr), prepackMinSliceCols)
	kc = d.k
	if (mpad+copiesB*minCols)*kc > prepackMaxFloats {
		kc = prepackMaxFloats / (mpad + copiesB*minCols) / d.kcMax * d.kcMax
		if kc < d.kcMax {
			return 0, 0
		}
		kc = roundUp(ceilDiv(d.k, ceilDiv(d.k, kc)), d.kcMax) // equal slices
	}
	ns = (prepackMaxFloats/kc - mpad) / copiesB / nr * nr
	if ns >= d.n {
		ns = d.n
	} else {
		ns = roundUp(ceilDiv(d.n, ceilDiv(d.n, ns)), nr)
	}
	if ns >= d.n && kc >= d.k {
		return 0, 0 // the whole product fits: usePrepack takes it
	}
	return ns, kc
}

// prepackSliced runs the call as column slices of ns and depth slices of
// kc through the prepacked driver (see prepackSlices).
func (d *driver) prepackSliced(ns, kc int) {
	a, b, n, k, beta := d.a, d.b, d.n, d.k, d.betaCall
	for j0 := 0; j0 < n; j0 += ns {
		for p0 := 0; p0 < k; p0 += kc {
			// op(A)[:, p0:], op(B)[p0:, j0:] and C[:, j0:] as matrices of
			// their own.
			if d.transA {
				d.a = a[p0*d.lda:]
			} else {
				d.a = a[p0:]
			}
			if d.transB {
				d.b = b[j0*d.ldb+p0:]
			} else {
				d.b = b[p0*d.ldb+j0:]
			}
			d.n, d.k, d.cj0 = min(ns, n-j0), min(kc, k-p0), j0
			d.betaCall = beta
			if p0 > 0 {
				d.betaCall = 1
			}
			if !d.usePrepack(d.threads) {
				panic("gemm: a slice does not fit the prepacked driver")
			}
			parallel.Run(d.threads, 1, &d.ppTask)
		}
	}
	d.n, d.k, d.cj0, d.betaCall = n, k, 0, beta
}

func resetUnits(u []atomic.Uint32, n int) []atomic.Uint32 {
	if cap(u) < n {
		return make([]atomic.Uint32, n)
	}
	u = u[:n]
	for i := range u {
		u[i].Store(unitFree)
	}
	return u
}

// prepackTask is the Task of the prepacked driver.
type prepackTask struct{ d *driver }

// Do claims and computes items until none are left.
func (t *prepackTask) Do(w, _ int) {
	d := t.d
	pp := &d.pp
	bufB, unitsB := d.bufB, pp.unitsB
	if pp.privateB {
		bufB, unitsB = pp.bufBW[w], pp.unitsBW[w]
	}
	// Worker w starts on its own share of the column blocks and then
	// helps with the others'. Within a column block the row blocks go in
	// order, so that workers in the same block share B units (packed a
	// group at a time by whoever comes first) rather than wait for each
	// other's A.
	tn, tm := pp.tilesN, int64(pp.tilesM)
	first := w * tn / max(d.threads, 1)
	for o := 0; o < tn; o++ {
		jb := (first + o) % tn
		for {
			r := pp.nextRow[jb].Add(1) - 1
			if r >= tm {
				break
			}
			d.prepackItem(int(r), jb, bufB, unitsB)
		}
	}
}

// claim tries to take unit u for packing.
func claim(u *atomic.Uint32) bool {
	return u.Load() == unitFree && u.CompareAndSwap(unitFree, unitClaimed)
}

// waitDone waits for a unit that another worker claimed.
func waitDone(u *atomic.Uint32) {
	for spin := 0; u.Load() != unitDone; spin++ {
		if spin > spinBeforeYield {
			runtime.Gosched()
		}
	}
}

// prepackItem computes rows [r*mcb, ...) × columns [jb*ncb, ...) of C over
// the whole depth.
func (d *driver) prepackItem(r, jb int, bufB []float32, unitsB []atomic.Uint32) {
	pp := &d.pp
	m, n, k, kc := d.m, d.n, d.k, d.kcMax
	i0, i1 := r*pp.mcb, min(m, (r+1)*pp.mcb)
	j0, j1 := jb*pp.ncb, min(n, (jb+1)*pp.ncb)
	jp0, jp1 := j0/nr, ceilDiv(j1, nr)
	g0, g1 := jp0/packGroupB, ceilDiv(jp1, packGroupB)
	for pi := 0; pi < pp.depths; pi++ {
		p0 := pi * kc
		kb := min(kc, k-p0)
		beta := float32(1)
		if p0 == 0 {
			beta = d.betaCall
		}
		aBase := p0 * pp.mpad // this depth block's packed A
		bBase := p0 * pp.npad

		ua := &pp.unitsA[pi*pp.tilesM+r]
		if claim(ua) {
			d.prepackA(aBase, i0, i1, p0, kb)
			ua.Store(unitDone)
		} else {
			waitDone(ua)
		}

		// First pass: pack every free B unit and use it while it is hot;
		// second pass: the units others packed.
		var used uint64 // bit g-g0: group g already multiplied
		for g := g0; g < g1; g++ {
			ub := &unitsB[pi*pp.groupsB+g]
			if !claim(ub) {
				continue
			}
			q0, q1 := g*packGroupB, min((g+1)*packGroupB, pp.npad/nr)
			for jp := q0; jp < q1; jp++ {
				j := jp * nr
				d.packBInto(bufB[bBase+j*kb:bBase+(j+nr)*kb], j, min(nr, n-j), p0, kb)
			}
			ub.Store(unitDone)
			d.prepackTiles(bufB, aBase, bBase, i0, i1, max(q0, jp0), min(q1, jp1), kb, beta)
			used |= 1 << (g - g0)
		}
		for g := g0; g < g1; g++ {
			if used&(1<<(g-g0)) != 0 {
				continue
			}
			waitDone(&unitsB[pi*pp.groupsB+g])
			q0, q1 := g*packGroupB, min((g+1)*packGroupB, pp.npad/nr)
			d.prepackTiles(bufB, aBase, bBase, i0, i1, max(q0, jp0), min(q1, jp1), kb, beta)
		}
	}
}

// prepackA packs rows [i0, i1) of op(A), depth [p0, p0+kb), into the depth
// block of bufA at aBase.
func (d *driver) prepackA(aBase, i0, i1, p0, kb int) {
	full := (i1 - i0) / mr
	ip := i0 / mr
	start := 0
	if d.transA && full > 0 {
		// Row by row across all the full panels: see packATDepth.
		lda := d.lda
		_ = d.a[(p0+kb-1)*lda+i0+full*mr-1] // the last element packAT reads
		dst := d.bufA[aBase+ip*mr*kb : aBase+(ip+full)*mr*kb]
		packAT(kb, &d.a[p0*lda+i0], lda, &dst[0], full, mr*kb, d.alpha)
		start = full
	}
	for q := start; q < ceilDiv(i1-i0, mr); q++ {
		i := i0 + q*mr
		o := aBase + (ip+q)*mr*kb
		d.packAInto(d.bufA[o:o+mr*kb], i, min(mr, i1-i), p0, kb)
	}
}

// prepackTiles multiplies rows [i0, i1) of the packed A depth block at
// aBase by the B panels [jp0, jp1) of the depth block at bBase.
func (d *driver) prepackTiles(bufB []float32, aBase, bBase, i0, i1, jp0, jp1, kb int, beta float32) {
	n := d.n
	for jp := jp0; jp < jp1; jp++ {
		j := jp * nr
		bp := bufB[bBase+j*kb : bBase+(j+nr)*kb]
		cols := min(nr, n-j)
		for i := i0; i < i1; i += mr {
			o := aBase + i*kb
			d.tileKB(d.bufA[o:o+mr*kb], bp, i, j, min(mr, i1-i), cols, kb, beta)
		}
	}
}
