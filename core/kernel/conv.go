package kernel

import (
	"fmt"
	"unsafe"

	"github.com/sslrun/sslrun/core/gemm"
	"github.com/sslrun/sslrun/core/parallel"
)

// ConvGeom describes a 2-D convolution without bias, groups or dilation:
// input x is [N, C, H, W], filter w is [K, C, R, S], output y is
// [N, K, OutH(), OutW()], all NCHW and contiguous. Padding is zero padding
// on both sides, like PyTorch's Conv2d(padding=(PadH, PadW)).
type ConvGeom struct {
	N, C, H, W       int // batch, input channels, input height and width
	K, R, S          int // output channels, filter height and width
	StrideH, StrideW int // strides, at least 1
	PadH, PadW       int // zero padding on each side, at least 0
}

// OutH is the output height, floor((H + 2*PadH - R)/StrideH) + 1.
func (g ConvGeom) OutH() int { return (g.H+2*g.PadH-g.R)/g.StrideH + 1 }

// OutW is the output width, floor((W + 2*PadW - S)/StrideW) + 1.
func (g ConvGeom) OutW() int { return (g.W+2*g.PadW-g.S)/g.StrideW + 1 }

// XLen is the number of elements of x (and dx).
func (g ConvGeom) XLen() int { return g.N * g.C * g.H * g.W }

// WLen is the number of elements of w (and dw).
func (g ConvGeom) WLen() int { return g.K * g.C * g.R * g.S }

// YLen is the number of elements of y (and dy).
func (g ConvGeom) YLen() int { return g.N * g.K * g.OutH() * g.OutW() }

// MACs is the number of multiply-accumulates of one forward pass; backward
// data and backward filter do the same number.
func (g ConvGeom) MACs() int64 {
	return int64(g.N) * int64(g.K) * int64(g.OutH()) * int64(g.OutW()) * int64(g.C) * int64(g.R) * int64(g.S)
}

// FLOPs is 2*MACs, the FLOP count of each of forward, backward-data and
// backward-filter as torch_baseline.py counts them.
func (g ConvGeom) FLOPs() int64 { return 2 * g.MACs() }

// Validate reports whether g describes a convolution the kernels accept.
func (g ConvGeom) Validate() error {
	switch {
	case g.N <= 0 || g.C <= 0 || g.H <= 0 || g.W <= 0 || g.K <= 0 || g.R <= 0 || g.S <= 0:
		return fmt.Errorf("conv geometry %+v: sizes must be positive", g)
	case g.StrideH <= 0 || g.StrideW <= 0:
		return fmt.Errorf("conv geometry %+v: strides must be positive", g)
	case g.PadH < 0 || g.PadW < 0:
		return fmt.Errorf("conv geometry %+v: padding must not be negative", g)
	case g.H+2*g.PadH < g.R || g.W+2*g.PadW < g.S:
		return fmt.Errorf("conv geometry %+v: filter larger than padded input", g)
	}
	return nil
}

// direct reports whether the convolution is a plain matrix product per image
// (1x1 filter, stride 1, no padding): then x[n] viewed as [C, H*W] is its own
// im2col matrix and no scratch memory is needed.
func (g ConvGeom) direct() bool {
	return g.R == 1 && g.S == 1 && g.StrideH == 1 && g.StrideW == 1 && g.PadH == 0 && g.PadW == 0
}

func (g ConvGeom) mustValidate(x, w, y int, xn, wn, yn string) {
	if err := g.Validate(); err != nil {
		panic("kernel: " + err.Error())
	}
	if x < g.XLen() {
		panic(fmt.Sprintf("kernel: conv %s has %d elements, need %d", xn, x, g.XLen()))
	}
	if w < g.WLen() {
		panic(fmt.Sprintf("kernel: conv %s has %d elements, need %d", wn, w, g.WLen()))
	}
	if y < g.YLen() {
		panic(fmt.Sprintf("kernel: conv %s has %d elements, need %d", yn, y, g.YLen()))
	}
}

// DefaultColBudget is the default limit, in float32 elements, on the im2col
// matrix a Workspace builds at once (4 MiB). The batch is processed in
// groups of images whose patches fit in the budget: a group makes one wide
// GEMM that packs the filter once, while the budget keeps the matrix near
// the caches that im2col writes it through. With the default budget a group
// also has at least minGroupCols output columns (so that layers with tiny
// feature maps still get a GEMM wide enough to run at full speed); measured
// on W2/W3 layers, one image per GEMM lost up to half the speed on 4x4 and
// 8x8 outputs, and groups of 1-4 MiB were as fast as any larger ones.
const DefaultColBudget = 1 << 20

// minGroupCols is the smallest GEMM width (images × OutH × OutW) the
// default grouping aims for.
const minGroupCols = 1024

// Workspace holds the scratch memory of the convolution kernels: the im2col
// matrix of a group of images and a staging buffer for outputs/gradients in
// [K, group*OutH*OutW] layout. Buffers grow on first use and are reused, so
// steady-state calls allocate nothing. A Workspace serves one kernel call at
// a time (the kernel itself spreads its work over core/parallel's workers);
// goroutines that run convolutions concurrently need one Workspace each.
// The zero value is ready to use.
type Workspace struct {
	// ColBudget caps the im2col matrix, in float32 elements (at least one
	// image's patches are always built); 0 means DefaultColBudget and the
	// minimum GEMM width described there. Set it before first use.
	ColBudget int

	col, stage []float32
	wt         []float32 // flipped filter of a stride-1 backward-data pass
	offs       []int32   // gather offsets of the padded-plane path (see gatherOffsets)

	im2col  im2colTask
	col2im  col2imTask
	scatter scatterTask
}

// wsPool backs kernel calls made with a nil *Workspace.
var wsPool = parallel.NewFreeList(16, func() *Workspace { return new(Workspace) })

// group returns how many images of g the Workspace processes per GEMM.
func (ws *Workspace) group(g ConvGeom) int {
	ohw := g.OutH() * g.OutW()
	per := g.C * g.R * g.S * ohw
	if ws.ColBudget > 0 {
		return max(1, min(g.N, ws.ColBudget/per))
	}
	gr := max(DefaultColBudget/per, (minGroupCols+ohw-1)/ohw)
	return max(1, min(g.N, gr))
}

// ConvWorkspaceFloats returns how many float32 elements a Workspace with
// the default budget holds after running any of the three convolution
// kernels on g: callers that want to preallocate or account memory can use
// it. Grow reserves it ahead of time.
func ConvWorkspaceFloats(g ConvGeom) int {
	var ws Workspace
	return ws.floats(g)
}

func (ws *Workspace) floats(g ConvGeom) int {
	col, stage := ws.needs(g)
	n := col + stage
	if gt, ok := g.transposed(); ok {
		c2, s2 := ws.needs(gt)
		n = max(col, c2) + max(stage, s2) + g.WLen()
	}
	return n
}

// needs returns the col and stage sizes the forward-style passes over g use.
func (ws *Workspace) needs(g ConvGeom) (col, stage int) {
	if g.direct() {
		return 0, 0
	}
	gr := ws.group(g)
	ohw := g.OutH() * g.OutW()
	col = g.C * g.R * g.S * gr * ohw
	if gr > 1 {
		stage = g.K * gr * ohw
	}
	return col, stage
}

// Grow makes the Workspace's buffers large enough for g, so that a later
// call on g does not allocate.
func (ws *Workspace) Grow(g ConvGeom) {
	col, stage := ws.needs(g)
	if gt, ok := g.transposed(); ok {
		c2, s2 := ws.needs(gt)
		col, stage = max(col, c2), max(stage, s2)
		ws.wt = grow(ws.wt, g.WLen())
	}
	if col > 0 {
		ws.col = grow(ws.col, col)
	}
	if stage > 0 {
		ws.stage = grow(ws.stage, stage)
	}
}

func grow(b []float32, n int) []float32 {
	if cap(b) < n {
		return make([]float32, n)
	}
	return b[:n]
}

func getWS(ws *Workspace) (*Workspace, bool) {
	if ws != nil {
		return ws, false
	}
	return wsPool.Get(), true
}

// Conv2DForward computes y = conv(x, w) for the geometry g, overwriting y.
// x is [N,C,H,W], w is [K,C,R,S], y is [N,K,OutH,OutW]. ws may be nil (a
// pooled Workspace is used then). It panics if g is invalid or a slice is
// too short.
func Conv2DForward(g ConvGeom, x, w, y []float32, ws *Workspace) {
	g.mustValidate(len(x), len(w), len(y), "x", "w", "y")
	ws, pooled := getWS(ws)
	ws.forward(g, x, w, y, false)
	if pooled {
		wsPool.Put(ws)
	}
}

// forward computes y = conv(x, w), or adds it to y when accumulate is set.
func (ws *Workspace) forward(g ConvGeom, x, w, y []float32, accumulate bool) {
	crs := g.C * g.R * g.S
	ohw := g.OutH() * g.OutW()
	beta := float32(0)
	if accumulate {
		beta = 1
	}
	if g.direct() {
		for n := 0; n < g.N; n++ {
			gemm.Sgemm(false, false, g.K, ohw, g.C, 1, w, crs, x[n*g.C*ohw:], ohw, beta, y[n*g.K*ohw:], ohw)
		}
		return
	}
	ws.Grow(g)
	gr := ws.group(g)
	for n0 := 0; n0 < g.N; n0 += gr {
		cnt := min(gr, g.N-n0)
		ld := cnt * ohw
		ws.runIm2col(g, x, n0, cnt)
		if cnt == 1 || ohw%blockedCWidth == 0 {
			// The GEMM's [K, cnt*OutH*OutW] result is cnt NCHW blocks
			// [K, OutH*OutW] of y side by side: write them in place.
			gemm.SgemmBlockedC(false, false, g.K, ld, crs, 1, w, crs, ws.col, ld, beta, y[n0*g.K*ohw:], ohw, ohw, g.K*ohw)
			continue
		}
		gemm.Sgemm(false, false, g.K, ld, crs, 1, w, crs, ws.col, ld, 0, ws.stage, ld)
		ws.runScatter(g, y, n0, cnt, true, accumulate)
	}
}

// blockedCWidth: output planes whose pixel count is a multiple of it are
// written by the GEMM in place (gemm.SgemmBlockedC) rather than staged and
// copied, which saved a pass over every conv output. It is the GEMM's
// micro-tile width: other plane sizes would make tiles straddle images,
// which the GEMM handles through a slower scratch path.
const blockedCWidth = 16

// transposed returns, for a stride-1 convolution whose padding is at most
// the filter size minus one, the convolution that computes its input
// gradient as a forward pass: dx = conv(dy, w') with w'[c,k,r,s] =
// w[k,c,R-1-r,S-1-s] and padding R-1-PadH, S-1-PadW. Going through im2col
// (copies) instead of col2im (scattered adds) made backward-data of the
// stride-1 ResNet layers 0-10% faster (noisy CPU-time measurements). The
// transposed GEMM has C rows, so few input channels (the RGB stem) make it
// slow: those keep col2im.
func (g ConvGeom) transposed() (ConvGeom, bool) {
	if g.StrideH != 1 || g.StrideW != 1 || g.PadH > g.R-1 || g.PadW > g.S-1 || g.direct() || g.C < 32 {
		return ConvGeom{}, false
	}
	return ConvGeom{N: g.N, C: g.K, H: g.OutH(), W: g.OutW(), K: g.C, R: g.R, S: g.S,
		StrideH: 1, StrideW: 1, PadH: g.R - 1 - g.PadH, PadW: g.S - 1 - g.PadW}, true
}

// flipFilter writes w' of transposed() into dst.
func flipFilter(g ConvGeom, w, dst []float32) {
	rs := g.R * g.S
	for k := 0; k < g.K; k++ {
		for c := 0; c < g.C; c++ {
			src := w[(k*g.C+c)*rs:][:rs]
			out := dst[(c*g.K+k)*rs:][:rs]
			for i, v := range src {
				out[rs-1-i] = v
			}
		}
	}
}

// Conv2DBackwardData computes the gradient with respect to x, dx =
// conv_transpose(dy, w), from dy [N,K,OutH,OutW] and w [K,C,R,S]. With
// accumulate false dx is overwritten; with accumulate true the gradient is
// added to dx. ws may be nil.
func Conv2DBackwardData(g ConvGeom, dy, w, dx []float32, ws *Workspace, accumulate bool) {
	g.mustValidate(len(dx), len(w), len(dy), "dx", "w", "dy")
	ws, pooled := getWS(ws)
	crs := g.C * g.R * g.S
	ohw := g.OutH() * g.OutW()
	if gt, ok := g.transposed(); ok {
		ws.wt = grow(ws.wt, g.WLen())
		flipFilter(g, w, ws.wt)
		ws.forward(gt, dy, ws.wt, dx, accumulate)
	} else if g.direct() {
		beta := float32(0)
		if accumulate {
			beta = 1
		}
		for n := 0; n < g.N; n++ {
			gemm.Sgemm(true, false, g.C, ohw, g.K, 1, w, crs, dy[n*g.K*ohw:], ohw, beta, dx[n*g.C*ohw:], ohw)
		}
	} else {
		ws.Grow(g)
		gr := ws.group(g)
		for n0 := 0; n0 < g.N; n0 += gr {
			cnt := min(gr, g.N-n0)
			ld := cnt * ohw
			src := dy[n0*g.K*ohw:]
			if cnt > 1 {
				ws.runScatter(g, dy, n0, cnt, false, false)
				src = ws.stage
			}
			gemm.Sgemm(true, false, crs, ld, g.K, 1, w, crs, src, ld, 0, ws.col, ld)
			ws.runCol2im(g, dx, n0, cnt, accumulate)
		}
	}
	if pooled {
		wsPool.Put(ws)
	}
}

// Conv2DBackwardFilter computes the gradient with respect to w, dw =
// sum over images of dy[n] · im2col(x[n])^T, from x [N,C,H,W] and dy
// [N,K,OutH,OutW]. With accumulate false dw is overwritten; with accumulate
// true the gradient is added to dw. ws may be nil.
func Conv2DBackwardFilter(g ConvGeom, x, dy, dw []float32, ws *Workspace, accumulate bool) {
	g.mustValidate(len(x), len(dw), len(dy), "x", "dw", "dy")
	ws, pooled := getWS(ws)
	crs := g.C * g.R * g.S
	ohw := g.OutH() * g.OutW()
	beta := float32(0)
	if accumulate {
		beta = 1
	}
	if g.direct() {
		for n := 0; n < g.N; n++ {
			gemm.Sgemm(false, true, g.K, g.C, ohw, 1, dy[n*g.K*ohw:], ohw, x[n*g.C*ohw:], ohw, beta, dw, crs)
			beta = 1
		}
	} else {
		ws.Grow(g)
		gr := ws.group(g)
		for n0 := 0; n0 < g.N; n0 += gr {
			cnt := min(gr, g.N-n0)
			ld := cnt * ohw
			ws.runIm2col(g, x, n0, cnt)
			src := dy[n0*g.K*ohw:]
			if cnt > 1 {
				ws.runScatter(g, dy, n0, cnt, false, false)
				src = ws.stage
			}
			// The images of the group are the GEMM's depth, so the sum over
			// the batch happens inside the product; later groups add on.
			gemm.Sgemm(false, true, g.K, crs, ld, 1, src, ld, ws.col, ld, beta, dw, crs)
			beta = 1
		}
	}
	if pooled {
		wsPool.Put(ws)
	}
}

// grainFor returns a parallel grain so that each chunk moves at least about
// 32K floats: smaller chunks do not pay for the hand-off to another worker.
func grainFor(perItem int) int { return max(1, (1<<15)/max(1, perItem)) }

// im2colTask fills the Workspace's col matrix [C*R*S, cnt*OutH*OutW] for
// images n0..n0+cnt-1; column j*OutH*OutW+p holds the patch of output pixel
// p of image n0+j. The work items are (image, channel) pairs.
type im2colTask struct {
	g       ConvGeom
	x, col  []float32
	n0, cnt int
	offs    []int32 // non-nil: the padded-plane gather path
}

func (ws *Workspace) runIm2col(g ConvGeom, x []float32, n0, cnt int) {
	t := &ws.im2col
	t.g, t.x, t.col, t.n0, t.cnt = g, x, ws.col, n0, cnt
	t.offs = ws.gatherOffsets(g)
	parallel.RunDynamic(cnt*g.C, grainFor(g.R*g.S*g.OutH()*g.OutW()), t)
	t.x, t.col = nil, nil
}

// Layers whose planes are small or strided build their im2col rows (and
// scatter col2im's) through a zero-bordered copy of the input plane kept
// on the worker's stack: every tap (r, s) then reads output pixel p from
// padded element r*Wp + s + offs[p], one gather loop per tap with neither
// bounds cases nor per-row calls. Row-by-row copies cost a call per 4 to
// 16 pixels there, and strided rows an element-at-a-time loop with edge
// cases; on one core (BenchmarkIm2col, cpuGB/s, loaded machine) the gather
// took the stride-2 im2col of W2 from 0.9-3.4 to 3.8-4.0 GB/s and the 4x4
// planes of W3 from 1.0 to 2.7.
const gatherMaxPlane = 2048 // floats of the padded plane (8 KiB)

// gatherPath reports whether g's im2col and col2im use the padded-plane
// gather: planes that fit, unless the shifted copy (wide stride-1 rows)
// applies.
func (g *ConvGeom) gatherPath() bool {
	if g.shiftedPath() {
		return false
	}
	return (g.H+2*g.PadH)*(g.W+2*g.PadW) <= gatherMaxPlane
}

// shiftedPath reports whether g's im2col uses im2colShifted: stride 1,
// "same" width, and rows wide enough that a copy per tap beats a gather
// (on 8x8 planes it still did, 6.7 against 5.4 GB/s; on 4x4 it lost, 2.4
// against 2.7). On 32x32 planes it took im2col from 9-12 to 30-35 GB/s.
func (g *ConvGeom) shiftedPath() bool {
	return g.StrideH == 1 && g.StrideW == 1 && g.OutW() == g.W && g.PadW < g.W && g.W >= 8
}

// gatherOffsets returns, for the gather path, the offset of every output
// pixel's tap-(0,0) input in the padded plane of width W+2*PadW (nil when
// g does not take that path). The slice lives in the Workspace.
func (ws *Workspace) gatherOffsets(g ConvGeom) []int32 {
	if !g.gatherPath() {
		return nil
	}
	oh, ow := g.OutH(), g.OutW()
	wp := g.W + 2*g.PadW
	if cap(ws.offs) < oh*ow {
		ws.offs = make([]int32, oh*ow)
	}
	offs := ws.offs[:oh*ow]
	for oy := 0; oy < oh; oy++ {
		for ox := 0; ox < ow; ox++ {
			offs[oy*ow+ox] = int32(oy*g.StrideH*wp + ox*g.StrideW)
		}
	}
	return offs
}

// padPlane copies the H×W plane src into the interior of the padded plane
// pad, whose border must already be zero.
func padPlane(g *ConvGeom, src, pad []float32) {
	wp := g.W + 2*g.PadW
	for h := 0; h < g.H; h++ {
		copy(pad[(h+g.PadH)*wp+g.PadW:][:g.W], src[h*g.W:][:g.W])
	}
}

func (t *im2colTask) Do(lo, hi int) {
	g := &t.g
	oh, ow := g.OutH(), g.OutW()
	ohw := oh * ow
	ld := t.cnt * ohw
	plane := g.H * g.W
	if t.offs != nil {
		t.gather(lo, hi)
		return
	}
	shifted := g.shiftedPath()
	for it := lo; it < hi; it++ {
		j, c := it/g.C, it%g.C
		src := t.x[((t.n0+j)*g.C+c)*plane:][:plane]
		for r := 0; r < g.R; r++ {
			for s := 0; s < g.S; s++ {
				row := t.col[(c*g.R*g.S+r*g.S+s)*ld+j*ohw:][:ohw]
				if shifted {
					im2colShifted(g, oh, r, s, src, row)
				} else {
					im2colRow(g, oh, ow, r, s, src, row)
				}
			}
		}
	}
}

// gather is Do for the padded-plane path.
func (t *im2colTask) gather(lo, hi int) {
	g := &t.g
	ohw := len(t.offs)
	ld := t.cnt * ohw
	plane := g.H * g.W
	wp := g.W + 2*g.PadW
	var buf [gatherMaxPlane]float32
	pad := buf[:(g.H+2*g.PadH)*wp]
	offs := t.offs
	checkOffsets(g, offs, len(pad))
	for it := lo; it < hi; it++ {
		j, c := it/g.C, it%g.C
		padPlane(g, t.x[((t.n0+j)*g.C+c)*plane:][:plane], pad)
		for r := 0; r < g.R; r++ {
			for s := 0; s < g.S; s++ {
				row := t.col[(c*g.R*g.S+r*g.S+s)*ld+j*ohw:][:len(offs)]
				// In bounds by checkOffsets: r*wp+s+o < len(pad).
				tap := unsafe.Pointer(&pad[r*wp+s])
				for p, o := range offs {
					row[p] = *(*float32)(unsafe.Add(tap, 4*uintptr(o)))
				}
			}
		}
	}
}

// checkOffsets panics unless every tap of every gather offset stays
// inside a padded plane of n floats; the gather loops rely on it to skip
// the per-element bounds check, which cost a quarter of their time.
// Offsets grow with the pixel index, so the last one is the largest.
func checkOffsets(g *ConvGeom, offs []int32, n int) {
	wp := g.W + 2*g.PadW
	if len(offs) == 0 || offs[0] < 0 || int(offs[len(offs)-1])+(g.R-1)*wp+g.S-1 >= n {
		panic("kernel: im2col gather offsets outside the padded plane")
	}
}

// im2colShifted is im2colRow for stride 1 and an output as wide as the
// input (2*PadW = S-1, "same" padding, the common 3x3 pad 1 case). Then
// output pixel p of tap (r, s) reads input element p + d with the constant
// offset d = (r-PadH)*W + (s-PadW), so the valid output rows are one
// contiguous copy of the plane; only the columns that wrapped around into
// the neighbouring row (s != PadW) and the rows in the padding are zeroed
// afterwards. That is one memmove per tap instead of one per output row,
// which on 32- to 4-pixel rows was mostly call overhead.
func im2colShifted(g *ConvGeom, oh, r, s int, src, row []float32) {
	w := g.W
	oyLo, oyHi := validRange(oh, g.H, 1, g.PadH, r)
	clear(row[:oyLo*w])
	clear(row[oyHi*w:])
	if oyLo == oyHi {
		return
	}
	d := (r-g.PadH)*w + (s - g.PadW)
	// Output range [p0, p1) of the valid rows, cut to what the plane
	// holds: the pixels cut off are in the zeroed columns below.
	p0, p1 := max(oyLo*w, -d), min(oyHi*w, len(src)-d)
	copy(row[p0:p1], src[p0+d:p1+d])
	clear(row[oyLo*w : p0])
	clear(row[p1 : oyHi*w])
	switch sh := s - g.PadW; {
	case sh < 0: // the first -sh columns read left of the row
		for oy := oyLo; oy < oyHi; oy++ {
			clear(row[oy*w : oy*w-sh])
		}
	case sh > 0: // the last sh columns read right of the row
		for oy := oyLo; oy < oyHi; oy++ {
			clear(row[(oy+1)*w-sh : (oy+1)*w])
		}
	}
}

// validRange returns the output columns [lo, hi) whose input column
// o*stride - pad + off lies inside [0, size).
func validRange(out, size, stride, pad, off int) (lo, hi int) {
	if d := pad - off; d > 0 {
		lo = (d + stride - 1) / stride
	}
	if last := size - 1 + pad - off; last >= 0 {
		hi = min(out, last/stride+1)
	}
	lo = min(lo, out)
	return lo, max(lo, hi)
}

// im2colRow writes the OutH*OutW input values that filter tap (r, s) meets,
// zero where the tap falls into the padding.
func im2colRow(g *ConvGeom, oh, ow, r, s int, src, row []float32) {
	lo, hi := validRange(ow, g.W, g.StrideW, g.PadW, s)
	sw := g.StrideW
	for oy := 0; oy < oh; oy++ {
		out := row[oy*ow : oy*ow+ow]
		ih := oy*g.StrideH - g.PadH + r
		if ih < 0 || ih >= g.H {
			clear(out)
			continue
		}
		in := src[ih*g.W : ih*g.W+g.W]
		clear(out[:lo])
		clear(out[hi:])
		iw := lo*sw - g.PadW + s
		if sw == 1 {
			copy(out[lo:hi], in[iw:])
			continue
		}
		o := out[lo:hi]
		for k := range o {
			o[k] = in[iw]
			iw += sw
		}
	}
}

// col2imTask adds the Workspace's col matrix (the gradient of the im2col
// matrix) back into dx for images n0..n0+cnt-1; items are (image, channel)
// pairs, so every item owns its dx plane and no two workers write the same
// element.
type col2imTask struct {
	g          ConvGeom
	dx, col    []float32
	n0, cnt    int
	accumulate bool
	offs       []int32 // non-nil: the padded-plane path (see gatherOffsets)
}

func (ws *Workspace) runCol2im(g ConvGeom, dx []float32, n0, cnt int, accumulate bool) {
	t := &ws.col2im
	t.g, t.dx, t.col, t.n0, t.cnt, t.accumulate = g, dx, ws.col, n0, cnt, accumulate
	t.offs = ws.gatherOffsets(g)
	parallel.RunDynamic(cnt*g.C, grainFor(g.R*g.S*g.OutH()*g.OutW()), t)
	t.dx, t.col = nil, nil
}

// scatter is Do for the padded-plane path: the taps add into a zeroed
// padded plane, whose interior then goes to dx.
func (t *col2imTask) scatter(lo, hi int) {
	g := &t.g
	ohw := len(t.offs)
	ld := t.cnt * ohw
	plane := g.H * g.W
	wp := g.W + 2*g.PadW
	var buf [gatherMaxPlane]float32
	pad := buf[:(g.H+2*g.PadH)*wp]
	offs := t.offs
	checkOffsets(g, offs, len(pad))
	for it := lo; it < hi; it++ {
		j, c := it/g.C, it%g.C
		clear(pad)
		for r := 0; r < g.R; r++ {
			for s := 0; s < g.S; s++ {
				row := t.col[(c*g.R*g.S+r*g.S+s)*ld+j*ohw:][:len(offs)]
				// In bounds by checkOffsets: r*wp+s+o < len(pad).
				tap := unsafe.Pointer(&pad[r*wp+s])
				for p, o := range offs {
					*(*float32)(unsafe.Add(tap, 4*uintptr(o))) += row[p]
				}
			}
		}
		dst := t.dx[((t.n0+j)*g.C+c)*plane:][:plane]
		for h := 0; h < g.H; h++ {
			out := dst[h*g.W : (h+1)*g.W]
			in := pad[(h+g.PadH)*wp+g.PadW:][:len(out)]
			if !t.accumulate {
				copy(out, in)
				continue
			}
			for k, v := range in {
				out[k] += v
			}
		}
	}
}

func (t *col2imTask) Do(lo, hi int) {
	if t.offs != nil {
		t.scatter(lo, hi)
		return
	}
	g := &t.g
	oh, ow := g.OutH(), g.OutW()
	ohw := oh * ow
	ld := t.cnt * ohw
	plane := g.H * g.W
	sw := g.StrideW
	for it := lo; it < hi; it++ {
		j, c := it/g.C, it%g.C
		dst := t.dx[((t.n0+j)*g.C+c)*plane:][:plane]
		if !t.accumulate {
			clear(dst)
		}
		for r := 0; r < g.R; r++ {
			for s := 0; s < g.S; s++ {
				row := t.col[(c*g.R*g.S+r*g.S+s)*ld+j*ohw:][:ohw]
				wlo, whi := validRange(ow, g.W, sw, g.PadW, s)
				if wlo == whi {
					continue
				}
				for oy := 0; oy < oh; oy++ {
					ih := oy*g.StrideH - g.PadH + r
					if ih < 0 || ih >= g.H {
						continue
					}
					out := dst[ih*g.W : ih*g.W+g.W]
					in := row[oy*ow+wlo : oy*ow+whi]
					iw := wlo*sw - g.PadW + s
					if sw == 1 {
						o := out[iw : iw+len(in)]
						for k, v := range in {
							o[k] += v
						}
						continue
					}
					for _, v := range in {
						out[iw] += v
						iw += sw
					}
				}
			}
		}
	}
}

// scatterTask moves data between NCHW tensors with K channels and the
// Workspace's stage matrix [K, cnt*OutH*OutW]: toNCHW copies stage into y
// (the forward result), otherwise it gathers dy into stage. Items are
// (image, channel) pairs.
type scatterTask struct {
	g          ConvGeom
	t, st      []float32
	n0, cnt    int
	toNCHW     bool
	accumulate bool // add into the NCHW tensor instead of copying
}

func (ws *Workspace) runScatter(g ConvGeom, t []float32, n0, cnt int, toNCHW, accumulate bool) {
	s := &ws.scatter
	s.g, s.t, s.st, s.n0, s.cnt, s.toNCHW, s.accumulate = g, t, ws.stage, n0, cnt, toNCHW, accumulate
	parallel.RunDynamic(cnt*g.K, grainFor(g.OutH()*g.OutW()), s)
	s.t, s.st = nil, nil
}

func (s *scatterTask) Do(lo, hi int) {
	g := &s.g
	ohw := g.OutH() * g.OutW()
	ld := s.cnt * ohw
	for it := lo; it < hi; it++ {
		j, k := it/g.K, it%g.K
		a := s.t[((s.n0+j)*g.K+k)*ohw:][:ohw]
		b := s.st[k*ld+j*ohw:][:ohw]
		switch {
		case s.toNCHW && s.accumulate:
			for i, v := range b[:len(a)] {
				a[i] += v
			}
		case s.toNCHW:
			copy(a, b)
		default:
			copy(b, a)
		}
	}
}
