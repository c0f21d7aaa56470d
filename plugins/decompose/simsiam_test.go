package decompose

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/sslrun/sslrun/core/autodiff"
	"github.com/sslrun/sslrun/core/tensor"
	"github.com/sslrun/sslrun/internal/tensortest"
	"github.com/sslrun/sslrun/plugins/simsiam"
)

// simsiamGrad returns dL/dp1 of the SimSiam loss (variant opts) from the
// autodiff tape.
func simsiamGrad(t *testing.T, z1, z2, p1, p2 *tensor.T, opts simsiam.Options) *tensor.T {
	t.Helper()
	tp := autodiff.NewTape()
	v := []*autodiff.Var{tp.Leaf(z1), tp.Leaf(z2), tp.Leaf(p1), tp.Leaf(p2)}
	loss, err := simsiam.Loss(tp, v[0], v[1], v[2], v[3], opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := tp.Backward(loss); err != nil {
		t.Fatal(err)
	}
	return v[2].Grad.Clone()
}

// unitRows returns the rows of x normalized, in float64.
func unitRows(x *tensor.T) [][]float64 {
	n, d := x.Rows(), x.Cols()
	out := make([][]float64, n)
	for m := range n {
		row := make([]float64, d)
		var s float64
		for i := range d {
			row[i] = float64(x.Data[m*d+i])
			s += row[i] * row[i]
		}
		for i := range row {
			row[i] /= math.Sqrt(s)
		}
		out[m] = row
	}
	return out
}

// TestSimSiamExtraGradient checks, on the real SimSiam loss and its autodiff
// gradient, what is exact in the paper's gradient view. With T_m = I -
// P_1m P_1m^T the tangent projector of view 1's prediction, N the batch and
// the loss's 1/2 * batch mean, the tape's gradient satisfies, row by row,
//
//	SimSiam (target Z_2):      -2N ||p_1m|| dL/dp_1m = T_m Z_2m = T_m (P_2m + o_e + r_e,m)
//	centre-only  (P_2 + o_e):  -2N ||p_1m|| dL/dp_1m = T_m (P_2m + o_e)
//	residual-only (P_2 + r_e): -2N ||p_1m|| dL/dp_1m = T_m (P_2m + r_e,m)
//
// with o_e and r_e = Z_2 - P_2 - o_e from ExtraGradient(z2, p2): the
// radial part of -dL/dP_1 = Z_2 is invisible, everything else is exact. And
// Gradient on the raw dL/dp1 equals Gradient on -Z_2/(2N) given as a
// normalized gradient projected tangentially.
func TestSimSiamExtraGradient(t *testing.T) {
	rng := rand.New(rand.NewPCG(10, 10))
	n, d := 16, 8
	z1, z2 := tensortest.Randn(rng, n, d), tensortest.Randn(rng, n, d)
	p1, p2 := tensor.New(n, d), tensor.New(n, d)
	shift := tensortest.Randn(rng, 1, d)
	for i := range p1.Data { // predictions near the projections, with a common offset
		p1.Data[i] = z1.Data[i] + 0.5*float32(rng.NormFloat64()) + shift.Data[i%d]
		p2.Data[i] = z2.Data[i] + 0.5*float32(rng.NormFloat64()) + shift.Data[i%d]
	}
	es, err := ExtraGradient(z2, p2, Options{Tensor: "p"})
	if err != nil {
		t.Fatal(err)
	}
	Z2, P1, P2 := unitRows(z2), unitRows(p1), unitRows(p2)
	norms := make([]float64, n)
	for m := range n {
		for i := range d {
			norms[m] += float64(p1.Data[m*d+i]) * float64(p1.Data[m*d+i])
		}
		norms[m] = math.Sqrt(norms[m])
	}
	target := map[simsiam.Target]func(m, i int) float64{
		simsiam.TargetZ:        func(m, i int) float64 { return P2[m][i] + es.OE[i] + (Z2[m][i] - P2[m][i] - es.OE[i]) },
		simsiam.TargetCenter:   func(m, i int) float64 { return P2[m][i] + es.OE[i] },
		simsiam.TargetResidual: func(m, i int) float64 { return P2[m][i] + (Z2[m][i] - P2[m][i] - es.OE[i]) },
	}
	for tgt, f := range target {
		g := simsiamGrad(t, z1, z2, p1, p2, simsiam.Options{StopGradient: true, Target: tgt})
		var worst float64
		for m := range n {
			want := make([]float64, d)
			var c float64
			for i := range d {
				want[i] = f(m, i)
				c += want[i] * P1[m][i]
			}
			for i := range d {
				w := want[i] - c*P1[m][i]
				got := -2 * float64(n) * norms[m] * float64(g.Data[m*d+i])
				worst = max(worst, math.Abs(got-w))
			}
		}
		t.Logf("target %q: max abs diff %.3g", tgt, worst)
		if worst > 1e-5 {
			t.Errorf("target %q: -2N||p|| dL/dp differs from T(target) by %g", tgt, worst)
		}
	}

	// The same split, from the raw gradient and from -dL/dP_1 = Z_2 / (2N).
	g := simsiamGrad(t, z1, z2, p1, p2, simsiam.Default())
	gP := tensor.New(n, d)
	for m := range n {
		for i := range d {
			gP.Data[m*d+i] = float32(-Z2[m][i] / float64(2*n))
		}
	}
	raw, err := Gradient(p1, g, Options{Tensor: "p"})
	if err != nil {
		t.Fatal(err)
	}
	paper, err := Gradient(p1, gP, Options{Tensor: "p", GradNormalized: true, GradTangential: true})
	if err != nil {
		t.Fatal(err)
	}
	rm, pm := metricMap(raw.Metrics()), metricMap(paper.Metrics())
	for k, v := range pm {
		if !near(rm[k], v, 1e-5, 1e-7) {
			t.Errorf("%s: from dL/dp %g, from -Z_2/(2N) %g", k, rm[k], v)
		}
	}
}
