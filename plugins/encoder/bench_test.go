package encoder_test

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/sslrun/sslrun/core/autodiff"
	"github.com/sslrun/sslrun/core/nn"
	"github.com/sslrun/sslrun/core/optim"
	"github.com/sslrun/sslrun/core/plugin"
	"github.com/sslrun/sslrun/core/tensor"
	"github.com/sslrun/sslrun/core/train"
	"github.com/sslrun/sslrun/internal/tensortest"
	"github.com/sslrun/sslrun/internal/testenv"
	"github.com/sslrun/sslrun/plugins/simsiam"
)

// The W1 SimSiam training step (mlp-mnist, batch 512, SGD momentum 0.9,
// weight decay 5e-4, fixed predictor lr) two ways:
//
//   - in-process: core/train.Step (model, loss and optimizer on one tape);
//   - plugins: the encoder plugin and the SimSiam loss (through lossdk) as
//     two subprocesses, the host moving tensors through the shared-memory
//     arenas: x1, x2 in; z, p out (copied into the host arena for the loss);
//     gradients on p (and none on z: stop-gradient) back to the encoder
//     with the optimizer step (plugin.BackwardStep). Three RPCs per step.
//
// Run with
//
//	go test -run '^$' -bench 'W1Step' -benchtime 20x ./plugins/encoder/
const (
	w1Batch = 512
	w1LR    = 0.06
)

func w1EncoderSpec() plugin.EncoderSpec {
	return plugin.EncoderSpec{InputShape: []int{784}, Target: plugin.TargetStopGrad, Options: map[string]string{
		"workload": "mlp-mnist", "seed": "1", "momentum": "0.9", "weight_decay": "5e-4", "predictor_lr": "0.06"}}
}

func w1InProcess(b *testing.B) *train.Step {
	ms, err := nn.Workload("mlp-mnist")
	if err != nil {
		b.Fatal(err)
	}
	m, err := nn.Build(ms, rand.New(rand.NewPCG(1, 0x6d6f64656c)))
	if err != nil {
		b.Fatal(err)
	}
	s, err := train.NewStep(train.Config{Model: m,
		Loss: func(tp *autodiff.Tape, o *train.Outputs) (*autodiff.Var, error) {
			return simsiam.Loss(tp, o.Z1, o.Z2, o.P1, o.P2, simsiam.Default())
		},
		Optimizer: optim.SGD, Base: optim.Group{Momentum: 0.9, WeightDecay: 5e-4}, PredictorLR: 0.06})
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// w1Plugins starts the encoder and the loss; timed selects the fixtures
// that report their own compute time.
func w1Plugins(b *testing.B, mode string, timed bool) *pipe {
	h := newHost(b)
	encName, lossName := "encoder", "simsiam-sdk"
	if timed {
		encName, lossName = "encoder-timed", "simsiam-timed"
	}
	enc := launch(b, h, encName, mode)
	if err := enc.Encoder().Build(context.Background(), w1EncoderSpec()); err != nil {
		b.Fatal(err)
	}
	return newPipe(h, enc, launch(b, h, lossName, mode), []string{"z1", "z2", "p1", "p2"})
}

func w1Views() (*tensor.T, *tensor.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	return tensortest.Randn(rng, w1Batch, 784), tensortest.Randn(rng, w1Batch, 784)
}

// BenchmarkW1Step times each way on its own (allocations included).
func BenchmarkW1Step(b *testing.B) {
	ctx := context.Background()
	x1, x2 := w1Views()
	b.Run("in-process", func(b *testing.B) {
		s := w1InProcess(b)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.Run(x1, x2, w1LR, 0); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, mode := range []string{"plugins-in-process", "plugins-subprocess"} {
		b.Run(mode, func(b *testing.B) {
			p := w1Plugins(b, mode[len("plugins-"):], false)
			b.ReportAllocs()
			var step int64
			for b.Loop() {
				if _, err := p.step(ctx, step, x1, x2, w1LR, 0); err != nil {
					b.Fatal(err)
				}
				step++
			}
		})
	}
}

// BenchmarkW1StepInterleaved alternates one in-process core/train step (A),
// one step with both plugins in process (B: the SDK and host paths without
// processes) and one with both as subprocesses (C), b.N times (A B C A B C
// ...), so that all see the same machine load, and reports the median of
// each and the overheads over A in percent: of the medians, and the median
// of the per-triple differences, which is less sensitive to the load
// changing between triples. Each timed step follows an untimed step of its
// own way, as in a run (see BenchmarkEngineStepInterleaved in core/runner).
func BenchmarkW1StepInterleaved(b *testing.B) {
	ctx := context.Background()
	x1, x2 := w1Views()
	s := w1InProcess(b)
	pb := w1Plugins(b, "in-process", true)
	pc := w1Plugins(b, "subprocess", true)
	for i := 0; i < 3; i++ { // warm up tapes, arenas and the optimizer state
		if _, err := s.Run(x1, x2, w1LR, 0); err != nil {
			b.Fatal(err)
		}
		for _, p := range []*pipe{pb, pc} {
			if _, err := p.step(ctx, int64(i), x1, x2, w1LR, 0); err != nil {
				b.Fatal(err)
			}
		}
	}
	var ta, tb, tc, tt []float64
	var calls [3][]float64        // C's transport per call
	var compB, compC [3][]float64 // B's and C's compute per call
	var ca, cb, cc time.Duration  // CPU time of A, B, and of C in all three processes
	pids := []int{pc.enc.Pid(), pc.loss.Pid()}
	b.ResetTimer()
	runA := func() {
		if _, err := s.Run(x1, x2, w1LR, 0); err != nil {
			b.Fatal(err)
		}
	}
	run := func(p *pipe, step int64) {
		if _, err := p.step(ctx, step, x1, x2, w1LR, 0); err != nil {
			b.Fatal(err)
		}
	}
	for i := 0; i < b.N; i++ {
		step := int64(2*i + 3)
		runA()
		c0, t0 := testenv.ProcessCPU(), time.Now()
		runA()
		t1, c1 := time.Now(), testenv.ProcessCPU()
		run(pb, step)
		c1b, t1b := testenv.ProcessCPU(), time.Now()
		run(pb, step+1)
		t2b, c2b := time.Now(), testenv.ProcessCPU()
		run(pc, step)
		c2, k2, t2 := testenv.ProcessCPU(), testenv.ProcessesCPU(pids), time.Now()
		run(pc, step+1)
		t3, k3, c3 := time.Now(), testenv.ProcessesCPU(pids), testenv.ProcessCPU()
		var sum time.Duration
		for j := range calls {
			compB[j] = append(compB[j], float64(pb.compute[j])/1e6)
			compC[j] = append(compC[j], float64(pc.compute[j])/1e6)
			d := pc.wall[j] - pc.compute[j]
			calls[j] = append(calls[j], float64(d)/1e6)
			sum += d
		}
		tt = append(tt, float64(sum)/1e6)
		cb += c2b - c1b
		ta = append(ta, float64(t1.Sub(t0))/1e6)
		tb = append(tb, float64(t2b.Sub(t1b))/1e6)
		tc = append(tc, float64(t3.Sub(t2))/1e6)
		ca += c1 - c0
		cc += c3 - c2 + k3 - k2
	}
	b.StopTimer()
	// CPU time summed over the run (the children's is counted in clock
	// ticks): what the step costs the machine, independent of waiting for
	// a core.
	cpuA, cpuB, cpuC := ca.Seconds()*1e3/float64(b.N), cb.Seconds()*1e3/float64(b.N), cc.Seconds()*1e3/float64(b.N)
	b.ReportMetric(cpuA, "A-cpu-ms/step")
	b.ReportMetric(cpuB, "B-cpu-ms/step")
	b.ReportMetric(cpuC, "C-cpu-ms/step")
	b.ReportMetric(100*(cpuB-cpuA)/cpuA, "B-cpu-overhead-%")
	b.ReportMetric(100*(cpuC-cpuA)/cpuA, "C-cpu-overhead-%")
	ma := testenv.Median(ta)
	// C's transport: the host's wall time of the three calls minus the time
	// the plugins spent inside them (RPCs, staging copies into the host
	// arena, waiting to be scheduled).
	b.ReportMetric(testenv.Median(tt), "C-transport-ms/step")
	b.ReportMetric(100*testenv.Median(tt)/ma, "C-transport-%")
	for j, name := range []string{"forward", "loss", "backward+step"} {
		b.ReportMetric(testenv.Median(calls[j]), "C-"+name+"-transport-ms")
		// The plugins' own compute in each mode: the same code, so a
		// difference is what running in its own process costs it.
		b.ReportMetric(testenv.Median(compB[j]), "B-"+name+"-compute-ms")
		b.ReportMetric(testenv.Median(compC[j]), "C-"+name+"-compute-ms")
	}
	b.ReportMetric(ma, "A-inproc-ms/step")
	for _, r := range []struct {
		name string
		t    []float64
	}{{"B-plugins-inproc", tb}, {"C-plugins-subproc", tc}} {
		d := make([]float64, len(ta))
		for i := range ta {
			d[i] = r.t[i] - ta[i]
		}
		b.ReportMetric(testenv.Median(r.t), r.name+"-ms/step")
		b.ReportMetric(100*(testenv.Median(r.t)-ma)/ma, r.name+"-overhead-%")
		b.ReportMetric(100*testenv.Median(d)/ma, r.name+"-pair-overhead-%")
	}
}
