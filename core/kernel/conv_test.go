package kernel

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// convCases returns the shapes the conv tests run: every combination of
// filter size, stride and padding on odd-sized inputs, plus the direct 1x1
// path and a few asymmetric ones.
func convCases() []ConvGeom {
	var gs []ConvGeom
	i := 0
	for _, rs := range []int{1, 3, 5} {
		for _, st := range []int{1, 2, 3} {
			for _, pad := range []int{0, 1, 2} {
				i++
				n := 1 + i%5
				c := 1 + i%3
				k := 1 + (i*7)%4
				h := 5 + i%4 // 5..8: odd and even sizes
				w := 7 + i%3
				if h+2*pad < rs || w+2*pad < rs {
					continue
				}
				gs = append(gs, ConvGeom{N: n, C: c, H: h, W: w, K: k, R: rs, S: rs, StrideH: st, StrideW: st, PadH: pad, PadW: pad})
			}
		}
	}
	gs = append(gs,
		ConvGeom{N: 3, C: 5, H: 6, W: 4, K: 7, R: 1, S: 1, StrideH: 1, StrideW: 1},                      // direct 1x1
		ConvGeom{N: 2, C: 4, H: 9, W: 9, K: 6, R: 1, S: 1, StrideH: 2, StrideW: 2},                      // 1x1 s2 shortcut
		ConvGeom{N: 2, C: 3, H: 7, W: 10, K: 2, R: 3, S: 2, StrideH: 1, StrideW: 2, PadH: 1, PadW: 0},   // asymmetric
		ConvGeom{N: 4, C: 8, H: 17, W: 17, K: 16, R: 3, S: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1}, // parallel im2col
		ConvGeom{N: 5, C: 16, H: 8, W: 8, K: 32, R: 3, S: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1},
		ConvGeom{N: 1, C: 2, H: 1, W: 1, K: 3, R: 3, S: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1}, // all padding but centre
		// Stride 1 with C >= 32: backward-data runs as a transposed forward.
		ConvGeom{N: 3, C: 32, H: 6, W: 5, K: 8, R: 3, S: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1},
		ConvGeom{N: 2, C: 33, H: 7, W: 6, K: 5, R: 5, S: 3, StrideH: 1, StrideW: 1, PadH: 2, PadW: 0},
		// Output planes of a multiple of 16 pixels: the GEMM writes a group
		// of images in place (SgemmBlockedC), forward and transposed.
		ConvGeom{N: 3, C: 33, H: 8, W: 8, K: 5, R: 3, S: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1},
		// Padded planes too large for the gather path: im2colRow and the
		// row-by-row col2im (stride 2; and stride 1 on rows too narrow for
		// the shifted copy).
		ConvGeom{N: 2, C: 2, H: 47, W: 47, K: 3, R: 3, S: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1},
		ConvGeom{N: 1, C: 2, H: 300, W: 7, K: 2, R: 3, S: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1},
	)
	return gs
}

// budgets exercise one image per GEMM, uneven groups and the whole batch at
// once.
var budgets = []int{1, 2 * 8 * 9 * 81, 0}

func TestConvAgainstReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, g := range convCases() {
		x, w, dy := randVec(rng, g.XLen()), randVec(rng, g.WLen()), randVec(rng, g.YLen())
		wantY, magY := refConv(g, to64(x), to64(w))
		wantDX, magDX, wantDW, magDW := refConvBackward(g, to64(x), to64(w), to64(dy))
		for _, budget := range budgets {
			t.Run(fmt.Sprintf("%+v/budget%d", g, budget), func(t *testing.T) {
				ws := &Workspace{ColBudget: budget}
				y := randVec(rng, g.YLen()) // garbage: must be overwritten
				Conv2DForward(g, x, w, y, ws)
				checkClose(t, "y", y, wantY, magY, 1e-5, 1e-6)

				dx := randVec(rng, g.XLen())
				Conv2DBackwardData(g, dy, w, dx, ws, false)
				checkClose(t, "dx", dx, wantDX, magDX, 1e-5, 1e-6)

				dw := randVec(rng, g.WLen())
				Conv2DBackwardFilter(g, x, dy, dw, ws, false)
				checkClose(t, "dw", dw, wantDW, magDW, 1e-5, 1e-6)

				// accumulate adds the same gradient again.
				Conv2DBackwardData(g, dy, w, dx, ws, true)
				Conv2DBackwardFilter(g, x, dy, dw, ws, true)
				checkClose(t, "2dx", dx, scale(wantDX, 2), scale(magDX, 2), 1e-5, 1e-6)
				checkClose(t, "2dw", dw, scale(wantDW, 2), scale(magDW, 2), 1e-5, 1e-6)
			})
		}
	}
}

func scale(x []float64, a float64) []float64 {
	y := make([]float64, len(x))
	for i, v := range x {
		y[i] = a * v
	}
	return y
}

// TestConvGradFiniteDifference checks dx and dw against central differences
// of the float32 forward kernel projected on a random direction r:
// L(x) = <r, conv(x, w)> summed in float64. Convolution is linear, so the
// central difference has no truncation error and eps can be large (0.05);
// what is left is float32 rounding of y, about 1e-7*|L|/eps, hence the
// tolerance 2e-3*(1 + |grad|).
func TestConvGradFiniteDifference(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const eps, tol = 0.05, 2e-3
	for _, g := range []ConvGeom{
		{N: 2, C: 3, H: 7, W: 6, K: 4, R: 3, S: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1},
		{N: 3, C: 2, H: 5, W: 5, K: 3, R: 5, S: 5, StrideH: 1, StrideW: 1, PadH: 2, PadW: 2},
		{N: 2, C: 4, H: 6, W: 6, K: 3, R: 1, S: 1, StrideH: 1, StrideW: 1},
		{N: 2, C: 4, H: 7, W: 7, K: 3, R: 1, S: 1, StrideH: 2, StrideW: 2},
	} {
		t.Run(fmt.Sprintf("%+v", g), func(t *testing.T) {
			ws := new(Workspace)
			x, w, r := randVec(rng, g.XLen()), randVec(rng, g.WLen()), randVec(rng, g.YLen())
			y := make([]float32, g.YLen())
			loss := func() float64 {
				Conv2DForward(g, x, w, y, ws)
				return dot64(to64(r), to64(y))
			}
			dx, dw := make([]float32, g.XLen()), make([]float32, g.WLen())
			Conv2DBackwardData(g, r, w, dx, ws, false)
			Conv2DBackwardFilter(g, x, r, dw, ws, false)
			for _, p := range []struct {
				name string
				v    []float32
				grad []float32
			}{{"x", x, dx}, {"w", w, dw}} {
				for trial := 0; trial < 12; trial++ {
					i := rng.IntN(len(p.v))
					old := p.v[i]
					p.v[i] = old + eps
					lp := loss()
					p.v[i] = old - eps
					lm := loss()
					p.v[i] = old
					fd := (lp - lm) / (2 * eps)
					if e := math.Abs(fd - float64(p.grad[i])); e > tol*(1+math.Abs(fd)) {
						t.Fatalf("d%s[%d] = %g, finite difference %g", p.name, i, p.grad[i], fd)
					}
				}
			}
		})
	}
}

func TestConvNilWorkspace(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	g := ConvGeom{N: 2, C: 3, H: 6, W: 6, K: 4, R: 3, S: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1}
	x, w := randVec(rng, g.XLen()), randVec(rng, g.WLen())
	y := make([]float32, g.YLen())
	Conv2DForward(g, x, w, y, nil)
	want, mag := refConv(g, to64(x), to64(w))
	checkClose(t, "y", y, want, mag, 1e-5, 1e-6)
}

func TestConvGeom(t *testing.T) {
	g := ConvGeom{N: 128, C: 64, H: 32, W: 32, K: 128, R: 3, S: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1}
	if g.OutH() != 16 || g.OutW() != 16 {
		t.Fatalf("out %dx%d, want 16x16", g.OutH(), g.OutW())
	}
	if want := int64(128 * 128 * 16 * 16 * 64 * 9); g.MACs() != want || g.FLOPs() != 2*want {
		t.Fatalf("MACs %d, want %d", g.MACs(), want)
	}
	for _, bad := range []ConvGeom{
		{N: 1, C: 1, H: 2, W: 2, K: 1, R: 3, S: 3, StrideH: 1, StrideW: 1},
		{N: 1, C: 1, H: 4, W: 4, K: 1, R: 3, S: 3, StrideH: 0, StrideW: 1},
		{N: 0, C: 1, H: 4, W: 4, K: 1, R: 3, S: 3, StrideH: 1, StrideW: 1},
		{N: 1, C: 1, H: 4, W: 4, K: 1, R: 3, S: 3, StrideH: 1, StrideW: 1, PadH: -1},
	} {
		if bad.Validate() == nil {
			t.Errorf("%+v: Validate accepted it", bad)
		}
	}
	if n := ConvWorkspaceFloats(g); n != DefaultColBudget/(64*9*256)*(64*9*256+128*256) {
		t.Errorf("ConvWorkspaceFloats = %d", n)
	}
}

func TestConvPanicsOnShortSlice(t *testing.T) {
	g := ConvGeom{N: 1, C: 1, H: 4, W: 4, K: 1, R: 3, S: 3, StrideH: 1, StrideW: 1}
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
	}()
	Conv2DForward(g, make([]float32, 15), make([]float32, 9), make([]float32, 4), nil)
}

// TestIm2colShifted compares the one-copy-per-tap im2col of stride-1
// "same"-width convolutions with the row-by-row one.
func TestIm2colShifted(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	for _, g := range []ConvGeom{
		{N: 1, C: 1, H: 5, W: 5, K: 1, R: 3, S: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1},
		{N: 1, C: 1, H: 4, W: 6, K: 1, R: 3, S: 3, StrideH: 1, StrideW: 1, PadH: 0, PadW: 1},
		{N: 1, C: 1, H: 3, W: 7, K: 1, R: 3, S: 3, StrideH: 1, StrideW: 1, PadH: 2, PadW: 1},
		{N: 1, C: 1, H: 6, W: 5, K: 1, R: 5, S: 5, StrideH: 1, StrideW: 1, PadH: 2, PadW: 2},
		{N: 1, C: 1, H: 2, W: 3, K: 1, R: 5, S: 5, StrideH: 1, StrideW: 1, PadH: 4, PadW: 2},
		{N: 1, C: 1, H: 1, W: 2, K: 1, R: 3, S: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1},
		{N: 1, C: 1, H: 4, W: 4, K: 1, R: 1, S: 3, StrideH: 1, StrideW: 1, PadH: 0, PadW: 1},
	} {
		if err := g.Validate(); err != nil {
			t.Fatal(err)
		}
		oh, ow := g.OutH(), g.OutW()
		if ow != g.W || g.PadW >= g.W {
			t.Fatalf("%+v is not a shifted case", g)
		}
		src := randVec(rng, g.H*g.W)
		for r := 0; r < g.R; r++ {
			for s := 0; s < g.S; s++ {
				want, got := randVec(rng, oh*ow), randVec(rng, oh*ow)
				im2colRow(&g, oh, ow, r, s, src, want)
				im2colShifted(&g, oh, r, s, src, got)
				for i := range want {
					if got[i] != want[i] {
						t.Fatalf("%+v tap (%d,%d): col[%d] = %v, want %v", g, r, s, i, got[i], want[i])
					}
				}
			}
		}
	}
}

// TestConvCasesCoverIm2colPaths makes sure convCases runs every im2col
// and col2im path: the shifted copy, the padded-plane gather and the
// row-by-row fallback.
func TestConvCasesCoverIm2colPaths(t *testing.T) {
	var shifted, gather, rows int
	for _, g := range convCases() {
		switch {
		case g.direct():
		case g.shiftedPath():
			shifted++
		case g.gatherPath():
			gather++
		default:
			rows++
		}
	}
	if shifted == 0 || gather == 0 || rows == 0 {
		t.Fatalf("conv cases take the shifted path %d times, the gather path %d, the row path %d: each must be tested", shifted, gather, rows)
	}
}
