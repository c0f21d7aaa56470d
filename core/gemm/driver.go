package gemm

import (
	"runtime"
	"sync/atomic"

	"github.com/sslrun/sslrun/core/parallel"
)

// Register block of the micro-kernel: it computes an mr×nr tile of C.
// 6×16 uses 12 of the 16 ymm registers for accumulators, two for a row of
// B and two for broadcast elements of A, and needs 8 loads per 12 FMAs,
// well within the two load ports while both FMA pipes stay busy.
const (
	mr = 6
	nr = 16
)

// Cache blocking, sized for Zen3 (32 KiB L1d, 512 KiB L2 per core): a packed
// B micro-panel (kc×nr×4 B = 16 KiB) stays in L1 while the kernel walks down
// the packed A block (mc×kc×4 B = 144 KiB) that stays in L2; the packed B
// block (kc×nc×4 B = 2 MiB) and the packed A chunk live in the shared L3.
// On the shared 2-core VM, mc 72..192 and kc 192..512 measured within the
// noise (±10%) of each other. They are variables only so that benchmarks
// can retune them (SSLRUN_GEMM_BLOCKS, see bench_test.go).
var (
	blockMC = 144  // rows of an A block, a multiple of mr
	blockKC = 256  // depth of a packed block
	blockNC = 2048 // columns of a B block, a multiple of nr
	blockMB = 4096 // rows of A packed at once, a multiple of mr
)

// parallelFlops is the size (2*m*n*k) below which Sgemm stays on the calling
// goroutine: handing work to another core costs a few microseconds, which
// only pays back once the product takes well over that on one core. On the
// shared 2-core VM (BenchmarkSgemmSmall with SSLRUN_GEMM_PARFLOPS=0) two
// threads lost up to 128^3 (4.2 MFLOP, ~42 us on one core) and won from
// 192^3 (14 MFLOP) on; 8.4 MFLOP (~160^3) sits between.
var parallelFlops = 1 << 23

// driver holds one Sgemm call's arguments, its packing buffers and the
// Task value handed to core/parallel. It is recycled through a free list
// so that steady-state calls allocate nothing.
type driver struct {
	transA, transB bool
	m, n, k        int
	alpha          float32
	a, b, c        []float32
	lda, ldb, ldc  int
	asm            bool

	// cBlk > 0 stores C as column blocks of cBlk columns, block q at
	// c[q*cBlkStride:] (SgemmBlockedC); 0 is a plain row-major C. cj0 is
	// the column of C where the product being run starts (a column slice,
	// see prepackSlices).
	cBlk, cBlkStride int
	cj0              int

	// The block being worked on: rows [i0, i0+mb), columns [j0, j0+nb),
	// depth [p0, p0+kb) of the product, and the beta that applies to it (the
	// caller's for the first depth block, 1 for the ones that accumulate).
	i0, mb, j0, nb, p0, kb int
	beta                   float32

	panA, panB int // mr-row panels of A and nr-column panels of B in the block
	unitA      int // packing units of A (see packUnit)
	mcb        int // rows per compute tile, a multiple of mr
	tilesM     int // compute tiles down the block

	bufA, bufB []float32

	units, tiles int  // work items of the pack and compute phases
	atDepth      bool // A units are depth chunks (see packATDepth)

	// The call runs as a sequence of phases, two per block: pack, then
	// compute. state holds phase<<40 | work items in the phase<<20 | next
	// item to claim; workers claim items with one atomic add, so a worker
	// that the (shared) machine deschedules does not hold up a fixed share
	// of the block. done counts finished items; whoever finishes the last
	// one sets up the next phase. Workers only ever wait for claimed items
	// to finish, never for each other to arrive, so a worker that starts
	// late (or never, or runs after the others returned) cannot deadlock.
	state    atomic.Uint64
	done     atomic.Int64
	finished atomic.Bool
	mcMax    int // blocking for this call (read once, see blockMC)
	kcMax    int
	ncMax    int
	mbMax    int
	threads  int
	betaCall float32

	team teamTask

	pp     prepack // state of the prepacked driver (prepacked.go)
	ppTask prepackTask
}

// spinBeforeYield is how many times a waiting worker polls the phase
// before it starts yielding its thread (each poll is a few ns).
var spinBeforeYield = 20000

const (
	phaseShift = 40
	totalShift = 20
	itemMask   = 1<<totalShift - 1
)

// Packing is split across workers in units of 48 rows of A (8 panels) or
// 48 columns of B (3 panels) so that every unit copies the same amount.
// A^T is packed in units of atDepthChunk depth steps instead.
const (
	packGroupA   = 8
	packGroupB   = 3
	atDepthChunk = 32
)

type teamTask struct{ d *driver }

var drivers = parallel.NewFreeList(16, func() *driver {
	d := new(driver)
	d.team.d = d
	d.ppTask.d = d
	return d
})

// sgemm is Sgemm for m, n, k > 0 and alpha != 0 with checked arguments.
func sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	sgemmBlocked(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, 0, 0)
}

// sgemmBlocked is sgemm with C in column blocks of blk (0: plain C).
func sgemmBlocked(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc, blk, blkStride int) {
	d := drivers.Get()
	d.cBlk, d.cBlkStride, d.cj0 = blk, blkStride, 0
	d.transA, d.transB = transA, transB
	d.m, d.n, d.k = m, n, k
	d.alpha = alpha
	d.a, d.b, d.c = a, b, c
	d.lda, d.ldb, d.ldc = lda, ldb, ldc
	d.asm = hasAsm && !forceGeneric.Load()

	threads := 1
	if 2*float64(m)*float64(n)*float64(k) >= float64(parallelFlops) {
		threads = parallel.Threads()
	}
	d.mcMax, d.kcMax, d.ncMax, d.mbMax = blockMC, blockKC, blockNC, blockMB
	d.threads, d.betaCall = threads, beta
	if d.usePrepack(threads) {
		parallel.Run(threads, 1, &d.ppTask)
		d.a, d.b, d.c = nil, nil, nil
		drivers.Put(d)
		return
	}
	if ns, kc := d.prepackSlices(threads); ns > 0 {
		d.prepackSliced(ns, kc)
		d.a, d.b, d.c = nil, nil, nil
		drivers.Put(d)
		return
	}
	if need := roundUp(min(m, d.mbMax), mr) * min(k, d.kcMax); cap(d.bufA) < need {
		d.bufA = make([]float32, need)
	}
	if need := roundUp(min(n, d.ncMax), nr) * min(k, d.kcMax); cap(d.bufB) < need {
		d.bufB = make([]float32, need)
	}
	d.threads, d.betaCall = threads, beta
	d.i0, d.j0, d.p0 = 0, 0, 0
	d.startBlock()
	d.finished.Store(false)
	d.done.Store(0)
	d.state.Store(uint64(d.units) << totalShift) // phase 0: pack block 0
	if threads > 1 {
		parallel.Run(threads, 1, &d.team)
	} else {
		d.team.Do(0, 1)
	}
	d.a, d.b, d.c = nil, nil, nil // do not keep the caller's memory alive
	drivers.Put(d)
}

// split chooses the compute tiles for the current mb×nb block: row blocks of
// at most mcMax rows, of equal height, and enough of them that every thread
// gets work when the block is only a few B panels wide.
func (d *driver) split(mcMax, threads int) {
	tiles := ceilDiv(d.mb, mcMax)
	if threads > 1 && tiles*d.panB < 2*threads {
		tiles = min(max(tiles, ceilDiv(2*threads, d.panB)), d.panA)
	}
	d.mcb = roundUp(ceilDiv(d.mb, tiles), mr)
	d.tilesM = ceilDiv(d.mb, d.mcb)
}

// startBlock sets up the block at (i0, j0, p0).
func (d *driver) startBlock() {
	d.mb = min(d.mbMax, d.m-d.i0)
	d.panA = ceilDiv(d.mb, mr)
	d.nb = min(d.ncMax, d.n-d.j0)
	d.panB = ceilDiv(d.nb, nr)
	d.split(d.mcMax, d.threads)
	d.kb = min(d.kcMax, d.k-d.p0)
	d.beta = d.betaCall
	if d.p0 > 0 {
		d.beta = 1
	}
	d.setUnits()
}

// advance is run by the worker that finished the last item of phase ph: it
// sets up phase ph+1 (the compute phase of the same block, or the next
// block's packing) and publishes it, or marks the call finished.
func (d *driver) advance(ph uint64) {
	total := d.tiles
	if ph%2 == 1 {
		// Next block: depth innermost, as the packed A chunk and B block
		// are rebuilt for every (i0, j0, p0) anyway.
		d.p0 += d.kcMax
		if d.p0 >= d.k {
			d.p0 = 0
			d.j0 += d.ncMax
			if d.j0 >= d.n {
				d.j0 = 0
				d.i0 += d.mbMax
				if d.i0 >= d.m {
					d.finished.Store(true)
					d.state.Store((ph + 1) << phaseShift)
					return
				}
			}
		}
		d.startBlock()
		total = d.units
	}
	d.done.Store(0)
	d.state.Store((ph+1)<<phaseShift | uint64(total)<<totalShift)
}

// Do claims and runs work items until the call is finished. The index range
// only says how many workers run.
func (t *teamTask) Do(_, _ int) {
	d := t.d
	for {
		s := d.state.Add(1) - 1
		ph := s >> phaseShift
		total := int(s>>totalShift) & itemMask
		item := int(s) & itemMask
		if item < total {
			if ph%2 == 0 {
				d.packUnit(item)
			} else {
				d.computeTile(item)
			}
			if d.done.Add(1) == int64(total) {
				d.advance(ph)
			}
			continue
		}
		// Nothing left to claim in this phase: wait for the items others
		// are finishing, then look again.
		for spin := 0; d.state.Load()>>phaseShift == ph; spin++ {
			if d.finished.Load() {
				return
			}
			// Waits are normally shorter than one work item (~10 us), so
			// spin on the cache line first; yield only when the worker we
			// wait for is evidently descheduled.
			if spin > spinBeforeYield {
				runtime.Gosched()
			}
		}
		if d.finished.Load() {
			return
		}
	}
}

// setUnits counts the packing units and compute tiles of the current block.
func (d *driver) setUnits() {
	d.atDepth = d.transA && d.asm && d.mb >= mr
	if d.atDepth {
		d.unitA = ceilDiv(d.kb, atDepthChunk)
	} else {
		d.unitA = ceilDiv(d.panA, packGroupA)
	}
	d.units = d.unitA + ceilDiv(d.panB, packGroupB)
	d.tiles = d.tilesM * d.panB
	if d.units+d.threads > itemMask || d.tiles+d.threads > itemMask {
		// Only reachable by raising the block sizes far beyond any cache.
		panic("gemm: block sizes too large for the work counter")
	}
}

// packUnit packs unit u of the current block: the A units first, then the
// B groups.
func (d *driver) packUnit(u int) {
	switch {
	case u >= d.unitA:
		v := u - d.unitA
		for p := v * packGroupB; p < min((v+1)*packGroupB, d.panB); p++ {
			d.packB(p)
		}
	case d.atDepth:
		d.packATDepth(u)
	default:
		for p := u * packGroupA; p < min((u+1)*packGroupA, d.panA); p++ {
			d.packA(p)
		}
	}
}

// computeTile computes tile t of the current block: row block t/panB
// times the single B panel t%panB, so the tiles a worker claims in a row
// reuse the same A block from its L2 while each B panel is read into L1 once
// per row block.
func (d *driver) computeTile(t int) {
	kb := d.kb
	tm, jp := t/d.panB, t%d.panB
	j := d.j0 + jp*nr
	cols := min(nr, d.j0+d.nb-j)
	bp := d.bufB[jp*nr*kb : (jp+1)*nr*kb]
	rEnd := min((tm+1)*d.mcb, d.mb)
	for r := tm * d.mcb; r < rEnd; r += mr {
		ip := r / mr
		ap := d.bufA[ip*mr*kb : (ip+1)*mr*kb]
		d.tile(ap, bp, d.i0+r, j, min(mr, rEnd-r), cols)
	}
}

// tile multiplies a packed A micro-panel by a packed B micro-panel into the
// rows×cols tile of C at (i, j). Edge tiles go through a scratch tile on the
// stack because the kernels always produce a full mr×nr tile.
func (d *driver) tile(ap, bp []float32, i, j, rows, cols int) {
	d.tileKB(ap, bp, i, j, rows, cols, d.kb, d.beta)
}

// cOff returns the offset in d.c of element (i, j) of the product being
// run.
func (d *driver) cOff(i, j int) int {
	j += d.cj0
	if d.cBlk == 0 {
		return i*d.ldc + j
	}
	return (j/d.cBlk)*d.cBlkStride + i*d.ldc + j%d.cBlk
}

// tileKB is tile for depth kb and the given beta.
func (d *driver) tileKB(ap, bp []float32, i, j, rows, cols, kb int, beta float32) {
	ldc := d.ldc
	if rows == mr && cols == nr && (d.cBlk == 0 || (d.cj0+j)%d.cBlk+nr <= d.cBlk) {
		o := d.cOff(i, j)
		cc := d.c[o : o+(mr-1)*ldc+nr]
		if d.asm {
			kernAsm(kb, &ap[0], &bp[0], &cc[0], ldc, beta)
		} else {
			kernGo(kb, ap, bp, cc, ldc, beta)
		}
		return
	}
	// Edge tiles, and tiles that straddle two column blocks of C.
	var tmp [mr * nr]float32
	if d.asm {
		kernAsm(kb, &ap[0], &bp[0], &tmp[0], nr, 0)
	} else {
		kernGo(kb, ap, bp, tmp[:], nr, 0)
	}
	for r := 0; r < rows; r++ {
		for q := 0; q < cols; {
			seg := cols - q
			if d.cBlk > 0 {
				seg = min(seg, d.cBlk-(d.cj0+j+q)%d.cBlk)
			}
			o := d.cOff(i+r, j+q)
			row := d.c[o : o+seg]
			src := tmp[r*nr+q : r*nr+q+seg]
			q += seg
			if beta == 0 {
				copy(row, src)
				continue
			}
			for x := range row {
				row[x] = src[x] + beta*row[x]
			}
		}
	}
}

// packATDepth packs depth steps [u*atDepthChunk, (u+1)*atDepthChunk) of
// every full panel of op(A) = A^T with the assembly routine, which copies
// each row of A, contiguous over all the panels, in one sweep: packing
// panel by panel would touch a new page for every 24 bytes when lda is a
// multiple of the page size (as it is for the weight-gradient GEMMs). The
// last unit also packs the partial panel, if any, over the whole depth.
func (d *driver) packATDepth(u int) {
	kb, lda := d.kb, d.lda
	lo := u * atDepthChunk
	hi := min(kb, lo+atDepthChunk)
	full := d.mb / mr
	_ = d.a[(d.p0+hi-1)*lda+d.i0+full*mr-1] // the last element packAT reads
	dst := d.bufA[lo*mr : full*mr*kb]
	packAT(hi-lo, &d.a[(d.p0+lo)*lda+d.i0], lda, &dst[0], full, mr*kb, d.alpha)
	if u == d.unitA-1 && full < d.panA {
		d.packA(full)
	}
}

// packA copies panel ip (mr rows of op(A) starting at row i0+ip*mr, depth
// [p0, p0+kb)) into bufA as kb groups of mr values, scaled by alpha and
// zero-padded past the last row, so the kernel needs no alpha and no edge
// cases.
func (d *driver) packA(ip int) {
	kb := d.kb
	i := d.i0 + ip*mr
	d.packAInto(d.bufA[ip*mr*kb:(ip+1)*mr*kb], i, min(mr, d.i0+d.mb-i), d.p0, kb)
}

// packAInto packs the rows (at most mr) of op(A) from row i, depth
// [p0, p0+kb), into the panel dst of mr*kb values, as packA describes.
func (d *driver) packAInto(dst []float32, i, rows, p0, kb int) {
	alpha := d.alpha
	a, lda := d.a, d.lda
	if d.transA {
		// op(A)[i][p] = a[p*lda+i]: each depth step is a short contiguous run.
		for p := 0; p < kb; p++ {
			src := a[(p0+p)*lda+i : (p0+p)*lda+i+rows]
			g := dst[p*mr : p*mr+mr]
			for r, v := range src {
				g[r] = alpha * v
			}
			clear(g[rows:])
		}
		return
	}
	// op(A)[i][p] = a[i*lda+p]: read mr rows side by side.
	if rows == mr {
		s0 := a[(i+0)*lda+p0 : (i+0)*lda+p0+kb]
		s1 := a[(i+1)*lda+p0 : (i+1)*lda+p0+kb]
		s2 := a[(i+2)*lda+p0 : (i+2)*lda+p0+kb]
		s3 := a[(i+3)*lda+p0 : (i+3)*lda+p0+kb]
		s4 := a[(i+4)*lda+p0 : (i+4)*lda+p0+kb]
		s5 := a[(i+5)*lda+p0 : (i+5)*lda+p0+kb]
		p := 0
		if kb8 := kb / 8; d.asm && kb8 > 0 {
			// Reads s0..s5[:8*kb8], all within the slices above.
			packAN(kb8, &s0[0], lda, &dst[0], alpha)
			p = 8 * kb8
		}
		for ; p < kb; p++ {
			g := dst[p*mr : p*mr+mr : p*mr+mr]
			g[0] = alpha * s0[p]
			g[1] = alpha * s1[p]
			g[2] = alpha * s2[p]
			g[3] = alpha * s3[p]
			g[4] = alpha * s4[p]
			g[5] = alpha * s5[p]
		}
		return
	}
	clear(dst)
	for r := 0; r < rows; r++ {
		src := a[(i+r)*lda+p0 : (i+r)*lda+p0+kb]
		for p, v := range src {
			dst[p*mr+r] = alpha * v
		}
	}
}

// packB copies panel jp (nr columns of op(B) starting at column j0+jp*nr,
// depth [p0, p0+kb)) into bufB as kb rows of nr values, zero-padded past the
// last column.
func (d *driver) packB(jp int) {
	kb := d.kb
	j := d.j0 + jp*nr
	d.packBInto(d.bufB[jp*nr*kb:(jp+1)*nr*kb], j, min(nr, d.j0+d.nb-j), d.p0, kb)
}

// packBInto packs the cols (at most nr) columns of op(B) from column j,
// depth [p0, p0+kb), into the panel dst of nr*kb values, as packB
// describes.
func (d *driver) packBInto(dst []float32, j, cols, p0, kb int) {
	b, ldb := d.b, d.ldb
	if !d.transB {
		// op(B)[p][j] = b[p*ldb+j]: rows of the panel are contiguous.
		if cols == nr {
			if d.asm {
				_ = b[(p0+kb-1)*ldb+j+nr-1] // the last element packBN reads
				packBN(kb, &b[p0*ldb+j], ldb, &dst[0])
				return
			}
			for p := 0; p < kb; p++ {
				*(*[nr]float32)(dst[p*nr:]) = *(*[nr]float32)(b[(p0+p)*ldb+j:])
			}
			return
		}
		for p := 0; p < kb; p++ {
			g := dst[p*nr : p*nr+nr]
			copy(g, b[(p0+p)*ldb+j:(p0+p)*ldb+j+cols])
			clear(g[cols:])
		}
		return
	}
	// op(B)[p][j] = b[j*ldb+p]: read the panel's columns as contiguous rows
	// of b and scatter them with stride nr into the (L1-resident) panel.
	p := 0
	if kb8 := kb / 8; d.asm && cols == nr && kb8 > 0 {
		_ = b[(j+nr-1)*ldb+p0+8*kb8-1] // the last element packBT reads
		packBT(kb8, &b[j*ldb+p0], ldb, &dst[0])
		p = 8 * kb8
	}
	if cols < nr {
		clear(dst)
	}
	for q := 0; q < cols; q++ {
		src := b[(j+q)*ldb+p0+p : (j+q)*ldb+p0+kb]
		for pp, v := range src {
			dst[(p+pp)*nr+q] = v
		}
	}
}

// kernGo is the portable micro-kernel: C[0:mr, 0:nr] (row stride ldc) =
// A·B + beta*C over k depth steps of packed a (mr per step) and b (nr per
// step), not reading C when beta is 0.
func kernGo(k int, a, b, c []float32, ldc int, beta float32) {
	var acc [mr * nr]float32
	a = a[:k*mr]
	b = b[:k*nr]
	for p := 0; p < k; p++ {
		bv := (*[nr]float32)(b[p*nr:])
		av := (*[mr]float32)(a[p*mr:])
		for r := 0; r < mr; r++ {
			x := av[r]
			row := (*[nr]float32)(acc[r*nr:])
			for q := range row {
				row[q] += x * bv[q]
			}
		}
	}
	for r := 0; r < mr; r++ {
		dst := (*[nr]float32)(c[r*ldc:])
		src := (*[nr]float32)(acc[r*nr:])
		if beta == 0 {
			*dst = *src
			continue
		}
		for q := range dst {
			dst[q] = src[q] + beta*dst[q]
		}
	}
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

func roundUp(a, b int) int { return ceilDiv(a, b) * b }
