package kernel

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

func poolCases() []PoolGeom {
	var ps []PoolGeom
	i := 0
	for _, k := range []int{1, 2, 3, 5} {
		for _, st := range []int{1, 2, 3} {
			for _, pad := range []int{0, 1, 2} {
				i++
				if 2*pad > k {
					continue
				}
				ps = append(ps, PoolGeom{N: 1 + i%3, C: 1 + i%4, H: 5 + i%4, W: 6 + i%3, KH: k, KW: k, StrideH: st, StrideW: st, PadH: pad, PadW: pad})
			}
		}
	}
	return append(ps,
		PoolGeom{N: 2, C: 3, H: 7, W: 9, KH: 3, KW: 2, StrideH: 2, StrideW: 1, PadH: 1, PadW: 0},
		PoolGeom{N: 8, C: 16, H: 32, W: 32, KH: 3, KW: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1}, // parallel
	)
}

// refPool returns the float64 max (with argmax) or count_include_pad
// average over every window.
func refPool(p PoolGeom, x []float64, isMax bool) (y []float64, arg []int) {
	oh, ow := p.OutH(), p.OutW()
	y, arg = make([]float64, p.YLen()), make([]int, p.YLen())
	for pl := 0; pl < p.N*p.C; pl++ {
		for oy := 0; oy < oh; oy++ {
			for ox := 0; ox < ow; ox++ {
				best, bi, sum := math.Inf(-1), -1, 0.0
				for r := 0; r < p.KH; r++ {
					for s := 0; s < p.KW; s++ {
						h, w := oy*p.StrideH-p.PadH+r, ox*p.StrideW-p.PadW+s
						if h < 0 || h >= p.H || w < 0 || w >= p.W {
							continue
						}
						v := x[pl*p.H*p.W+h*p.W+w]
						sum += v
						if v > best {
							best, bi = v, h*p.W+w
						}
					}
				}
				o := pl*oh*ow + oy*ow + ox
				if isMax {
					y[o], arg[o] = best, bi
				} else {
					y[o] = sum / float64(p.KH*p.KW)
				}
			}
		}
	}
	return y, arg
}

// refPoolBackward scatters dy to each window's argmax or spreads
// dy/(KH*KW) over its in-bounds elements.
func refPoolBackward(p PoolGeom, dy []float64, arg []int, isMax bool) []float64 {
	oh, ow := p.OutH(), p.OutW()
	dx := make([]float64, p.XLen())
	for pl := 0; pl < p.N*p.C; pl++ {
		for oy := 0; oy < oh; oy++ {
			for ox := 0; ox < ow; ox++ {
				o := pl*oh*ow + oy*ow + ox
				if isMax {
					dx[pl*p.H*p.W+arg[o]] += dy[o]
					continue
				}
				for r := 0; r < p.KH; r++ {
					for s := 0; s < p.KW; s++ {
						h, w := oy*p.StrideH-p.PadH+r, ox*p.StrideW-p.PadW+s
						if h >= 0 && h < p.H && w >= 0 && w < p.W {
							dx[pl*p.H*p.W+h*p.W+w] += dy[o] / float64(p.KH*p.KW)
						}
					}
				}
			}
		}
	}
	return dx
}

// TestPools checks forward results against refPool, backward results
// against refPoolBackward everywhere and, at sampled inputs, against central
// differences of refPool's output projected on a random r. eps = 1e-6 in
// float64: the inputs are distinct float32 normals, so a window's maximum
// almost never changes under such a step, and both pools are linear
// pieces, so the difference is exact up to float64 rounding of
// ~1e-16*|L|/eps; tolerance 1e-5.
func TestPools(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	for _, p := range poolCases() {
		for _, isMax := range []bool{true, false} {
			t.Run(fmt.Sprintf("%+v/max%v", p, isMax), func(t *testing.T) {
				x, r := randVec(rng, p.XLen()), randVec(rng, p.YLen())
				y := randVec(rng, p.YLen())
				arg := make([]int32, p.YLen())
				if isMax {
					MaxPool2DForward(p, x, y, arg)
				} else {
					AvgPool2DForward(p, x, y)
				}
				x64 := to64(x)
				want, wantArg := refPool(p, x64, isMax)
				checkClose(t, "y", y, want, nil, 1e-6, 1e-6)
				if isMax {
					for i := range arg {
						if int(arg[i]) != wantArg[i] {
							t.Fatalf("argmax[%d] = %d, want %d", i, arg[i], wantArg[i])
						}
					}
				}
				dx := randVec(rng, p.XLen())
				back := func(acc bool) {
					if isMax {
						MaxPool2DBackward(p, r, arg, dx, acc)
					} else {
						AvgPool2DBackward(p, r, dx, acc)
					}
				}
				back(false)
				r64 := to64(r)
				grad := refPoolBackward(p, r64, wantArg, isMax)
				checkClose(t, "dx", dx, grad, nil, 1e-6, 1e-6)
				const eps = 1e-6
				for trial := 0; trial < 20; trial++ {
					i := rng.IntN(len(x64))
					old := x64[i]
					x64[i] = old + eps
					yp, _ := refPool(p, x64, isMax)
					x64[i] = old - eps
					ym, _ := refPool(p, x64, isMax)
					x64[i] = old
					fd := (dot64(r64, yp) - dot64(r64, ym)) / (2 * eps)
					if math.Abs(fd-float64(dx[i])) > 1e-5*(1+math.Abs(fd)) {
						t.Fatalf("dx[%d] = %g, finite difference %g", i, dx[i], fd)
					}
				}
				back(true)
				checkClose(t, "2dx", dx, scale(grad, 2), nil, 1e-6, 2e-6)
			})
		}
	}
}

func TestMaxPoolNaNWins(t *testing.T) {
	p := PoolGeom{N: 1, C: 1, H: 2, W: 2, KH: 2, KW: 2, StrideH: 2, StrideW: 2}
	x := []float32{1, float32(math.NaN()), 3, 2}
	y, arg := make([]float32, 1), make([]int32, 1)
	MaxPool2DForward(p, x, y, arg)
	if !math.IsNaN(float64(y[0])) || arg[0] != 1 {
		t.Fatalf("got %v at %d, want NaN at 1", y[0], arg[0])
	}
}

func TestGlobalAvgPool(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	for _, sz := range [][3]int{{1, 1, 1}, {3, 5, 7}, {16, 64, 16}, {128, 512, 16}} {
		n, c, hw := sz[0], sz[1], sz[2]
		x, dy := randVec(rng, n*c*hw), randVec(rng, n*c)
		y := make([]float32, n*c)
		GlobalAvgPoolForward(n, c, hw, x, y)
		want := make([]float64, n*c)
		wantDX := make([]float64, n*c*hw)
		for i := range want {
			for k := 0; k < hw; k++ {
				want[i] += float64(x[i*hw+k]) / float64(hw)
				wantDX[i*hw+k] = float64(dy[i]) / float64(hw)
			}
		}
		checkClose(t, "y", y, want, nil, 1e-6, 1e-6)
		dx := randVec(rng, n*c*hw)
		GlobalAvgPoolBackward(n, c, hw, dy, dx, false)
		checkClose(t, "dx", dx, wantDX, nil, 1e-6, 1e-7)
		GlobalAvgPoolBackward(n, c, hw, dy, dx, true)
		checkClose(t, "2dx", dx, scale(wantDX, 2), nil, 1e-6, 1e-7)
	}
}

func TestPoolValidate(t *testing.T) {
	for _, bad := range []PoolGeom{
		{N: 1, C: 1, H: 4, W: 4, KH: 2, KW: 2, StrideH: 2, StrideW: 2, PadH: 2},
		{N: 1, C: 1, H: 4, W: 4, KH: 2, KW: 2, StrideH: 0, StrideW: 2},
		{N: 1, C: 1, H: 1, W: 4, KH: 3, KW: 2, StrideH: 1, StrideW: 2},
	} {
		if bad.Validate() == nil {
			t.Errorf("%+v: Validate accepted it", bad)
		}
	}
}

func TestReLU(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 18))
	for _, n := range []int{0, 1, 7, 1000, 300000} {
		x, dy := randVec(rng, n), randVec(rng, n)
		y := make([]float32, n)
		ReLUForward(x, y)
		for i := range x {
			if want := max(x[i], 0); y[i] != want {
				t.Fatalf("n=%d: y[%d] = %v, want %v", n, i, y[i], want)
			}
		}
		dx := randVec(rng, n)
		ReLUBackward(y, dy, dx, false)
		for i := range x {
			want := float32(0)
			if x[i] > 0 {
				want = dy[i]
			}
			if dx[i] != want {
				t.Fatalf("n=%d: dx[%d] = %v, want %v", n, i, dx[i], want)
			}
		}
		ReLUBackward(y, dy, dx, true)
		for i := range x {
			want := float32(0)
			if x[i] > 0 {
				want = 2 * dy[i]
			}
			if dx[i] != want {
				t.Fatalf("n=%d: accumulated dx[%d] = %v, want %v", n, i, dx[i], want)
			}
		}
		// In place: y = x and dx = dy.
		ReLUForward(x, x)
		ReLUBackward(x, dy, dy, false)
		for i := range x {
			if x[i] != y[i] || (x[i] == 0 && dy[i] != 0) {
				t.Fatalf("n=%d: in-place mismatch at %d", n, i)
			}
		}
	}
}
