package runner

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/sslrun/sslrun/core/nn"
	"github.com/sslrun/sslrun/core/pipeline"
	"github.com/sslrun/sslrun/core/plugin"
	"github.com/sslrun/sslrun/core/tensor"
	"github.com/sslrun/sslrun/internal/testenv"
)

// The plugin overhead of a training step, measured through the runner's
// engine (the code path of `sslrun run`): one W1 SimSiam step (core/nn
// Workload "mlp-mnist", batch 512, random-normal views, SGD momentum 0.9,
// weight decay 5e-4, fixed predictor lr) with the encoder and the loss in
// process (the same plugin interfaces, no RPC) and as subprocesses (this
// test binary re-executed, as sslrun re-executes itself). The loss is the
// test binary's "simsiam" (TestMain): SimSiam's symmetric negative cosine
// with stop-gradient, through core/plugin/lossdk like plugins/simsiam.
//
// allocs/op counts this process only: in process that includes the
// plugins' own allocations, as subprocesses only the host side.
//
// -count repeats each sub-benchmark back to back; to run the two modes
// alternately, so that both see the same machine load, repeat the binary
// and compare the medians:
//
//	go test -c -o /tmp/runner.test ./core/runner/ && cd core/runner &&
//	for i in 1 2 3 4 5; do /tmp/runner.test -test.run '^$' -test.bench '^BenchmarkEngineStep$' -test.benchtime 20x -test.benchmem; done
//
// BenchmarkEngineStepInterleaved alternates the two step by step and
// reports the overhead directly.

const (
	w1Batch = 512
	w1LR    = 0.06
)

// w1Config is the W1 SimSiam run as the engine sees it.
func w1Config(b *testing.B) *pipeline.Config {
	ms, err := nn.Workload("mlp-mnist")
	if err != nil {
		b.Fatal(err)
	}
	return &pipeline.Config{
		Seed:      1,
		BatchSize: w1Batch,
		Encoder:   pipeline.Encoder{Backbone: ms.Backbone, Projector: ms.Projector, Predictor: ms.Predictor},
		Loss:      pipeline.Plugin{Name: "simsiam"},
		Optimizer: pipeline.Optimizer{Name: "sgd", BaseLR: w1LR, LR: w1LR, Momentum: 0.9, WeightDecay: 5e-4, PredictorFixedLR: true},
	}
}

// w1Engine starts the W1 engine in the given mode and runs warm-up steps
// (tapes, arenas and optimizer state reach their steady size).
func w1Engine(b *testing.B, inProcess bool, x1, x2 *tensor.T) *engine {
	b.Helper()
	env := &pluginEnv{inProcess: inProcess, log: zerolog.Nop(), lock: &plugin.Lock{Plugins: map[string]plugin.LockEntry{}}}
	e, err := startEngine(context.Background(), env, w1Config(b), []int{784}, false)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := e.close(); err != nil {
			b.Errorf("close: %v", err)
		}
	})
	for i := range 3 {
		if _, _, err := e.step(context.Background(), plugin.Step{Step: int64(i), Train: true}, x1, x2, w1LR, 0, nil); err != nil {
			b.Fatal(err)
		}
	}
	return e
}

func w1Views() (*tensor.T, *tensor.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	x1, x2 := tensor.New(w1Batch, 784), tensor.New(w1Batch, 784)
	for _, x := range []*tensor.T{x1, x2} {
		for i := range x.Data {
			x.Data[i] = float32(rng.NormFloat64())
		}
	}
	return x1, x2
}

// BenchmarkEngineStep times one engine step per mode.
func BenchmarkEngineStep(b *testing.B) {
	b.Run("W1", func(b *testing.B) {
		x1, x2 := w1Views()
		for _, mode := range []string{"inprocess", "subprocess"} {
			b.Run(mode, func(b *testing.B) {
				e := w1Engine(b, mode == "inprocess", x1, x2)
				ctx := context.Background()
				var obs []observation
				step := int64(3)
				b.ReportAllocs()
				for b.Loop() {
					var err error
					if _, obs, err = e.step(ctx, plugin.Step{Step: step, Train: true}, x1, x2, w1LR, 0, obs); err != nil {
						b.Fatal(err)
					}
					step++
				}
			})
		}
	})
}

// BenchmarkEngineStepInterleaved alternates the two modes, in-process (A)
// and subprocess (B), b.N times each, so that both see the same load, and
// reports the median step time of each, the overhead of B over A in
// percent of A's median, and the median of the per-pair differences (less
// sensitive to the load changing between pairs). Each timed step follows an
// untimed step of its own mode, as every step of a run follows another:
// timed right after the other mode's step, B paid for waking plugin
// processes that had been idle for a whole step (their threads asleep,
// their caches taken by A), 0.5 ms more per step than in a run. On a loaded
// machine wall time mostly measures waiting for a core, so it also reports
// the CPU time per timed step (user+system, of this process and, for B, of
// the plugin processes) and B's CPU overhead: what the subprocesses cost
// the machine.
func BenchmarkEngineStepInterleaved(b *testing.B) {
	b.Run("W1", func(b *testing.B) {
		x1, x2 := w1Views()
		ea, eb := w1Engine(b, true, x1, x2), w1Engine(b, false, x1, x2)
		ctx := context.Background()
		ta, tb := make([]float64, 0, b.N), make([]float64, 0, b.N)
		pids := []int{eb.encC.Pid(), eb.lossC.Pid()}
		var ca, cb time.Duration
		step := int64(3)
		b.ResetTimer()
		run := func(e *engine, st plugin.Step) {
			if _, _, err := e.step(ctx, st, x1, x2, w1LR, 0, nil); err != nil {
				b.Fatal(err)
			}
		}
		for range b.N {
			st := plugin.Step{Step: step, Train: true}
			run(ea, st)
			st.Step++
			c0, t0 := testenv.ProcessCPU(), time.Now()
			run(ea, st)
			t1, c1 := time.Now(), testenv.ProcessCPU()
			st.Step--
			run(eb, st)
			st.Step++
			c2, k2, t2 := testenv.ProcessCPU(), testenv.ProcessesCPU(pids), time.Now()
			run(eb, st)
			t3, c3, k3 := time.Now(), testenv.ProcessCPU(), testenv.ProcessesCPU(pids)
			ta, tb = append(ta, float64(t1.Sub(t0))/1e6), append(tb, float64(t3.Sub(t2))/1e6)
			ca += c1 - c0
			cb += c3 - c2 + k3 - k2
			step += 2
		}
		b.StopTimer()
		cpuA, cpuB := ca.Seconds()*1e3/float64(b.N), cb.Seconds()*1e3/float64(b.N)
		b.ReportMetric(cpuA, "inprocess-cpu-ms/step")
		b.ReportMetric(cpuB, "subprocess-cpu-ms/step")
		b.ReportMetric(100*(cpuB-cpuA)/cpuA, "cpu-overhead-%")
		ma, mb := testenv.Median(ta), testenv.Median(tb)
		d := make([]float64, len(ta))
		for i := range ta {
			d[i] = tb[i] - ta[i]
		}
		b.ReportMetric(ma, "inprocess-ms/step")
		b.ReportMetric(mb, "subprocess-ms/step")
		b.ReportMetric(100*(mb-ma)/ma, "overhead-%")
		b.ReportMetric(100*testenv.Median(d)/ma, "pair-overhead-%")
	})
}
