package gemm

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// BenchmarkPack measures the packing routines alone, in ns per packed
// element, for the four layouts.
func BenchmarkPack(b *testing.B) {
	const m, k = 192, 256
	rng := rand.New(rand.NewPCG(9, 0))
	src := randSlice(rng, 1024*1024)
	for _, tc := range []struct {
		name  string
		isA   bool
		trans bool
	}{{"A-N", true, false}, {"A-T", true, true}, {"B-N", false, false}, {"B-T", false, true}} {
		for _, asm := range []bool{false, true} {
			if asm && !hasAsm {
				continue
			}
			b.Run(fmt.Sprintf("%s/asm=%v", tc.name, asm), func(b *testing.B) {
				d := &driver{a: src, b: src, lda: 1024, ldb: 1024, alpha: 1, transA: tc.trans, transB: tc.trans, asm: asm}
				d.mb, d.nb, d.kb = m, m, k
				d.panA, d.panB, d.tilesM = m/mr, m/nr, 1
				d.bufA = make([]float32, m*k)
				d.bufB = make([]float32, m*k)
				d.setUnits()
				for b.Loop() {
					lo, hi := 0, d.unitA
					if !tc.isA {
						lo, hi = d.unitA, d.units
					}
					for u := lo; u < hi; u++ {
						d.packUnit(u)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(m*k), "ns/elem")
			})
		}
	}
}
