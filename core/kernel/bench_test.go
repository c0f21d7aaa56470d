package kernel

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/sslrun/sslrun/core/parallel"
	"golang.org/x/sys/unix"
)

// convShape is one convolution layer of the workloads in
// shared/bench/torch_baseline.py.
type convShape struct {
	name string
	g    ConvGeom
}

func conv3(n, c, k, hw, stride int) ConvGeom {
	return ConvGeom{N: n, C: c, H: hw, W: hw, K: k, R: 3, S: 3, StrideH: stride, StrideW: stride, PadH: 1, PadW: 1}
}

func conv1(n, c, k, hw, stride int) ConvGeom {
	return ConvGeom{N: n, C: c, H: hw, W: hw, K: k, R: 1, S: 1, StrideH: stride, StrideW: stride}
}

// benchConvShapes lists every distinct conv layer shape of W2 (batch 256)
// and W3 (CIFAR ResNet-18, batch 128).
func benchConvShapes() []convShape {
	return []convShape{
		{"w2_c1_3x64_32", conv3(256, 3, 64, 32, 1)},
		{"w2_c2_64x128_32s2", conv3(256, 64, 128, 32, 2)},
		{"w2_c3_128x256_16s2", conv3(256, 128, 256, 16, 2)},
		{"w2_c4_256x512_8s2", conv3(256, 256, 512, 8, 2)},
		{"w3_stem_3x64_32", conv3(128, 3, 64, 32, 1)},
		{"w3_64x64_32", conv3(128, 64, 64, 32, 1)},
		{"w3_64x128_32s2", conv3(128, 64, 128, 32, 2)},
		{"w3_128x128_16", conv3(128, 128, 128, 16, 1)},
		{"w3_sc1x1_64x128_32s2", conv1(128, 64, 128, 32, 2)},
		{"w3_128x256_16s2", conv3(128, 128, 256, 16, 2)},
		{"w3_256x256_8", conv3(128, 256, 256, 8, 1)},
		{"w3_sc1x1_128x256_16s2", conv1(128, 128, 256, 16, 2)},
		{"w3_256x512_8s2", conv3(128, 256, 512, 8, 2)},
		{"w3_512x512_4", conv3(128, 512, 512, 4, 1)},
		{"w3_sc1x1_256x512_8s2", conv1(128, 256, 512, 8, 2)},
	}
}

// BenchmarkConv runs forward, backward-data and backward-filter on every
// workload layer; GFLOP/s counts 2*MAC as torch_baseline.py does.
func BenchmarkConv(b *testing.B) {
	for _, sh := range benchConvShapes() {
		benchConv(b, sh, 0)
	}
}

// BenchmarkConvBudget compares im2col group sizes on a few layers: budget 1
// is one image per GEMM, 0 the default grouping.
func BenchmarkConvBudget(b *testing.B) {
	shapes := benchConvShapes()
	for _, i := range []int{1, 5, 13} {
		for _, budget := range []int{1, 1 << 19, 1 << 20, 1 << 22, 0} {
			benchConv(b, convShape{fmt.Sprintf("%s/budget%d", shapes[i].name, budget), shapes[i].g}, budget)
		}
	}
}

// BenchmarkConvCPU1 runs the layers of BenchmarkConv on one thread and
// reports GFLOP/s over the calling thread's CPU time ("cpuGFLOP/s"), which,
// unlike wall time, does not count the time the thread was descheduled: on
// the shared, overloaded 2-core VM it is the steadier measure of the
// kernels' single-core speed (cache and memory contention still show).
func BenchmarkConvCPU1(b *testing.B) {
	prev := parallel.SetThreads(1)
	defer parallel.SetThreads(prev)
	for _, sh := range benchConvShapes() {
		benchConv(b, sh, 0)
	}
}

// threadCPU returns the calling thread's CPU time.
func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

func benchConv(b *testing.B, sh convShape, budget int) {
	g := sh.g
	rng := rand.New(rand.NewPCG(1, 1))
	x, w, dy := randVec(rng, g.XLen()), randVec(rng, g.WLen()), randVec(rng, g.YLen())
	y, dx, dw := make([]float32, g.YLen()), make([]float32, g.XLen()), make([]float32, g.WLen())
	ws := &Workspace{ColBudget: budget}
	for _, op := range []struct {
		name string
		f    func()
	}{
		{"fwd", func() { Conv2DForward(g, x, w, y, ws) }},
		{"bwd_data", func() { Conv2DBackwardData(g, dy, w, dx, ws, false) }},
		{"bwd_filter", func() { Conv2DBackwardFilter(g, x, dy, dw, ws, false) }},
	} {
		b.Run(sh.name+"/"+op.name, func(b *testing.B) {
			// Sub-benchmarks run on their own goroutine: pin it so that
			// the thread CPU clock measures this goroutine's work.
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			op.f()
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := threadCPU()
			for b.Loop() {
				op.f()
			}
			flops := float64(g.FLOPs()) * float64(b.N)
			b.ReportMetric(flops/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			if parallel.Threads() == 1 {
				b.ReportMetric(flops/(threadCPU()-cpu0).Seconds()/1e9, "cpuGFLOP/s")
			}
		})
	}
}

// BenchmarkBatchNorm2d runs training-mode BN forward and backward at the
// W2 activation sizes (and one W1-like [N, C] size); Gelem/s is elements
// of x per second.
func BenchmarkBatchNorm2d(b *testing.B) { benchBN(b) }

// BenchmarkBatchNormCPU1 is BenchmarkBatchNorm2d on one thread, with
// "cpuGelem/s" over the thread's CPU time as in BenchmarkConvCPU1.
func BenchmarkBatchNormCPU1(b *testing.B) {
	prev := parallel.SetThreads(1)
	defer parallel.SetThreads(prev)
	benchBN(b)
}

func benchBN(b *testing.B) {
	for _, s := range [][3]int{{256, 64, 1024}, {256, 128, 256}, {256, 256, 64}, {256, 512, 16}, {512, 1024, 1}} {
		n, c, hw := s[0], s[1], s[2]
		rng := rand.New(rand.NewPCG(2, 2))
		x, dy := randVec(rng, n*c*hw), randVec(rng, n*c*hw)
		y, dx := make([]float32, n*c*hw), make([]float32, n*c*hw)
		gamma, beta := randVec(rng, c), randVec(rng, c)
		mean, inv, rm, rv := make([]float32, c), make([]float32, c), make([]float32, c), make([]float32, c)
		dg, db := make([]float32, c), make([]float32, c)
		for _, op := range []struct {
			name string
			f    func()
		}{
			{"fwd", func() { BatchNormTrain(n, c, hw, x, gamma, beta, y, mean, inv, rm, rv, 0.1, 1e-5) }},
			{"bwd", func() { BatchNormBackward(n, c, hw, x, dy, gamma, mean, inv, dx, dg, db, false) }},
		} {
			b.Run(fmt.Sprintf("n%d_c%d_hw%d/%s", n, c, hw, op.name), func(b *testing.B) {
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				op.f()
				b.ReportAllocs()
				b.ResetTimer()
				cpu0 := threadCPU()
				for b.Loop() {
					op.f()
				}
				el := float64(n*c*hw) * float64(b.N)
				b.ReportMetric(el/b.Elapsed().Seconds()/1e9, "Gelem/s")
				if parallel.Threads() == 1 {
					b.ReportMetric(el/(threadCPU()-cpu0).Seconds()/1e9, "cpuGelem/s")
				}
			})
		}
	}
}

// BenchmarkIm2col times building the im2col matrix of one default-size
// group of images for every workload layer on one thread; "cpuGB/s" is
// bytes of the matrix written per second of the thread's CPU time.
func BenchmarkIm2col(b *testing.B) {
	prev := parallel.SetThreads(1)
	defer parallel.SetThreads(prev)
	for _, sh := range benchConvShapes() {
		g := sh.g
		if g.direct() {
			continue
		}
		b.Run(sh.name, func(b *testing.B) {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			x := randVec(rand.New(rand.NewPCG(3, 3)), g.XLen())
			ws := &Workspace{}
			ws.Grow(g)
			cnt := ws.group(g)
			ws.runIm2col(g, x, 0, cnt)
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := threadCPU()
			for b.Loop() {
				ws.runIm2col(g, x, 0, cnt)
			}
			bytes := 4 * float64(g.C*g.R*g.S*cnt*g.OutH()*g.OutW()) * float64(b.N)
			b.ReportMetric(bytes/(threadCPU()-cpu0).Seconds()/1e9, "cpuGB/s")
		})
	}
}
