package nnencoder

import (
	"context"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/metrics"
	"strings"
	"testing"

	"github.com/sslrun/sslrun/core/parallel"
	"github.com/sslrun/sslrun/core/plugin"
	"github.com/sslrun/sslrun/core/tensor"
	"github.com/sslrun/sslrun/internal/tensortest"
	"github.com/sslrun/sslrun/internal/testenv"
)

// w2BYOLHeapMB bounds the live heap of the W2 BYOL encoder (ConvNet
// 64-128-256-512 on 32x32x3, batch 256, EMA target, SGD with momentum)
// after warm steps. What it holds: both views' activations kept for
// backward (~503 MB: per view 2 x (67 + 34 + 17 + 8) MB, a convolution's
// output and its BN-ReLU output per layer), the gradient pool (~101 MB:
// the two largest gradients alive at once, layer 1's and layer 2's), the
// parameters, their gradients and momentum and the target's (~35 MB), the
// convolution workspace and the inputs. Before the gradient plan, the
// in-place batch-norm backward and the target pass on the step's tape it
// was ~1020 MB; PyTorch's whole process for this step peaks at ~996 MB.
const w2BYOLHeapMB = 760

// TestW2BYOLMemory runs W2 BYOL training steps in process and checks the
// encoder's live heap against w2BYOLHeapMB, logging it with the process's
// resident memory phase by phase (forward, backward, optimizer step).
func TestW2BYOLMemory(t *testing.T) {
	testenv.Long(t)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	defer parallel.SetThreads(parallel.Threads())
	parallel.SetThreads(2)
	ctx := context.Background()
	e := New()
	spec := plugin.EncoderSpec{InputShape: []int{3, 32, 32}, Target: plugin.TargetEMA, Options: map[string]string{
		"workload": "convnet-cifar", "optimizer": "sgd", "momentum": "0.9", "weight_decay": "5e-4"}}
	if err := e.Build(ctx, spec); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	in := map[string]*tensor.T{"x1": tensortest.Randn(rng, 256, 3, 32, 32), "x2": tensortest.Randn(rng, 256, 3, 32, 32)}
	heap := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	mb := func() float64 {
		metrics.Read(heap)
		return float64(heap[0].Value.Uint64()) / 1e6
	}
	report := func(step int, phase string) {
		t.Logf("step %d %-8s live heap %4.0f MB, tape %4.0f MB, %s", step, phase, mb(), float64(e.tp.Bytes())/1e6, vmHWM())
	}
	grads := map[string]*tensor.T{}
	for step := 0; step < 3; step++ {
		out, err := e.Forward(ctx, plugin.Input{Tensors: in})
		if err != nil {
			t.Fatal(err)
		}
		report(step, "forward")
		for _, n := range []string{"z1", "z2", "p1", "p2"} {
			if grads[n] == nil {
				grads[n] = tensortest.Randn(rng, out.Tensors[n].Shape...)
			}
		}
		if _, err := e.Backward(ctx, plugin.Input{Tensors: grads}); err != nil {
			t.Fatal(err)
		}
		report(step, "backward")
		if _, err := e.Step(ctx, plugin.Optim{LR: 0.05, Scalars: map[string]float64{"tau": 0.99}}); err != nil {
			t.Fatal(err)
		}
		report(step, "step")
	}
	runtime.GC()
	if got := mb(); got > w2BYOLHeapMB {
		t.Errorf("live heap after warm steps: %.0f MB, want at most %d MB", got, w2BYOLHeapMB)
	}
}

// vmHWM returns the process's peak resident set size as /proc reports it
// (Linux), for the log.
func vmHWM() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "peak RSS unknown"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			return "peak RSS " + strings.TrimSpace(v)
		}
	}
	return "peak RSS unknown"
}
