package eval

import (
	"fmt"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/sslrun/sslrun/core/gemm"
	"github.com/sslrun/sslrun/core/parallel"
	"github.com/sslrun/sslrun/internal/testenv"
)

// benchSets returns clustered Gaussian features of a CIFAR-like size.
func benchSets(ntrain, ntest, dim, classes int) (Set, Set) {
	rng := rand.New(rand.NewPCG(11, 12))
	centers := randomCenters(rng, classes, dim)
	return randomSet(rng, "bench/train", ntrain, dim, classes, centers, 3),
		randomSet(rng, "bench/test", ntest, dim, classes, centers, 3)
}

// BenchmarkKNN measures kNN on 60k train features of dim 512 against a
// slice of the test set and reports the similarity rate; the full 10k test
// set (614 GFLOP of similarities) runs with SSLRUN_LONG=1.
//
//	go test -run=NONE -bench=KNN -benchtime=1x ./core/eval/
func BenchmarkKNN(b *testing.B) {
	train, test := benchSets(60000, 10000, 512, 10)
	sizes := []int{1000}
	if os.Getenv(testenv.LongEnv) != "" {
		sizes = append(sizes, 10000)
	}
	for _, nt := range sizes {
		for _, th := range []int{1, 2} {
			for _, cfg := range []KNNConfig{SoloKNN(), LightlyKNN()} {
				b.Run(fmt.Sprintf("60kx%dx512/k%d/t%d", nt, cfg.K, th), func(b *testing.B) {
					defer parallel.SetThreads(parallel.SetThreads(th))
					sub := Set{Name: test.Name, X: test.X[:nt*512], Dim: 512, Labels: test.Labels[:nt]}
					b.ReportAllocs()
					for b.Loop() {
						if _, err := KNN(train, sub, cfg); err != nil {
							b.Fatal(err)
						}
					}
					sec := b.Elapsed().Seconds() / float64(b.N)
					b.ReportMetric(2*60000*float64(nt)*512/sec/1e9, "GFLOP/s")
					b.ReportMetric(sec*10000/float64(nt), "s/10k-test")
				})
			}
		}
	}
}

// BenchmarkKNNGemmOnly runs only the similarity products of
// BenchmarkKNN's 1k-test case (same blocks, no top-k, no normalization):
// the floor KNN's time is compared against, side by side.
func BenchmarkKNNGemmOnly(b *testing.B) {
	train, test := benchSets(60000, 1000, 512, 10)
	sim := make([]float32, knnRows*knnCols)
	b.ReportAllocs()
	for b.Loop() {
		for lo := 0; lo < test.N(); lo += knnRows {
			rows := min(knnRows, test.N()-lo)
			for j0 := 0; j0 < train.N(); j0 += knnCols {
				n := min(knnCols, train.N()-j0)
				gemm.Sgemm(false, true, rows, n, 512, 1, test.X[lo*512:(lo+rows)*512], 512,
					train.X[j0*512:(j0+n)*512], 512, 0, sim, knnCols)
			}
		}
	}
	sec := b.Elapsed().Seconds() / float64(b.N)
	b.ReportMetric(2*60000*1000*512/sec/1e9, "GFLOP/s")
}

// BenchmarkLinearProbe trains the default probe (batch 256) for 10 epochs
// on 60k x 512 features with 10 classes and evaluates on 10k.
//
//	go test -run=NONE -bench=LinearProbe -benchtime=1x ./core/eval/
func BenchmarkLinearProbe(b *testing.B) {
	train, test := benchSets(60000, 10000, 512, 10)
	for _, th := range []int{1, 2} {
		b.Run(fmt.Sprintf("60kx512/10ep/t%d", th), func(b *testing.B) {
			defer parallel.SetThreads(parallel.SetThreads(th))
			cfg := DefaultLinear()
			cfg.Epochs = 10
			b.ReportAllocs()
			for b.Loop() {
				if _, err := LinearProbe(train, test, cfg); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(b.Elapsed().Seconds()/float64(b.N)/10, "s/epoch")
		})
	}
}
