package data

import (
	"testing"
	"time"

	"github.com/sslrun/sslrun/core/data/augment"
	"github.com/sslrun/sslrun/internal/testenv"
)

// benchLoader drains batches from l for b.N batches (crossing epochs as
// needed) and reports augmented samples per second (each sample yields one
// image per view), views per second, and samples per CPU-second of the
// process (the steadier figure on a shared machine: with W otherwise idle
// cores the wall rate approaches W times it).
func benchLoader(b *testing.B, l *Loader, views int) {
	b.ReportAllocs()
	epoch := 0
	it, err := l.Epoch(epoch, 0)
	if err != nil {
		b.Fatal(err)
	}
	// Warm the ring so buffer allocation is not measured.
	if bt, ok := it.Next(); ok {
		it.Release(bt)
	}
	samples := 0
	b.ResetTimer()
	start, cpu0 := time.Now(), testenv.ProcessCPU().Seconds()
	for i := 0; i < b.N; i++ {
		bt, ok := it.Next()
		if !ok {
			it.Close()
			epoch++
			if it, err = l.Epoch(epoch, 0); err != nil {
				b.Fatal(err)
			}
			bt, _ = it.Next()
		}
		samples += len(bt.Labels)
		it.Release(bt)
	}
	el, cpu := time.Since(start).Seconds(), testenv.ProcessCPU().Seconds()-cpu0
	b.StopTimer()
	it.Close()
	b.ReportMetric(float64(samples)/el, "images/s")
	b.ReportMetric(float64(samples*views)/el, "views/s")
	if cpu > 0 {
		b.ReportMetric(float64(samples)/cpu, "images/cpu-s")
	}
}

// BenchmarkLoaderMNIST: real MNIST train (synthetic 60000x1x28x28 when the
// files are absent), two MNISTView(28) views, batch 512, 2 workers.
func BenchmarkLoaderMNIST(b *testing.B) {
	var src Source
	if d, err := LoadMNIST("", Train); err == nil {
		src = d
	} else {
		b.Logf("MNIST absent (%v); synthetic data", err)
		src = synthetic(60000, 1, 28, 28, 10)
	}
	l, err := NewLoader(Config{Source: src, Views: []augment.Pipeline{augment.MNISTView(28), augment.MNISTView(28)},
		BatchSize: 512, Shuffle: true, DropLast: true, Seed: 1, Workers: 2})
	if err != nil {
		b.Fatal(err)
	}
	benchLoader(b, l, 2)
}

// BenchmarkLoaderCIFAR: CIFAR-shaped synthetic data (10000x3x32x32), two
// SimSiam/SimCLR views (crop 0.2-1, flip, jitter p=0.8, grayscale p=0.2,
// normalize), batch 256, 2 workers.
func BenchmarkLoaderCIFAR(b *testing.B) {
	src := synthetic(10000, 3, 32, 32, 10)
	v := augment.SimCLRView(32, augment.CIFAR10Mean, augment.CIFAR10Std)
	l, err := NewLoader(Config{Source: src, Views: []augment.Pipeline{v, v},
		BatchSize: 256, Shuffle: true, DropLast: true, Seed: 1, Workers: 2})
	if err != nil {
		b.Fatal(err)
	}
	benchLoader(b, l, 2)
}

// BenchmarkLoaderBYOLCIFAR: as BenchmarkLoaderCIFAR with BYOL's asymmetric
// views (blur kernel 3 on 32x32, solarize on view two).
func BenchmarkLoaderBYOLCIFAR(b *testing.B) {
	src := synthetic(10000, 3, 32, 32, 10)
	v1, v2 := augment.BYOLViews(32, augment.CIFAR10Mean, augment.CIFAR10Std)
	l, err := NewLoader(Config{Source: src, Views: []augment.Pipeline{v1, v2},
		BatchSize: 256, Shuffle: true, DropLast: true, Seed: 1, Workers: 2})
	if err != nil {
		b.Fatal(err)
	}
	benchLoader(b, l, 2)
}
