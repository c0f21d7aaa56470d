package autodiff

import (
	"fmt"

	"github.com/sslrun/sslrun/core/kernel"
)

// Conv2d returns the 2-D cross-correlation of x [N, C, H, W] with filters
// w [K, C, R, S] (no bias: add one with AddBias), with the given strides and
// zero padding, as torch.nn.functional.conv2d. The result is [N, K, OutH,
// OutW]. The work runs in core/kernel (im2col + GEMM) with the tape's
// Workspace.
func (tp *Tape) Conv2d(x, w *Var, strideH, strideW, padH, padW int) *Var {
	xs, ws := x.Value.Shape, w.Value.Shape
	if len(xs) != 4 || len(ws) != 4 || xs[1] != ws[1] {
		panic(fmt.Sprintf("autodiff: Conv2d: x %v and w %v, want [N,C,H,W] and [K,C,R,S]", xs, ws))
	}
	g := kernel.ConvGeom{N: xs[0], C: xs[1], H: xs[2], W: xs[3], K: ws[0], R: ws[2], S: ws[3],
		StrideH: strideH, StrideW: strideW, PadH: padH, PadW: padW}
	if err := g.Validate(); err != nil {
		panic(fmt.Sprintf("autodiff: Conv2d: %v", err))
	}
	y := tp.out([]int{g.N, g.K, g.OutH(), g.OutW()}, x, w, nil)
	kernel.Conv2DForward(g, x.Value.Data, w.Value.Data, y.Value.Data, &tp.ws)
	if nd := tp.record(opConv2d, y, x, w, nil); nd != nil {
		nd.i0, nd.i1, nd.i2, nd.i3 = strideH, strideW, padH, padW
	}
	return y
}

func convGeomOf(nd *node) kernel.ConvGeom {
	xs, ws := nd.a.Value.Shape, nd.b.Value.Shape
	return kernel.ConvGeom{N: xs[0], C: xs[1], H: xs[2], W: xs[3], K: ws[0], R: ws[2], S: ws[3],
		StrideH: nd.i0, StrideW: nd.i1, PadH: nd.i2, PadW: nd.i3}
}

func poolGeom(op string, x *Var, k, stride, pad int) kernel.PoolGeom {
	xs := x.Value.Shape
	if len(xs) != 4 {
		panic(fmt.Sprintf("autodiff: %s needs [N,C,H,W], have %v", op, xs))
	}
	p := kernel.PoolGeom{N: xs[0], C: xs[1], H: xs[2], W: xs[3], KH: k, KW: k, StrideH: stride, StrideW: stride, PadH: pad, PadW: pad}
	if err := p.Validate(); err != nil {
		panic(fmt.Sprintf("autodiff: %s: %v", op, err))
	}
	return p
}

// MaxPool2d returns the maximum over k×k windows of x [N, C, H, W] with the
// given stride and padding (padding never wins), as F.max_pool2d. The
// gradient goes to the element each window took.
func (tp *Tape) MaxPool2d(x *Var, k, stride, pad int) *Var {
	p := poolGeom("MaxPool2d", x, k, stride, pad)
	y := tp.out([]int{p.N, p.C, p.OutH(), p.OutW()}, x, nil, nil)
	arg := tp.idx.get(p.YLen())
	kernel.MaxPool2DForward(p, x.Value.Data, y.Value.Data, arg)
	if nd := tp.record(opMaxPool2d, y, x, nil, nil); nd != nil {
		nd.i0, nd.i1, nd.i2 = k, stride, pad
		nd.idx = arg
	}
	return y
}

// AvgPool2d returns the average over k×k windows of x [N, C, H, W] with the
// given stride and padding, counting padded zeros (PyTorch's default
// count_include_pad=True).
func (tp *Tape) AvgPool2d(x *Var, k, stride, pad int) *Var {
	p := poolGeom("AvgPool2d", x, k, stride, pad)
	y := tp.out([]int{p.N, p.C, p.OutH(), p.OutW()}, x, nil, nil)
	kernel.AvgPool2DForward(p, x.Value.Data, y.Value.Data)
	if nd := tp.record(opAvgPool2d, y, x, nil, nil); nd != nil {
		nd.i0, nd.i1, nd.i2 = k, stride, pad
	}
	return y
}

// GlobalAvgPool2d averages each channel plane: x [N, C, H, W] -> [N, C].
func (tp *Tape) GlobalAvgPool2d(x *Var) *Var {
	xs := x.Value.Shape
	if len(xs) != 4 {
		panic(fmt.Sprintf("autodiff: GlobalAvgPool2d needs [N,C,H,W], have %v", xs))
	}
	y := tp.out(xs[:2], x, nil, nil)
	kernel.GlobalAvgPoolForward(xs[0], xs[1], xs[2]*xs[3], x.Value.Data, y.Value.Data)
	tp.record(opGlobalAvgPool2d, y, x, nil, nil)
	return y
}

func (tp *Tape) backwardConvPool(nd *node) {
	x := nd.a
	g := nd.out.Grad.Data
	switch nd.op {
	case opConv2d:
		cg := convGeomOf(nd)
		w := nd.b
		if w.requires {
			gw, overwrite := tp.gradOf(w)
			kernel.Conv2DBackwardFilter(cg, x.Value.Data, g, gw, &tp.ws, !overwrite)
		}
		if x.requires {
			gx, overwrite := tp.gradOf(x)
			kernel.Conv2DBackwardData(cg, g, w.Value.Data, gx, &tp.ws, !overwrite)
		}
	case opMaxPool2d:
		if x.requires {
			p := poolGeom("MaxPool2d", x, nd.i0, nd.i1, nd.i2)
			gx, overwrite := tp.gradOf(x)
			kernel.MaxPool2DBackward(p, g, nd.idx, gx, !overwrite)
		}
	case opAvgPool2d:
		if x.requires {
			p := poolGeom("AvgPool2d", x, nd.i0, nd.i1, nd.i2)
			gx, overwrite := tp.gradOf(x)
			kernel.AvgPool2DBackward(p, g, gx, !overwrite)
		}
	case opGlobalAvgPool2d:
		if x.requires {
			xs := x.Value.Shape
			gx, overwrite := tp.gradOf(x)
			kernel.GlobalAvgPoolBackward(xs[0], xs[1], xs[2]*xs[3], g, gx, !overwrite)
		}
	}
}
