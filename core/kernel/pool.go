package kernel

import (
	"fmt"
	"math"

	"github.com/sslrun/sslrun/core/parallel"
)

// PoolGeom describes a 2-D max or average pooling window over x [N, C, H, W]
// producing y [N, C, OutH(), OutW()], like PyTorch's MaxPool2d/AvgPool2d
// with ceil_mode=False and dilation 1. PyTorch requires PadH <= KH/2 and
// PadW <= KW/2; so does Validate.
type PoolGeom struct {
	N, C, H, W       int
	KH, KW           int // window size
	StrideH, StrideW int // PyTorch's default stride is the window size
	PadH, PadW       int // implicit padding on each side
}

// OutH is the output height, floor((H + 2*PadH - KH)/StrideH) + 1.
func (p PoolGeom) OutH() int { return (p.H+2*p.PadH-p.KH)/p.StrideH + 1 }

// OutW is the output width, floor((W + 2*PadW - KW)/StrideW) + 1.
func (p PoolGeom) OutW() int { return (p.W+2*p.PadW-p.KW)/p.StrideW + 1 }

// XLen is the number of elements of x (and dx).
func (p PoolGeom) XLen() int { return p.N * p.C * p.H * p.W }

// YLen is the number of elements of y (and dy, and the argmax indices).
func (p PoolGeom) YLen() int { return p.N * p.C * p.OutH() * p.OutW() }

// Validate reports whether p describes a pooling the kernels accept.
func (p PoolGeom) Validate() error {
	switch {
	case p.N <= 0 || p.C <= 0 || p.H <= 0 || p.W <= 0 || p.KH <= 0 || p.KW <= 0:
		return fmt.Errorf("pool geometry %+v: sizes must be positive", p)
	case p.StrideH <= 0 || p.StrideW <= 0:
		return fmt.Errorf("pool geometry %+v: strides must be positive", p)
	case p.PadH < 0 || p.PadW < 0 || 2*p.PadH > p.KH || 2*p.PadW > p.KW:
		return fmt.Errorf("pool geometry %+v: padding must be in [0, window/2]", p)
	case p.H+2*p.PadH < p.KH || p.W+2*p.PadW < p.KW:
		return fmt.Errorf("pool geometry %+v: window larger than padded input", p)
	}
	return nil
}

func (p PoolGeom) mustValidate(x, y int) {
	if err := p.Validate(); err != nil {
		panic("kernel: " + err.Error())
	}
	if x < p.XLen() {
		panic(fmt.Sprintf("kernel: pool input has %d elements, need %d", x, p.XLen()))
	}
	if y < p.YLen() {
		panic(fmt.Sprintf("kernel: pool output has %d elements, need %d", y, p.YLen()))
	}
}

type poolMode int

const (
	maxFwd poolMode = iota
	maxBwd
	avgFwd
	avgBwd
	gapFwd
	gapBwd
)

// poolTask carries one pooling call to the workers; items are (image,
// channel) planes, so workers never write the same element.
type poolTask struct {
	mode       poolMode
	p          PoolGeom
	x, y       []float32
	idx        []int32
	accumulate bool
}

var poolPool = parallel.NewFreeList(16, func() *poolTask { return new(poolTask) })

func runPool(t *poolTask, planes, perPlane int) {
	parallel.RunDynamic(planes, grainFor(perPlane), t)
	*t = poolTask{}
	poolPool.Put(t)
}

// MaxPool2DForward computes y (overwritten) as the maximum over each window
// of x, ignoring padding (as if padded with -Inf), and stores in argmax the
// index h*W+w within its input plane of the element each output took, for
// MaxPool2DBackward. A NaN in a window wins, as in PyTorch.
func MaxPool2DForward(p PoolGeom, x, y []float32, argmax []int32) {
	p.mustValidate(len(x), len(y))
	if len(argmax) < p.YLen() {
		panic(fmt.Sprintf("kernel: argmax has %d elements, need %d", len(argmax), p.YLen()))
	}
	t := poolPool.Get()
	*t = poolTask{mode: maxFwd, p: p, x: x, y: y, idx: argmax}
	runPool(t, p.N*p.C, p.H*p.W)
}

// MaxPool2DBackward routes dy to the input positions recorded in argmax:
// dx[plane][argmax] += dy. With accumulate false dx is zeroed first.
func MaxPool2DBackward(p PoolGeom, dy []float32, argmax []int32, dx []float32, accumulate bool) {
	p.mustValidate(len(dx), len(dy))
	if len(argmax) < p.YLen() {
		panic(fmt.Sprintf("kernel: argmax has %d elements, need %d", len(argmax), p.YLen()))
	}
	t := poolPool.Get()
	*t = poolTask{mode: maxBwd, p: p, x: dx, y: dy, idx: argmax, accumulate: accumulate}
	runPool(t, p.N*p.C, p.H*p.W)
}

// AvgPool2DForward computes y (overwritten) as the window averages of x
// with count_include_pad=True (PyTorch's default): the sum over the window's
// in-bounds elements divided by KH*KW.
func AvgPool2DForward(p PoolGeom, x, y []float32) {
	p.mustValidate(len(x), len(y))
	t := poolPool.Get()
	*t = poolTask{mode: avgFwd, p: p, x: x, y: y}
	runPool(t, p.N*p.C, p.H*p.W)
}

// AvgPool2DBackward spreads dy/(KH*KW) over each window's in-bounds input
// elements. With accumulate false dx is overwritten, otherwise added to.
func AvgPool2DBackward(p PoolGeom, dy, dx []float32, accumulate bool) {
	p.mustValidate(len(dx), len(dy))
	t := poolPool.Get()
	*t = poolTask{mode: avgBwd, p: p, x: dx, y: dy, accumulate: accumulate}
	runPool(t, p.N*p.C, p.H*p.W)
}

// GlobalAvgPoolForward averages each plane of x [n, c, hw] into y [n, c]
// (overwritten), accumulating in float64.
func GlobalAvgPoolForward(n, c, hw int, x, y []float32) {
	gapCheck(n, c, hw, len(x), len(y))
	t := poolPool.Get()
	*t = poolTask{mode: gapFwd, p: PoolGeom{N: n, C: c, H: 1, W: hw}, x: x, y: y}
	runPool(t, n*c, hw)
}

// GlobalAvgPoolBackward sets dx[n, c, :] = dy[n, c]/hw, or adds it when
// accumulate is true.
func GlobalAvgPoolBackward(n, c, hw int, dy, dx []float32, accumulate bool) {
	gapCheck(n, c, hw, len(dx), len(dy))
	t := poolPool.Get()
	*t = poolTask{mode: gapBwd, p: PoolGeom{N: n, C: c, H: 1, W: hw}, x: dx, y: dy, accumulate: accumulate}
	runPool(t, n*c, hw)
}

func gapCheck(n, c, hw, x, y int) {
	if n <= 0 || c <= 0 || hw <= 0 {
		panic(fmt.Sprintf("kernel: global average pool sizes n=%d c=%d hw=%d must be positive", n, c, hw))
	}
	if x < n*c*hw || y < n*c {
		panic(fmt.Sprintf("kernel: global average pool slices %d and %d elements, need %d and %d", x, y, n*c*hw, n*c))
	}
}

// Do handles planes [lo, hi).
func (t *poolTask) Do(lo, hi int) {
	p := &t.p
	plane := p.H * p.W
	if t.mode == gapFwd || t.mode == gapBwd {
		inv := 1 / float64(plane)
		for i := lo; i < hi; i++ {
			x := t.x[i*plane : (i+1)*plane]
			if t.mode == gapFwd {
				t.y[i] = float32(sum64(x) * inv)
				continue
			}
			g := float32(float64(t.y[i]) * inv)
			if t.accumulate {
				for k := range x {
					x[k] += g
				}
			} else {
				for k := range x {
					x[k] = g
				}
			}
		}
		return
	}
	oh, ow := p.OutH(), p.OutW()
	out := oh * ow
	area := float32(p.KH * p.KW)
	for i := lo; i < hi; i++ {
		x := t.x[i*plane : (i+1)*plane]
		y := t.y[i*out : (i+1)*out]
		if (t.mode == maxBwd || t.mode == avgBwd) && !t.accumulate {
			clear(x)
		}
		if t.mode == maxBwd {
			for o, j := range t.idx[i*out : (i+1)*out] {
				x[j] += y[o]
			}
			continue
		}
		for oy := 0; oy < oh; oy++ {
			h0 := oy*p.StrideH - p.PadH
			h1 := min(h0+p.KH, p.H)
			h0 = max(h0, 0)
			for ox := 0; ox < ow; ox++ {
				w0 := ox*p.StrideW - p.PadW
				w1 := min(w0+p.KW, p.W)
				w0 = max(w0, 0)
				o := oy*ow + ox
				switch t.mode {
				case maxFwd:
					best, arg := float32(math.Inf(-1)), h0*p.W+w0
					for h := h0; h < h1; h++ {
						for w, v := range x[h*p.W+w0 : h*p.W+w1] {
							if v > best || v != v {
								best, arg = v, h*p.W+w0+w
							}
						}
					}
					y[o] = best
					t.idx[i*out+o] = int32(arg)
				case avgFwd:
					var s float32
					for h := h0; h < h1; h++ {
						for _, v := range x[h*p.W+w0 : h*p.W+w1] {
							s += v
						}
					}
					y[o] = s / area
				case avgBwd:
					g := y[o] / area
					for h := h0; h < h1; h++ {
						r := x[h*p.W+w0 : h*p.W+w1]
						for k := range r {
							r[k] += g
						}
					}
				}
			}
		}
	}
}
