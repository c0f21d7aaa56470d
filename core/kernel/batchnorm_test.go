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

// TestBatchNormReLUMatchesSeparateOps checks the fused BN+ReLU kernels
// against BatchNormTrain, ReLUForward, ReLUBackward and BatchNormBackward
// run one after another: the fused ones must give the same values bit for
// bit (they do the same float32 arithmetic; masked gradients add zeros
// where the separate ops add zeros), with the AVX2 loops and without.
func TestBatchNormReLUMatchesSeparateOps(t *testing.T) {
	prevAsm := bnAsm
	defer func() { bnAsm = prevAsm }()
	rng := rand.New(rand.NewPCG(13, 14))
	const eps, mom = 1e-5, 0.1
	cases := append(bnCases(), bnCase{4, 3, 37, true, 0}, bnCase{2, 2, 16, false, 0.5})
	for _, asm := range []bool{false, prevAsm} {
		bnAsm = asm
		for _, bc := range cases {
			for _, acc := range []bool{false, true} {
				t.Run(fmt.Sprintf("%v/asm%v/acc%v", bc, asm, acc), func(t *testing.T) {
					x, gamma, beta, rm, rv := bnInputs(rng, bc)
					if beta != nil {
						// Shift so that the ReLU zeroes a good share of the outputs.
						for i := range beta {
							beta[i] -= 0.3
						}
					}
					rm2, rv2 := append([]float32(nil), rm...), append([]float32(nil), rv...)
					dy := randVec(rng, len(x))
					dx0 := randVec(rng, len(x))
					var dg0, db0 []float32
					if bc.affine {
						dg0, db0 = randVec(rng, bc.c), randVec(rng, bc.c)
					}
					c := bc.c

					// Separate ops.
					y, mean, inv := make([]float32, len(x)), make([]float32, c), make([]float32, c)
					BatchNormTrain(bc.n, c, bc.hw, x, gamma, beta, y, mean, inv, rm, rv, mom, eps)
					ReLUForward(y, y)
					g := make([]float32, len(x))
					ReLUBackward(y, dy, g, false)
					dx, dg, db := append([]float32(nil), dx0...), clone32(dg0), clone32(db0)
					BatchNormBackward(bc.n, c, bc.hw, x, g, gamma, mean, inv, dx, dg, db, acc)

					// Fused.
					yf, meanf, invf, coef := make([]float32, len(x)), make([]float32, c), make([]float32, c), make([]float32, 4*c)
					BatchNormReLUTrain(bc.n, c, bc.hw, x, gamma, beta, yf, meanf, invf, coef, rm2, rv2, mom, eps)
					dxf, dgf, dbf := append([]float32(nil), dx0...), clone32(dg0), clone32(db0)
					BatchNormReLUBackward(bc.n, c, bc.hw, x, dy, gamma, meanf, invf, coef, dxf, dgf, dbf, acc)

					zeros := 0
					for _, v := range y {
						if v == 0 {
							zeros++
						}
					}
					if zeros == 0 || zeros == len(y) {
						t.Fatalf("%d of %d outputs are zero: the ReLU is not exercised", zeros, len(y))
					}
					same(t, "y", yf, y)
					same(t, "saveMean", meanf, mean)
					same(t, "saveInvStd", invf, inv)
					same(t, "runMean", rm2, rm)
					same(t, "runVar", rv2, rv)
					same(t, "dx", dxf, dx)
					same(t, "dgamma", dgf, dg)
					same(t, "dbeta", dbf, db)
				})
			}
		}
	}
}

// TestBatchNormAsmMatchesGo compares the AVX2 loops with the portable ones
// on lengths with and without a remainder.
func TestBatchNormAsmMatchesGo(t *testing.T) {
	if !bnAsm {
		t.Skip("no AVX2 loops on this machine")
	}
	defer func() { bnAsm = true }()
	rng := rand.New(rand.NewPCG(15, 16))
	for _, n := range []int{8, 13, 16, 64, 1000} {
		x, dy := randVec(rng, n), randVec(rng, n)
		for i := range x {
			x[i] += 3
		}
		m := bnMap{a: 1.7, b: -0.2, hi: 3, lo: 1e-7}
		k := bnDx{a: 0.9, b: -0.4, c: 0.05, hi: 3, lo: -2e-7}
		type res struct {
			s1, s2, g1, g2, g3, r1, r2, r3 float64
			y, yr, dx, dxr                 []float32
		}
		run := func(asm bool) res {
			bnAsm = asm
			var r res
			r.s1, r.s2 = shiftedSums(x, 2.5)
			r.g1, r.g2, r.g3 = gradSums3(dy, x, 3.1)
			r.r1, r.r2, r.r3 = gradSumsReLU(dy, x, 3.1, &m)
			r.y, r.yr = make([]float32, n), make([]float32, n)
			normalize(x, r.y, &m, false)
			normalize(x, r.yr, &m, true)
			r.dx, r.dxr = append([]float32(nil), dy...), append([]float32(nil), x...)
			backDx(r.dx, dy, x, &k, nil, true)
			backDx(r.dxr, dy, x, &k, &m, false)
			return r
		}
		g, a := run(false), run(true)
		for _, p := range [][2]float64{{a.s1, g.s1}, {a.s2, g.s2}, {a.g1, g.g1}, {a.g2, g.g2}, {a.g3, g.g3}, {a.r1, g.r1}, {a.r2, g.r2}, {a.r3, g.r3}} {
			if math.Abs(p[0]-p[1]) > 1e-9*(1+math.Abs(p[1])) {
				t.Errorf("n=%d: assembly sum %v, Go %v", n, p[0], p[1])
			}
		}
		same(t, "y", a.y, g.y)
		same(t, "relu y", a.yr, g.yr)
		same(t, "dx", a.dx, g.dx)
		same(t, "relu dx", a.dxr, g.dxr)
	}
}

func clone32(s []float32) []float32 {
	if s == nil {
		return nil
	}
	return append([]float32(nil), s...)
}

// same requires bit-identical slices.
func same(t *testing.T, what string, got, want []float32) {
	t.Helper()
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("%s[%d] = %v, want %v", what, i, got[i], want[i])
		}
	}
}
