//go:build openblas && cgo

package openblas

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/sslrun/sslrun/core/gemm"
)

func randSlice(rng *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = rng.Float32()*2 - 1
	}
	return s
}

// TestMatchesGemm checks the wrapper itself, so that benchmarks against it
// compare equal work.
func TestMatchesGemm(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 0))
	const m, n, k = 37, 45, 29
	for tr := 0; tr < 4; tr++ {
		tA, tB := tr&1 != 0, tr&2 != 0
		lda, ldb, ldc := k+1, n+2, n+3
		if tA {
			lda = m + 1
		}
		if tB {
			ldb = k + 2
		}
		a, b := randSlice(rng, max(m, k)*lda), randSlice(rng, max(n, k)*ldb)
		c := randSlice(rng, m*ldc)
		got, want := append([]float32(nil), c...), append([]float32(nil), c...)
		Sgemm(tA, tB, m, n, k, 1.5, a, lda, b, ldb, 0.5, got, ldc)
		gemm.Sgemm(tA, tB, m, n, k, 1.5, a, lda, b, ldb, 0.5, want, ldc)
		for i := range got {
			if math.Abs(float64(got[i]-want[i])) > 1e-4 {
				t.Fatalf("trans=%d: C[%d] = %v, want %v", tr, i, got[i], want[i])
			}
		}
	}
}

// BenchmarkSgemm runs square shapes through OpenBLAS on 1 and 2 threads:
//
//	go test -tags openblas -run=NONE -bench=. ./core/gemm/openblas/
func BenchmarkSgemm(b *testing.B) {
	for _, n := range []int{256, 512, 1024, 2048} {
		for _, th := range []int{1, 2} {
			b.Run(fmt.Sprintf("sq%d/t%d", n, th), func(b *testing.B) {
				SetThreads(th)
				rng := rand.New(rand.NewPCG(7, 0))
				x, y, c := randSlice(rng, n*n), randSlice(rng, n*n), make([]float32, n*n)
				Sgemm(false, false, n, n, n, 1, x, n, y, n, 0, c, n)
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					Sgemm(false, false, n, n, n, 1, x, n, y, n, 0, c, n)
				}
				b.ReportMetric(2*float64(n)*float64(n)*float64(n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}
