package decompose

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/sslrun/sslrun/core/parallel"
	"github.com/sslrun/sslrun/internal/tensortest"
)

// Benchmarks at the analyzer's working sizes: N=512 rows, d=512 (d x d
// Gram path) and d=2048 (N x N Gram path).
func BenchmarkEmbeddings(b *testing.B) {
	for _, c := range []struct {
		n, d, threads int
		skip          bool
	}{
		{512, 512, 1, false}, {512, 512, 2, false},
		{512, 2048, 1, false}, {512, 2048, 2, false},
		{512, 2048, 2, true},
	} {
		name := fmt.Sprintf("%dx%d/threads=%d", c.n, c.d, c.threads)
		if c.skip {
			name += "/skip-spectrum"
		}
		b.Run(name, func(b *testing.B) {
			defer parallel.SetThreads(parallel.SetThreads(c.threads))
			x := tensortest.Randn(rand.New(rand.NewPCG(1, 1)), c.n, c.d)
			an := New()
			opts := Options{SkipSpectrum: c.skip}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := an.Embeddings(x, opts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkGradient(b *testing.B) {
	rng := rand.New(rand.NewPCG(2, 2))
	z, g := tensortest.Randn(rng, 512, 2048), tensortest.Randn(rng, 512, 2048)
	an := New()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := an.Gradient(z, g, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkExtraGradient(b *testing.B) {
	rng := rand.New(rand.NewPCG(3, 3))
	z, p := tensortest.Randn(rng, 512, 2048), tensortest.Randn(rng, 512, 2048)
	an := New()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := an.ExtraGradient(z, p, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
