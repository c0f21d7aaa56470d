package gemm

import (
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/sslrun/sslrun/core/parallel"
	"github.com/sslrun/sslrun/internal/testenv"
)

// SSLRUN_GEMM_BLOCKS=mc,kc,nc overrides the cache blocking in benchmarks,
// SSLRUN_GEMM_PREPACK=items,rows,floats the item split and size limit of the
// prepacked driver (prepacked.go; floats=0 forces the phase driver),
// SSLRUN_GEMM_SHAREDB=1 makes its workers share one packed B,
// SSLRUN_SPINWAIT (a duration) sets parallel.SetSpinWait and
// SSLRUN_GEMM_PARFLOPS the threading threshold, for tuning on a new
// machine.
func init() {
	if v := os.Getenv("SSLRUN_GEMM_BLOCKS"); v != "" {
		if _, err := fmt.Sscanf(v, "%d,%d,%d", &blockMC, &blockKC, &blockNC); err != nil {
			panic(fmt.Sprintf("SSLRUN_GEMM_BLOCKS=%q: %v", v, err))
		}
	}
	if v := os.Getenv("SSLRUN_GEMM_PREPACK"); v != "" {
		if _, err := fmt.Sscanf(v, "%d,%d,%d", &prepackItemsPerThread, &prepackMinRows, &prepackMaxFloats); err != nil {
			panic(fmt.Sprintf("SSLRUN_GEMM_PREPACK=%q: %v", v, err))
		}
	}
	if v := os.Getenv("SSLRUN_SPINWAIT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			panic(fmt.Sprintf("SSLRUN_SPINWAIT=%q: %v", v, err))
		}
		parallel.SetSpinWait(d)
	}
	if os.Getenv("SSLRUN_GEMM_NOAFFINITY") == "1" {
		prepackAffinity = false
	}
	if os.Getenv("SSLRUN_GEMM_SHAREDB") == "1" {
		prepackPrivateB = false
	}
	if v := os.Getenv("SSLRUN_GEMM_PARFLOPS"); v != "" {
		if _, err := fmt.Sscanf(v, "%d", &parallelFlops); err != nil {
			panic(fmt.Sprintf("SSLRUN_GEMM_PARFLOPS=%q: %v", v, err))
		}
	}
}

// benchShape is one GEMM of the workloads, named by where it occurs.
type benchShape struct {
	name           string
	transA, transB bool
	m, n, k        int
}

// benchShapes lists square sizes and the GEMMs of one training step of W1
// and W2 (torch_baseline.py):
//
//   - W1 (MLP, batch 512), per Linear(in, out) with x [512,in], W [out,in]:
//     fwd   y  = x·W^T   (NT, m=512, n=out, k=in),
//     wgrad dW = dY^T·x  (TN, m=out, n=in, k=512),
//     dgrad dX = dY·W    (NN, m=512, n=in, k=out).
//   - W2 (convnet, batch 256), conv3x3 pad 1 as one batched im2col GEMM per
//     layer: col is [Cin*9, 256*Ho*Wo] (NCHW patches of all images side by
//     side), W is [Cout, Cin*9]:
//     fwd   Y    = W·col     (NN, m=Cout,   n=256*Ho*Wo, k=Cin*9),
//     wgrad dW   = dY·col^T  (NT, m=Cout,   n=Cin*9,     k=256*Ho*Wo),
//     dgrad dcol = W^T·dY    (TN, m=Cin*9,  n=256*Ho*Wo, k=Cout);
//     the first conv has no dgrad (its input needs no gradient).
func benchShapes() []benchShape {
	var s []benchShape
	for _, n := range []int{256, 512, 1024, 2048} {
		s = append(s, benchShape{fmt.Sprintf("sq%d", n), false, false, n, n, n})
	}
	const b1 = 512
	for _, l := range [][2]int{{784, 1024}, {1024, 1024}, {1024, 512}, {512, 512}, {512, 128}, {128, 512}} {
		in, out := l[0], l[1]
		s = append(s,
			benchShape{fmt.Sprintf("w1fwd_%dx%d", in, out), false, true, b1, out, in},
			benchShape{fmt.Sprintf("w1wgrad_%dx%d", in, out), true, false, out, in, b1},
			benchShape{fmt.Sprintf("w1dgrad_%dx%d", in, out), false, false, b1, in, out})
	}
	const b2 = 256
	for i, l := range [][3]int{{3, 64, 32}, {64, 128, 16}, {128, 256, 8}, {256, 512, 4}} {
		cin, cout, hw := l[0], l[1], l[2]
		cols := b2 * hw * hw
		s = append(s,
			benchShape{fmt.Sprintf("w2fwd_conv%d", i+1), false, false, cout, cols, cin * 9},
			benchShape{fmt.Sprintf("w2wgrad_conv%d", i+1), false, true, cout, cin * 9, cols})
		if i > 0 {
			s = append(s, benchShape{fmt.Sprintf("w2dgrad_conv%d", i+1), true, false, cin * 9, cols, cout})
		}
	}
	// W3 (CIFAR ResNet-18, batch 128): the projector and predictor layers,
	// and the 3x3 convolution of each stage as one batched im2col GEMM.
	const b3 = 128
	for _, l := range [][2]int{{512, 2048}, {2048, 2048}, {2048, 512}} {
		in, out := l[0], l[1]
		s = append(s,
			benchShape{fmt.Sprintf("w3fwd_%dx%d", in, out), false, true, b3, out, in},
			benchShape{fmt.Sprintf("w3wgrad_%dx%d", in, out), true, false, out, in, b3},
			benchShape{fmt.Sprintf("w3dgrad_%dx%d", in, out), false, false, b3, in, out})
	}
	for i, l := range [][2]int{{64, 32}, {128, 16}, {256, 8}, {512, 4}} {
		c, hw := l[0], l[1]
		s = append(s, benchShape{fmt.Sprintf("w3fwd_stage%d", i+1), false, false, c, b3 * hw * hw, c * 9})
	}
	// The conv GEMMs as core/kernel runs them: im2col over a group of
	// images at a time (Workspace.group), so n is group*Ho*Wo.
	for _, l := range []struct {
		name                   string
		cin, cout, howo, group int
	}{
		{"w2g_conv1", 3, 64, 1024, 37}, {"w2g_conv2", 64, 128, 256, 7}, {"w2g_conv3", 128, 256, 64, 16}, {"w2g_conv4", 256, 512, 16, 64},
		{"w3g_stage1", 64, 64, 1024, 1}, {"w3g_stage2", 128, 128, 256, 4}, {"w3g_stage3", 256, 256, 64, 16}, {"w3g_stage4", 512, 512, 16, 64},
	} {
		cols := l.group * l.howo
		s = append(s,
			benchShape{l.name + "_fwd", false, false, l.cout, cols, l.cin * 9},
			benchShape{l.name + "_wgrad", false, true, l.cout, l.cin * 9, cols})
		if l.name[:3] == "w2g" && l.cin > 3 {
			s = append(s, benchShape{l.name + "_dgrad", true, false, l.cin * 9, cols, l.cout})
		}
	}
	return s
}

// BenchmarkSgemm runs every shape on 1 and 2 threads with the fastest
// kernel; BenchmarkSgemmGeneric runs the square sizes with the Go kernel.
//
//	go test -run=NONE -bench=Sgemm -benchtime=10x ./core/gemm/
func BenchmarkSgemm(b *testing.B) {
	for _, sh := range benchShapes() {
		for _, th := range []int{1, 2} {
			b.Run(fmt.Sprintf("%s/t%d", sh.name, th), func(b *testing.B) { runBench(b, sh, th, false) })
		}
	}
}

// BenchmarkSgemmSmall runs small square sizes on 1 and 2 threads, to place
// the threading threshold (run with SSLRUN_GEMM_PARFLOPS=0 to see what 2
// threads give below it).
func BenchmarkSgemmSmall(b *testing.B) {
	for _, n := range []int{16, 32, 48, 64, 96, 128, 192} {
		for _, th := range []int{1, 2} {
			sh := benchShape{fmt.Sprintf("sq%d", n), false, false, n, n, n}
			b.Run(fmt.Sprintf("%s/t%d", sh.name, th), func(b *testing.B) { runBench(b, sh, th, false) })
		}
	}
}

func BenchmarkSgemmGeneric(b *testing.B) {
	for _, sh := range benchShapes()[:3] {
		b.Run(fmt.Sprintf("%s/t1", sh.name), func(b *testing.B) { runBench(b, sh, 1, true) })
	}
}

func runBench(b *testing.B, sh benchShape, threads int, generic bool) {
	defer parallel.SetThreads(parallel.SetThreads(threads))
	defer ForceGeneric(ForceGeneric(generic))
	rng := rand.New(rand.NewPCG(7, 0))
	a := randSlice(rng, sh.m*sh.k)
	bb := randSlice(rng, sh.k*sh.n)
	c := make([]float32, sh.m*sh.n)
	lda, ldb := sh.k, sh.n
	if sh.transA {
		lda = sh.m
	}
	if sh.transB {
		ldb = sh.k
	}
	Sgemm(sh.transA, sh.transB, sh.m, sh.n, sh.k, 1, a, lda, bb, ldb, 0, c, sh.n)
	b.ReportAllocs()
	b.ResetTimer()
	c0 := testenv.ProcessCPU().Seconds()
	for b.Loop() {
		Sgemm(sh.transA, sh.transB, sh.m, sh.n, sh.k, 1, a, lda, bb, ldb, 0, c, sh.n)
	}
	cpu := testenv.ProcessCPU().Seconds() - c0
	flops := 2 * float64(sh.m) * float64(sh.n) * float64(sh.k) * float64(b.N)
	b.ReportMetric(flops/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	// Per CPU-second of the whole process: on a shared machine this
	// discounts the time the benchmark was descheduled.
	if cpu > 0 {
		b.ReportMetric(flops/cpu/1e9, "GFLOP/cpu-s")
	}
}

// BenchmarkSgemmShape runs the one shape SSLRUN_GEMM_SHAPE=tA,tB,m,n,k
// (tA, tB 0 or 1) on 1 and 2 threads, for experiments.
func BenchmarkSgemmShape(b *testing.B) {
	v := os.Getenv("SSLRUN_GEMM_SHAPE")
	if v == "" {
		b.Skip("SSLRUN_GEMM_SHAPE not set")
	}
	var ta, tb, m, n, k int
	if _, err := fmt.Sscanf(v, "%d,%d,%d,%d,%d", &ta, &tb, &m, &n, &k); err != nil {
		b.Fatalf("SSLRUN_GEMM_SHAPE=%q: %v", v, err)
	}
	sh := benchShape{v, ta != 0, tb != 0, m, n, k}
	for _, th := range []int{1, 2} {
		b.Run(fmt.Sprintf("t%d", th), func(b *testing.B) { runBench(b, sh, th, false) })
	}
}
