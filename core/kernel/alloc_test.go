package kernel

import (
	"math/rand/v2"
	"testing"
)

// TestNoAllocsInSteadyState checks that, after one warm-up call, the
// kernels allocate nothing: Workspace buffers are reused and Task values
// come from the Workspace or sync.Pools. The shapes are big enough that the
// work is split across core/parallel's workers and Sgemm goes parallel.
func TestNoAllocsInSteadyState(t *testing.T) {
	rng := rand.New(rand.NewPCG(19, 20))
	g := ConvGeom{N: 8, C: 32, H: 16, W: 16, K: 32, R: 3, S: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1}
	g1 := ConvGeom{N: 4, C: 16, H: 8, W: 8, K: 32, R: 1, S: 1, StrideH: 1, StrideW: 1}
	g2 := ConvGeom{N: 8, C: 32, H: 16, W: 16, K: 16, R: 3, S: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1}
	ws := &Workspace{ColBudget: 3 * 32 * 9 * 256} // several groups, one partial
	x, w := randVec(rng, g.XLen()), randVec(rng, g.WLen())
	y, dy := make([]float32, g.YLen()), randVec(rng, g.YLen())
	dx, dw := make([]float32, g.XLen()), make([]float32, g.WLen())

	n, c, hw := 16, 32, 64
	bx, gamma, beta := randVec(rng, n*c*hw), randVec(rng, c), randVec(rng, c)
	by, bdy, bdx := make([]float32, n*c*hw), randVec(rng, n*c*hw), make([]float32, n*c*hw)
	mean, inv, rm, rv := make([]float32, c), make([]float32, c), make([]float32, c), make([]float32, c)
	dg, db, gy := make([]float32, c), make([]float32, c), make([]float32, n*c)
	p := PoolGeom{N: 8, C: 16, H: 16, W: 16, KH: 3, KW: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1}
	py, pi := make([]float32, p.YLen()), make([]int32, p.YLen())

	for _, tc := range []struct {
		name string
		f    func()
	}{
		{"Conv2DForward", func() { Conv2DForward(g, x, w, y, ws) }},
		{"Conv2DBackwardData", func() { Conv2DBackwardData(g, dy, w, dx, ws, false) }},
		{"Conv2DBackwardFilter", func() { Conv2DBackwardFilter(g, x, dy, dw, ws, true) }},
		{"Conv2DBackwardDataStride2", func() { Conv2DBackwardData(g2, dy, w, dx, ws, true) }},
		{"Conv2DBackwardFilterStride2", func() { Conv2DBackwardFilter(g2, x, dy, dw, ws, false) }},
		{"Conv2DForward1x1", func() { Conv2DForward(g1, x, w, y, ws) }},
		{"Conv2DForwardNilWS", func() { Conv2DForward(g, x, w, y, nil) }},
		{"BatchNormTrain", func() { BatchNormTrain(n, c, hw, bx, gamma, beta, by, mean, inv, rm, rv, 0.1, 1e-5) }},
		{"BatchNormBackward", func() { BatchNormBackward(n, c, hw, bx, bdy, gamma, mean, inv, bdx, dg, db, false) }},
		{"BatchNormTrain1d", func() { BatchNormTrain(n*hw, c, 1, bx, gamma, beta, by, mean, inv, rm, rv, 0.1, 1e-5) }},
		{"BatchNormBackward1d", func() { BatchNormBackward(n*hw, c, 1, bx, bdy, gamma, mean, inv, bdx, dg, db, true) }},
		{"BatchNormEval", func() { BatchNormEval(n, c, hw, bx, gamma, beta, rm, rv, by, 1e-5) }},
		{"BatchNormEvalBackward", func() { BatchNormEvalBackward(n, c, hw, bx, bdy, gamma, rm, rv, 1e-5, bdx, dg, db, false) }},
		{"ReLU", func() { ReLUForward(bx, by); ReLUBackward(by, bdy, bdx, false) }},
		{"MaxPool", func() { MaxPool2DForward(p, x, py, pi); MaxPool2DBackward(p, py, pi, dx, false) }},
		{"AvgPool", func() { AvgPool2DForward(p, x, py); AvgPool2DBackward(p, py, dx, true) }},
		{"GlobalAvgPool", func() { GlobalAvgPoolForward(n, c, hw, bx, gy); GlobalAvgPoolBackward(n, c, hw, gy, bdx, false) }},
	} {
		tc.f() // warm-up: grows the Workspace, fills the pools
		if a := testing.AllocsPerRun(20, tc.f); a != 0 {
			t.Errorf("%s: %v allocations per call after warm-up", tc.name, a)
		}
	}
}
