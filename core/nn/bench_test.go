package nn

import (
	"fmt"
	"testing"

	"github.com/sslrun/sslrun/core/parallel"
	"github.com/sslrun/sslrun/internal/testenv"
)

// benchSimSiam times one SimSiam step of a torch_baseline.py workload
// without the optimizer: zero the gradients, forward both views (batch
// statistics per view), the symmetric negative-cosine loss with
// stop-gradient, backward. torch_baseline.py's step also runs SGD, a few
// percent of a step. img/s = batch / step time (each image is 2 views);
// cpu-img/s (1 thread only) = batch / process CPU time per step, which is
// insensitive to other processes competing for the cores.
func benchSimSiam(b *testing.B, workload string, batch int) {
	spec, err := Workload(workload)
	if err != nil {
		b.Fatal(err)
	}
	in, err := WorkloadInputShape(workload)
	if err != nil {
		b.Fatal(err)
	}
	for _, threads := range []int{1, 2} {
		b.Run(fmt.Sprintf("threads=%d", threads), func(b *testing.B) {
			prev := parallel.SetThreads(threads)
			defer parallel.SetThreads(prev)
			s := newSimsiamStep(b, spec, in, batch)
			vars := Vars(s.m.Backbone)
			vars = append(vars, Vars(s.m.Projector)...)
			vars = append(vars, Vars(s.m.Predictor)...)
			s.run(b) // warm-up: sizes the tape's arena
			s.run(b)
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := testenv.ProcessCPU()
			for i := 0; i < b.N; i++ {
				for _, v := range vars {
					v.Grad.Zero()
				}
				s.run(b)
			}
			cpu := testenv.ProcessCPU() - cpu0
			b.ReportMetric(float64(batch)*float64(b.N)/b.Elapsed().Seconds(), "img/s")
			if threads == 1 && cpu > 0 {
				// With one worker, batch / CPU time estimates the
				// uncontended rate on a shared machine (as the torch
				// baseline's "CPU-time img/s" column does).
				b.ReportMetric(float64(batch)*float64(b.N)/cpu.Seconds(), "cpu-img/s")
			}
		})
	}
}

// BenchmarkSimSiamW1 is W1 "mlp-mnist", batch 512.
func BenchmarkSimSiamW1(b *testing.B) { benchSimSiam(b, "mlp-mnist", 512) }

// BenchmarkSimSiamW2 is W2 "convnet-cifar", batch 256.
func BenchmarkSimSiamW2(b *testing.B) { benchSimSiam(b, "convnet-cifar", 256) }

// BenchmarkSimSiamW3 is W3 "resnet18-cifar", batch 128. One step takes
// seconds (PyTorch: ~10 s on this machine), so run it with -benchtime=1x:
//
//	go test ./core/nn -run '^$' -bench SimSiamW3 -benchtime=1x
func BenchmarkSimSiamW3(b *testing.B) { benchSimSiam(b, "resnet18-cifar", 128) }
