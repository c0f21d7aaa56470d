package kernel

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

type bnCase struct {
	n, c, hw int
	affine   bool
	offset   float64 // added to x: a large |mean|/std tests the shifted sums
}

func bnCases() []bnCase {
	return []bnCase{
		{2, 3, 1, true, 0},
		{5, 7, 1, false, 0},
		{64, 300, 1, true, 0}, // more than one channel block of the [N, C] path
		{3, 4, 9, true, 0},
		{1, 5, 7, false, 0},
		{4, 6, 25, true, 0},
		{2, 3, 1024, true, 0},
		{16, 130, 1, true, 1000},
		{3, 4, 49, true, 1000},
	}
}

func (bc bnCase) String() string {
	return fmt.Sprintf("n%d_c%d_hw%d_affine%v_off%g", bc.n, bc.c, bc.hw, bc.affine, bc.offset)
}

// bnInputs returns x (with per-channel scale and shift so channels differ),
// gamma, beta (nil without affine) and initial running statistics.
func bnInputs(rng *rand.Rand, bc bnCase) (x, gamma, beta, rm, rv []float32) {
	x = make([]float32, bc.n*bc.c*bc.hw)
	for i := range x {
		ch := (i / bc.hw) % bc.c
		x[i] = float32(bc.offset + float64(ch%3) + (1+0.5*float64(ch%4))*rng.NormFloat64())
	}
	if bc.affine {
		gamma, beta = randVec(rng, bc.c), randVec(rng, bc.c)
	}
	rm, rv = randVec(rng, bc.c), make([]float32, bc.c)
	for i := range rv {
		rv[i] = 0.5 + rng.Float32()
	}
	return
}

func TestBatchNormTrainAgainstReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	const eps, mom = 1e-5, 0.1
	for _, bc := range bnCases() {
		t.Run(bc.String(), func(t *testing.T) {
			x, gamma, beta, rm, rv := bnInputs(rng, bc)
			rm0, rv0 := to64(rm), to64(rv)
			y := randVec(rng, len(x))
			mean, inv := make([]float32, bc.c), make([]float32, bc.c)
			BatchNormTrain(bc.n, bc.c, bc.hw, x, gamma, beta, y, mean, inv, rm, rv, mom, eps)
			var g64, b64 []float64
			if bc.affine {
				g64, b64 = to64(gamma), to64(beta)
			}
			want, wm, wv := refBN(bc.n, bc.c, bc.hw, to64(x), g64, b64, true, nil, nil, eps)
			checkClose(t, "y", y, want, nil, 2e-5, 2e-5)
			m := float64(bc.n * bc.hw)
			wantInv, wantRM, wantRV := make([]float64, bc.c), make([]float64, bc.c), make([]float64, bc.c)
			for ch := range wantInv {
				wantInv[ch] = 1 / math.Sqrt(wv[ch]+eps)
				wantRM[ch] = (1-mom)*rm0[ch] + mom*wm[ch]
				wantRV[ch] = (1-mom)*rv0[ch] + mom*wv[ch]*m/(m-1)
			}
			checkClose(t, "saveMean", mean, wm, nil, 1e-6, 1e-6)
			checkClose(t, "saveInvStd", inv, wantInv, nil, 1e-5, 1e-6)
			checkClose(t, "runMean", rm, wantRM, nil, 1e-6, 1e-6)
			checkClose(t, "runVar", rv, wantRV, nil, 1e-5, 1e-6)

			// In place (y aliasing x) gives the same result.
			xc := append([]float32(nil), x...)
			BatchNormTrain(bc.n, bc.c, bc.hw, xc, gamma, beta, xc, mean, inv, nil, nil, mom, eps)
			checkClose(t, "in-place y", xc, want, nil, 2e-5, 2e-5)
		})
	}
}

func TestBatchNormEvalAgainstReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	const eps = 1e-5
	for _, bc := range bnCases() {
		t.Run(bc.String(), func(t *testing.T) {
			x, gamma, beta, rm, rv := bnInputs(rng, bc)
			for i := range rm {
				rm[i] += float32(bc.offset)
			}
			y := randVec(rng, len(x))
			BatchNormEval(bc.n, bc.c, bc.hw, x, gamma, beta, rm, rv, y, eps)
			var g64, b64 []float64
			if bc.affine {
				g64, b64 = to64(gamma), to64(beta)
			}
			want, _, _ := refBN(bc.n, bc.c, bc.hw, to64(x), g64, b64, false, to64(rm), to64(rv), eps)
			checkClose(t, "y", y, want, nil, 2e-5, 2e-5)
		})
	}
}

// TestBatchNormBackward checks dx, dgamma and dbeta of both modes against
// central differences of the float64 reference forward refBN, projected on
// a random direction r: L = <r, BN(x)>. In float64 with eps = 1e-6 the
// truncation error (~eps^2 * third derivative) and rounding (~1e-16/eps) are
// both far below the float32 kernel's own error, so the tolerance is set
// by float32: 1e-3*(1 + |grad|) for the sampled coordinates. Every element
// is also compared with the float64 closed form.
func TestBatchNormBackward(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	const eps = 1e-5
	for _, bc := range bnCases() {
		for _, train := range []bool{true, false} {
			t.Run(fmt.Sprintf("%v/train%v", bc, train), func(t *testing.T) {
				x, gamma, beta, rm, rv := bnInputs(rng, bc)
				for i := range rm {
					rm[i] += float32(bc.offset)
				}
				r := randVec(rng, len(x))
				mean, inv := make([]float32, bc.c), make([]float32, bc.c)
				y := make([]float32, len(x))
				var dgamma, dbeta []float32
				if bc.affine {
					dgamma, dbeta = randVec(rng, bc.c), randVec(rng, bc.c)
				}
				dx := randVec(rng, len(x))
				if train {
					BatchNormTrain(bc.n, bc.c, bc.hw, x, gamma, beta, y, mean, inv, nil, nil, 0.1, eps)
					BatchNormBackward(bc.n, bc.c, bc.hw, x, r, gamma, mean, inv, dx, dgamma, dbeta, false)
				} else {
					BatchNormEvalBackward(bc.n, bc.c, bc.hw, x, r, gamma, rm, rv, eps, dx, dgamma, dbeta, false)
				}

				x64, r64 := to64(x), to64(r)
				var g64, b64 []float64
				if bc.affine {
					g64, b64 = to64(gamma), to64(beta)
				}
				rm64, rv64 := to64(rm), to64(rv)
				loss := func() float64 {
					y, _, _ := refBN(bc.n, bc.c, bc.hw, x64, g64, b64, train, rm64, rv64, eps)
					return dot64(r64, y)
				}
				const h, tol = 1e-6, 1e-3
				// The offset cases scale x by 1000: step relative to |x|.
				fd := func(v []float64, i int) float64 {
					step := h * (1 + math.Abs(v[i]))
					old := v[i]
					v[i] = old + step
					lp := loss()
					v[i] = old - step
					lm := loss()
					v[i] = old
					return (lp - lm) / (2 * step)
				}
				check := func(name string, got []float32, v []float64, i int) {
					t.Helper()
					want := fd(v, i)
					if e := math.Abs(want - float64(got[i])); e > tol*(1+math.Abs(want)) {
						t.Fatalf("%s[%d] = %g, finite difference %g", name, i, got[i], want)
					}
				}
				for trial := 0; trial < 8; trial++ {
					check("dx", dx, x64, rng.IntN(len(x)))
				}
				if bc.affine {
					for ch := 0; ch < min(bc.c, 8); ch++ {
						check("dgamma", dgamma, g64, ch)
						check("dbeta", dbeta, b64, ch)
					}
				}

				// Closed form for every element, and accumulation.
				wantDX, wantDG, wantDB := refBNBackward(bc, x64, r64, g64, train, rm64, rv64, eps)
				checkClose(t, "dx", dx, wantDX, nil, 1e-4, 1e-5)
				if bc.affine {
					checkClose(t, "dgamma", dgamma, wantDG, nil, 1e-4, 1e-4)
					checkClose(t, "dbeta", dbeta, wantDB, nil, 1e-5, 1e-5)
				}
				if train {
					BatchNormBackward(bc.n, bc.c, bc.hw, x, r, gamma, mean, inv, dx, dgamma, dbeta, true)
				} else {
					BatchNormEvalBackward(bc.n, bc.c, bc.hw, x, r, gamma, rm, rv, eps, dx, dgamma, dbeta, true)
				}
				checkClose(t, "2dx", dx, scale(wantDX, 2), nil, 1e-4, 2e-5)
				if bc.affine {
					checkClose(t, "2dgamma", dgamma, scale(wantDG, 2), nil, 1e-4, 2e-4)
					checkClose(t, "2dbeta", dbeta, scale(wantDB, 2), nil, 1e-5, 2e-5)
				}
			})
		}
	}
}

// refBNBackward is the float64 closed form of the batch-norm gradients.
func refBNBackward(bc bnCase, x, dy, gamma []float64, train bool, rm, rv []float64, eps float64) (dx, dg, db []float64) {
	_, mean, vr := refBN(bc.n, bc.c, bc.hw, x, nil, nil, true, nil, nil, eps)
	dx, dg, db = make([]float64, len(x)), make([]float64, bc.c), make([]float64, bc.c)
	m := float64(bc.n * bc.hw)
	for ch := 0; ch < bc.c; ch++ {
		mu, v := mean[ch], vr[ch]
		if !train {
			mu, v = rm[ch], rv[ch]
		}
		inv := 1 / math.Sqrt(v+eps)
		ga := 1.0
		if gamma != nil {
			ga = gamma[ch]
		}
		for i := 0; i < bc.n; i++ {
			for k := 0; k < bc.hw; k++ {
				j := (i*bc.c+ch)*bc.hw + k
				db[ch] += dy[j]
				dg[ch] += dy[j] * (x[j] - mu) * inv
			}
		}
		for i := 0; i < bc.n; i++ {
			for k := 0; k < bc.hw; k++ {
				j := (i*bc.c+ch)*bc.hw + k
				if train {
					xh := (x[j] - mu) * inv
					dx[j] = ga * inv / m * (m*dy[j] - db[ch] - xh*dg[ch])
				} else {
					dx[j] = ga * inv * dy[j]
				}
			}
		}
	}
	return dx, dg, db
}

func TestBatchNormTrainNeedsTwoValues(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic for one value per channel")
		}
	}()
	one := make([]float32, 3)
	BatchNormTrain(1, 3, 1, one, nil, nil, one, one, one, nil, nil, 0.1, 1e-5)
}
