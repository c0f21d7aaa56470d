package kernel

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// Naive float64 references, written as directly from the definitions as
// possible; every fast kernel is checked against them.

func randVec(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

func to64(x []float32) []float64 {
	y := make([]float64, len(x))
	for i, v := range x {
		y[i] = float64(v)
	}
	return y
}

// refConv returns y = conv(x, w) and, in mag, the same sums over |x*w|
// (the scale that bounds float32 rounding error).
func refConv(g ConvGeom, x, w []float64) (y, mag []float64) {
	oh, ow := g.OutH(), g.OutW()
	y = make([]float64, g.YLen())
	mag = make([]float64, g.YLen())
	for n := 0; n < g.N; n++ {
		for k := 0; k < g.K; k++ {
			for oy := 0; oy < oh; oy++ {
				for ox := 0; ox < ow; ox++ {
					var s, a float64
					for c := 0; c < g.C; c++ {
						for r := 0; r < g.R; r++ {
							for q := 0; q < g.S; q++ {
								ih, iw := oy*g.StrideH-g.PadH+r, ox*g.StrideW-g.PadW+q
								if ih < 0 || ih >= g.H || iw < 0 || iw >= g.W {
									continue
								}
								p := x[((n*g.C+c)*g.H+ih)*g.W+iw] * w[((k*g.C+c)*g.R+r)*g.S+q]
								s += p
								a += math.Abs(p)
							}
						}
					}
					i := ((n*g.K+k)*oh+oy)*ow + ox
					y[i], mag[i] = s, a
				}
			}
		}
	}
	return y, mag
}

// refConvBackward returns dx and dw (and their magnitudes) by scattering
// every term of the forward sum, independently of im2col.
func refConvBackward(g ConvGeom, x, w, dy []float64) (dx, dxMag, dw, dwMag []float64) {
	oh, ow := g.OutH(), g.OutW()
	dx, dxMag = make([]float64, g.XLen()), make([]float64, g.XLen())
	dw, dwMag = make([]float64, g.WLen()), make([]float64, g.WLen())
	for n := 0; n < g.N; n++ {
		for k := 0; k < g.K; k++ {
			for oy := 0; oy < oh; oy++ {
				for ox := 0; ox < ow; ox++ {
					d := dy[((n*g.K+k)*oh+oy)*ow+ox]
					for c := 0; c < g.C; c++ {
						for r := 0; r < g.R; r++ {
							for q := 0; q < g.S; q++ {
								ih, iw := oy*g.StrideH-g.PadH+r, ox*g.StrideW-g.PadW+q
								if ih < 0 || ih >= g.H || iw < 0 || iw >= g.W {
									continue
								}
								xi := ((n*g.C+c)*g.H+ih)*g.W + iw
								wi := ((k*g.C+c)*g.R+r)*g.S + q
								dx[xi] += d * w[wi]
								dxMag[xi] += math.Abs(d * w[wi])
								dw[wi] += d * x[xi]
								dwMag[wi] += math.Abs(d * x[xi])
							}
						}
					}
				}
			}
		}
	}
	return dx, dxMag, dw, dwMag
}

// checkClose fails t when |got - want| > rel*mag + abs anywhere.
func checkClose(t *testing.T, what string, got []float32, want, mag []float64, rel, abs float64) {
	t.Helper()
	worst, at := 0.0, -1
	for i := range want {
		m := 1.0
		if mag != nil {
			m = mag[i]
		} else {
			m = math.Abs(want[i])
		}
		e := math.Abs(float64(got[i]) - want[i])
		if e > rel*m+abs || math.IsNaN(float64(got[i])) {
			if e > worst || at < 0 {
				worst, at = e, i
			}
		}
	}
	if at >= 0 {
		t.Fatalf("%s: element %d = %g, want %g (err %.3g)", what, at, got[at], want[at], worst)
	}
}

// refBN is the float64 training/eval forward: y, plus the batch mean and
// biased variance per channel.
func refBN(n, c, hw int, x, gamma, beta []float64, train bool, rm, rv []float64, eps float64) (y, mean, vr []float64) {
	m := float64(n * hw)
	y = make([]float64, len(x))
	mean, vr = make([]float64, c), make([]float64, c)
	for ch := 0; ch < c; ch++ {
		var s float64
		for i := 0; i < n; i++ {
			for k := 0; k < hw; k++ {
				s += x[(i*c+ch)*hw+k]
			}
		}
		mu := s / m
		var v float64
		for i := 0; i < n; i++ {
			for k := 0; k < hw; k++ {
				d := x[(i*c+ch)*hw+k] - mu
				v += d * d
			}
		}
		v /= m
		mean[ch], vr[ch] = mu, v
		if !train {
			mu, v = rm[ch], rv[ch]
		}
		ga, be := 1.0, 0.0
		if gamma != nil {
			ga, be = gamma[ch], beta[ch]
		}
		for i := 0; i < n; i++ {
			for k := 0; k < hw; k++ {
				j := (i*c+ch)*hw + k
				y[j] = (x[j]-mu)/math.Sqrt(v+eps)*ga + be
			}
		}
	}
	return y, mean, vr
}

func dot64(a []float64, b []float64) float64 {
	var s float64
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

func TestValidRange(t *testing.T) {
	// Brute force against the definition for small cases.
	for out := 1; out < 8; out++ {
		for size := 1; size < 8; size++ {
			for stride := 1; stride < 4; stride++ {
				for pad := 0; pad < 3; pad++ {
					for off := 0; off < 5; off++ {
						lo, hi := validRange(out, size, stride, pad, off)
						for o := 0; o < out; o++ {
							i := o*stride - pad + off
							in := i >= 0 && i < size
							if in != (o >= lo && o < hi) {
								t.Fatal(fmt.Sprintf("validRange(%d,%d,%d,%d,%d) = [%d,%d), wrong at %d", out, size, stride, pad, off, lo, hi, o))
							}
						}
					}
				}
			}
		}
	}
}
