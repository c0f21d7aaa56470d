package gemm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/sslrun/sslrun/core/parallel"
)

// problem is one Sgemm call with its inputs stored with padded strides.
type problem struct {
	transA, transB bool
	m, n, k        int
	alpha, beta    float32
	lda, ldb, ldc  int
	a, b, c        []float32
}

func newProblem(rng *rand.Rand, transA, transB bool, m, n, k, pad int, alpha, beta float32) *problem {
	p := &problem{transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, beta: beta}
	ar, ac := m, k
	if transA {
		ar, ac = k, m
	}
	br, bc := k, n
	if transB {
		br, bc = n, k
	}
	p.lda, p.ldb, p.ldc = ac+rng.IntN(pad+1), bc+rng.IntN(pad+1), n+rng.IntN(pad+1)
	p.a = randSlice(rng, ar*p.lda)
	p.b = randSlice(rng, br*p.ldb)
	p.c = randSlice(rng, m*p.ldc)
	if beta == 0 {
		// beta == 0 must not read C: poison it.
		for i := range p.c {
			p.c[i] = float32(math.NaN())
		}
	}
	return p
}

func randSlice(rng *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = rng.Float32()*2 - 1
	}
	return s
}

// check runs Sgemm on a copy of C and compares it with ref, element by
// element, to a tolerance scaled by the magnitude of the terms summed; it
// also checks that the stride padding of C is untouched.
func (p *problem) check(t *testing.T, what string) {
	t.Helper()
	got := append([]float32(nil), p.c...)
	want := append([]float32(nil), p.c...)
	Sgemm(p.transA, p.transB, p.m, p.n, p.k, p.alpha, p.a, p.lda, p.b, p.ldb, p.beta, got, p.ldc)
	ref(p.transA, p.transB, p.m, p.n, p.k, p.alpha, p.a, p.lda, p.b, p.ldb, p.beta, want, p.ldc)
	const eps = 1.0 / (1 << 23)
	for i := 0; i < p.m; i++ {
		for j := 0; j < p.ldc; j++ {
			g, w := got[i*p.ldc+j], want[i*p.ldc+j]
			if j >= p.n {
				if math.Float32bits(g) != math.Float32bits(p.c[i*p.ldc+j]) {
					t.Fatalf("%s: %+v: padding C[%d][%d] changed to %v", what, p.shape(), i, j, g)
				}
				continue
			}
			// Both sums carry at most about k roundings of terms no larger
			// than |alpha|*sum|a*b|, plus one for the beta term.
			var mag float64
			for q := 0; q < p.k; q++ {
				mag += math.Abs(float64(p.at(true, i, q)) * float64(p.at(false, q, j)))
			}
			mag = math.Abs(float64(p.alpha))*mag + 1
			if p.beta != 0 {
				mag += math.Abs(float64(p.beta) * float64(p.c[i*p.ldc+j]))
			}
			tol := 2 * float64(p.k+2) * eps * mag
			if d := math.Abs(float64(g) - float64(w)); !(d <= tol) {
				t.Fatalf("%s: %+v: C[%d][%d] = %v, want %v (|diff| %.3g > tol %.3g)", what, p.shape(), i, j, g, w, d, tol)
			}
		}
	}
}

// at returns op(A)[i][j] (isA) or op(B)[i][j].
func (p *problem) at(isA bool, i, j int) float32 {
	if isA {
		if p.transA {
			return p.a[j*p.lda+i]
		}
		return p.a[i*p.lda+j]
	}
	if p.transB {
		return p.b[j*p.ldb+i]
	}
	return p.b[i*p.ldb+j]
}

func (p *problem) shape() string {
	return fmt.Sprintf("tA=%v tB=%v m=%d n=%d k=%d alpha=%v beta=%v lda=%d ldb=%d ldc=%d",
		p.transA, p.transB, p.m, p.n, p.k, p.alpha, p.beta, p.lda, p.ldb, p.ldc)
}

// configs are the kernel/thread combinations every correctness test runs.
type config struct {
	name    string
	generic bool
	threads int
	driver  string // 2 threads: "" (default choice), "phases" or "sharedB"
}

func configs() []config {
	var cs []config
	for _, generic := range []bool{false, true} {
		if !generic && !HasAsmKernel() {
			continue
		}
		for _, th := range []int{1, 2} {
			name := "asm"
			if generic {
				name = "go"
			}
			cs = append(cs, config{fmt.Sprintf("%s/threads=%d", name, th), generic, th, ""})
		}
	}
	if HasAsmKernel() {
		// The prepacked driver takes every 2-thread product small enough;
		// cover the phase driver (for the large ones) and shared packing.
		cs = append(cs,
			config{"asm/threads=2/phases", false, 2, "phases"},
			config{"asm/threads=2/sharedB", false, 2, "sharedB"},
			config{"asm/threads=2/sliced", false, 2, "sliced"})
	}
	return cs
}

// with runs f under configuration c. With 2 threads the flop threshold is
// dropped to 0 so that even the small shapes take the parallel path.
func with(c config, f func()) {
	prevG := ForceGeneric(c.generic)
	prevT := parallel.SetThreads(c.threads)
	prevF := parallelFlops
	prevP, prevS := prepackMaxFloats, prepackPrivateB
	if c.threads > 1 {
		parallelFlops = 0
	}
	switch c.driver {
	case "phases":
		prepackMaxFloats = 0
	case "sharedB":
		prepackPrivateB = false
	case "sliced":
		// Small enough that products with a few depth blocks or a few
		// hundred columns run as slices (prepackSlices).
		prepackMaxFloats, prepackMinSliceCols = 4096, 32
	}
	prevC := prepackMinSliceCols
	defer func() {
		ForceGeneric(prevG)
		parallel.SetThreads(prevT)
		parallelFlops = prevF
		prepackMaxFloats, prepackPrivateB = prevP, prevS
		prepackMinSliceCols = prevC
	}()
	f()
}

// withBlocks shrinks the cache blocks so that small shapes cross every
// block boundary (several M chunks, N blocks and K blocks).
func withBlocks(mc, kc, nc, mb int, f func()) {
	p := [4]int{blockMC, blockKC, blockNC, blockMB}
	blockMC, blockKC, blockNC, blockMB = mc, kc, nc, mb
	defer func() { blockMC, blockKC, blockNC, blockMB = p[0], p[1], p[2], p[3] }()
	f()
}

var scalars = []struct{ alpha, beta float32 }{
	{1, 0}, {1, 1}, {-0.5, 0}, {2.5, 0.3}, {0.7, -1},
}

func TestSgemmRandomShapes(t *testing.T) {
	for _, c := range configs() {
		t.Run(c.name, func(t *testing.T) {
			with(c, func() {
				rng := rand.New(rand.NewPCG(1, uint64(c.threads)))
				for it := 0; it < 300; it++ {
					s := scalars[it%len(scalars)]
					p := newProblem(rng, it&1 != 0, it&2 != 0, 1+rng.IntN(70), 1+rng.IntN(70), 1+rng.IntN(70), 3, s.alpha, s.beta)
					p.check(t, c.name)
				}
			})
		})
	}
}

func TestSgemmSmallExhaustive(t *testing.T) {
	for _, c := range configs() {
		t.Run(c.name, func(t *testing.T) {
			with(c, func() {
				rng := rand.New(rand.NewPCG(2, 0))
				for m := 1; m <= 8; m++ {
					for n := 1; n <= 18; n++ {
						for _, k := range []int{1, 2, 3, 4, 5, 7, 9} {
							for tr := 0; tr < 4; tr++ {
								s := scalars[(m+n+k+tr)%len(scalars)]
								newProblem(rng, tr&1 != 0, tr&2 != 0, m, n, k, 2, s.alpha, s.beta).check(t, c.name)
							}
						}
					}
				}
			})
		})
	}
}

// TestSgemmBlockBoundaries shrinks the blocks so that every loop of the
// driver runs several times, including partial blocks at each edge.
func TestSgemmBlockBoundaries(t *testing.T) {
	shapes := [][3]int{{37, 53, 29}, {60, 33, 17}, {13, 100, 40}, {100, 7, 9}, {6, 16, 8}, {49, 49, 49}}
	for _, c := range configs() {
		t.Run(c.name, func(t *testing.T) {
			with(c, func() {
				withBlocks(12, 8, 32, 18, func() {
					rng := rand.New(rand.NewPCG(3, 0))
					for i, sh := range shapes {
						for tr := 0; tr < 4; tr++ {
							s := scalars[(i+tr)%len(scalars)]
							newProblem(rng, tr&1 != 0, tr&2 != 0, sh[0], sh[1], sh[2], 4, s.alpha, s.beta).check(t, c.name)
						}
					}
				})
			})
		})
	}
}

// TestSgemmLarge covers shapes above the default block sizes and the
// parallel threshold, with the default blocking.
func TestSgemmLarge(t *testing.T) {
	shapes := [][3]int{{300, 2100, 70}, {150, 40, 530}, {7, 300, 300}}
	for _, c := range configs() {
		t.Run(c.name, func(t *testing.T) {
			with(c, func() {
				rng := rand.New(rand.NewPCG(4, 0))
				for i, sh := range shapes {
					tr := i + c.threads
					s := scalars[(i+1)%len(scalars)]
					newProblem(rng, tr&1 != 0, tr&2 != 0, sh[0], sh[1], sh[2], 5, s.alpha, s.beta).check(t, c.name)
				}
			})
		})
	}
}

func TestSgemmDegenerate(t *testing.T) {
	nan := float32(math.NaN())
	tests := []struct {
		name        string
		m, n, k     int
		alpha, beta float32
		c           []float32
		want        []float32
	}{
		{"k=0 beta=0 overwrites NaN", 2, 2, 0, 1, 0, []float32{nan, nan, nan, nan}, []float32{0, 0, 0, 0}},
		{"k=0 beta=2 scales", 2, 2, 0, 1, 2, []float32{1, 2, 3, 4}, []float32{2, 4, 6, 8}},
		{"alpha=0 beta=1 keeps", 2, 2, 3, 0, 1, []float32{1, 2, 3, 4}, []float32{1, 2, 3, 4}},
		{"alpha=0 beta=0 zeroes", 2, 2, 3, 0, 0, []float32{nan, 1, 2, nan}, []float32{0, 0, 0, 0}},
		{"m=0", 0, 2, 3, 1, 0, nil, nil},
		{"n=0", 2, 0, 3, 1, 0, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := make([]float32, max(tc.m*tc.k, 1))
			b := make([]float32, max(tc.k*tc.n, 1))
			Sgemm(false, false, tc.m, tc.n, tc.k, tc.alpha, a, max(tc.k, 1), b, max(tc.n, 1), tc.beta, tc.c, max(tc.n, 1))
			for i := range tc.want {
				if tc.c[i] != tc.want[i] {
					t.Fatalf("C = %v, want %v", tc.c, tc.want)
				}
			}
		})
	}
}

func TestSgemmPanicsOnBadArguments(t *testing.T) {
	tests := []struct {
		name string
		f    func()
	}{
		{"negative m", func() { Sgemm(false, false, -1, 1, 1, 1, nil, 1, nil, 1, 0, nil, 1) }},
		{"short A", func() {
			Sgemm(false, false, 2, 2, 2, 1, make([]float32, 3), 2, make([]float32, 4), 2, 0, make([]float32, 4), 2)
		}},
		{"short C", func() {
			Sgemm(false, false, 2, 2, 2, 1, make([]float32, 4), 2, make([]float32, 4), 2, 0, make([]float32, 3), 2)
		}},
		{"lda too small", func() {
			Sgemm(true, false, 3, 2, 2, 1, make([]float32, 6), 2, make([]float32, 4), 2, 0, make([]float32, 6), 2)
		}},
		{"ldb too small", func() {
			Sgemm(false, true, 2, 2, 3, 1, make([]float32, 6), 3, make([]float32, 6), 2, 0, make([]float32, 4), 2)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			tc.f()
		})
	}
}

// TestSgemmConcurrentCalls checks that simultaneous calls (each with its own
// pooled buffers) do not interfere; run it with -race.
func TestSgemmConcurrentCalls(t *testing.T) {
	prev := parallel.SetThreads(2)
	defer parallel.SetThreads(prev)
	rng := rand.New(rand.NewPCG(5, 0))
	var ps []*problem
	for i := 0; i < 6; i++ {
		ps = append(ps, newProblem(rng, i&1 != 0, i&2 != 0, 40+i*7, 90-i*5, 150+i, 2, 1, 0.5))
	}
	want := make([][]float32, len(ps))
	for i, p := range ps {
		want[i] = append([]float32(nil), p.c...)
		ref(p.transA, p.transB, p.m, p.n, p.k, p.alpha, p.a, p.lda, p.b, p.ldb, p.beta, want[i], p.ldc)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(ps))
	for i, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for rep := 0; rep < 5; rep++ {
				got := append([]float32(nil), p.c...)
				Sgemm(p.transA, p.transB, p.m, p.n, p.k, p.alpha, p.a, p.lda, p.b, p.ldb, p.beta, got, p.ldc)
				for j := range got {
					if d := math.Abs(float64(got[j] - want[i][j])); d > 1e-3 {
						errs[i] = fmt.Errorf("problem %d rep %d: C[%d] = %v, want %v", i, rep, j, got[j], want[i][j])
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestSgemmDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items on purpose under -race")
	}
	const n = 256
	rng := rand.New(rand.NewPCG(6, 0))
	a, b, c := randSlice(rng, n*n), randSlice(rng, n*n), make([]float32, n*n)
	for _, c2 := range configs() {
		t.Run(c2.name, func(t *testing.T) {
			with(c2, func() {
				for _, tr := range []int{0, 3} {
					f := func() { Sgemm(tr&1 != 0, tr&2 != 0, n, n, n, 1, a, n, b, n, 0, c, n) }
					f() // warm up: pool entry, packing buffers, worker pool
					if allocs := testing.AllocsPerRun(10, f); allocs != 0 {
						t.Fatalf("trans=%d: %v allocs per %d^3 Sgemm, want 0", tr, allocs, n)
					}
				}
			})
		})
	}
}

// TestSgemmPrepackOneThread covers the A^T products with n <= m above the
// threading threshold, which take the prepacked driver on one thread too.
func TestSgemmPrepackOneThread(t *testing.T) {
	if !HasAsmKernel() {
		t.Skip("the prepacked driver needs the assembly kernel")
	}
	shapes := [][3]int{{300, 100, 200}, {257, 250, 131}, {96, 96, 600}}
	with(config{"asm/threads=1", false, 1, ""}, func() {
		rng := rand.New(rand.NewPCG(6, 0))
		for i, sh := range shapes {
			if 2*sh[0]*sh[1]*sh[2] < parallelFlops {
				t.Fatalf("shape %v is below the threading threshold", sh)
			}
			for _, transB := range []bool{false, true} {
				s := scalars[(i+1)%len(scalars)]
				newProblem(rng, true, transB, sh[0], sh[1], sh[2], 3, s.alpha, s.beta).check(t, "asm/threads=1")
			}
		}
	})
}

// TestSgemmPrepackSliced runs products that take the sliced prepacked
// path (depth slices, column slices, both: checked) against the
// reference, with every transpose and both beta = 0 and beta != 0, into a
// plain C and into column blocks that the slices cut across.
func TestSgemmPrepackSliced(t *testing.T) {
	if !HasAsmKernel() {
		t.Skip("the prepacked driver needs the assembly kernel")
	}
	with(config{"sliced", false, 2, "sliced"}, func() {
		withBlocks(12, 8, 32, 18, func() {
			rng := rand.New(rand.NewPCG(6, 0))
			var kinds [4]int // column slices, depth slices, both
			for i, sh := range []struct{ m, n, k int }{
				{37, 53, 29}, {20, 30, 64}, {12, 16, 141}, {20, 300, 20}, {20, 300, 100}, {9, 400, 9}, {40, 16, 200},
			} {
				d := &driver{m: sh.m, n: sh.n, k: sh.k, asm: true, kcMax: blockKC}
				ns, kc := d.prepackSlices(2)
				if ns == 0 {
					t.Fatalf("%v does not take the sliced path", sh)
				}
				kind := 0
				if ns < sh.n {
					kind |= 1
				}
				if kc < sh.k {
					kind |= 2
				}
				kinds[kind]++
				for tr := 0; tr < 4; tr++ {
					s := scalars[(i+tr)%len(scalars)]
					p := newProblem(rng, tr&1 != 0, tr&2 != 0, sh.m, sh.n, sh.k, 3, s.alpha, s.beta)
					p.check(t, "sliced")
					// The same product into column blocks of 7.
					const blk = 7
					nb := (sh.n + blk - 1) / blk
					stride := (sh.m-1)*blk + blk + 2
					cb := make([]float32, (nb-1)*stride+sh.m*blk)
					for q := 0; q < nb; q++ {
						for r := 0; r < sh.m; r++ {
							for j := q * blk; j < min(sh.n, (q+1)*blk); j++ {
								cb[q*stride+r*blk+j-q*blk] = p.c[r*p.ldc+j]
							}
						}
					}
					want := append([]float32(nil), p.c...)
					ref(p.transA, p.transB, sh.m, sh.n, sh.k, p.alpha, p.a, p.lda, p.b, p.ldb, p.beta, want, p.ldc)
					SgemmBlockedC(p.transA, p.transB, sh.m, sh.n, sh.k, p.alpha, p.a, p.lda, p.b, p.ldb, p.beta, cb, blk, blk, stride)
					for q := 0; q < nb; q++ {
						for r := 0; r < sh.m; r++ {
							for j := q * blk; j < min(sh.n, (q+1)*blk); j++ {
								g, w := cb[q*stride+r*blk+j-q*blk], want[r*p.ldc+j]
								if !(math.Abs(float64(g-w)) <= 1e-4*(1+math.Abs(float64(w)))) {
									t.Fatalf("%s blocked: C[%d][%d] = %v, want %v", p.shape(), r, j, g, w)
								}
							}
						}
					}
				}
			}
			if kinds[1] == 0 || kinds[2] == 0 || kinds[3] == 0 {
				t.Fatalf("column-only, depth-only and combined slicing ran %d, %d and %d times: each must be tested", kinds[1], kinds[2], kinds[3])
			}
		})
	})
}
