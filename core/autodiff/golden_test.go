package autodiff

import (
	"math"
	"testing"

	"github.com/sslrun/sslrun/core/safetensors"
	"github.com/sslrun/sslrun/core/tensor"
)

const goldenPath = "testdata/autodiff_golden.safetensors"

// goldenRtol is the relative tolerance against PyTorch (float32 on both
// sides, different summation orders).
const goldenRtol = 1e-4

type golden struct {
	t *testing.T
	f *safetensors.File
}

func loadGolden(t *testing.T) *golden {
	t.Helper()
	f, err := safetensors.ReadFile(goldenPath)
	if err != nil {
		t.Fatalf("%v (regenerate with /usr/bin/python3 tools/golden/gen_autodiff.py)", err)
	}
	return &golden{t, f}
}

func (g *golden) get(name string) *tensor.T {
	g.t.Helper()
	x, err := g.f.Tensor(name)
	if err != nil {
		g.t.Fatal(err)
	}
	return x
}

func (g *golden) ints(name string) []int {
	g.t.Helper()
	v, _, err := g.f.Int64s(name)
	if err != nil {
		g.t.Fatal(err)
	}
	out := make([]int, len(v))
	for i, x := range v {
		out[i] = int(x)
	}
	return out
}

// assertClose compares got with want elementwise: |got-want| <= rtol*|want|
// + rtol*rms(want), i.e. relative for large elements and relative to the
// tensor's scale for elements near zero. Equal infinities match.
func assertClose(t *testing.T, name string, got, want []float32, rtol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d elements, want %d", name, len(got), len(want))
		return
	}
	var ss float64
	n := 0
	for _, w := range want {
		if !math.IsInf(float64(w), 0) {
			ss += float64(w) * float64(w)
			n++
		}
	}
	atol := rtol * math.Sqrt(ss/float64(max(n, 1)))
	bad := 0
	for i := range want {
		g, w := float64(got[i]), float64(want[i])
		if math.IsInf(w, 0) || math.IsInf(g, 0) {
			if g != w {
				bad++
				if bad <= 3 {
					t.Errorf("%s[%d] = %g, want %g", name, i, g, w)
				}
			}
			continue
		}
		if d := math.Abs(g - w); !(d <= rtol*math.Abs(w)+atol) {
			bad++
			if bad <= 3 {
				t.Errorf("%s[%d] = %.8g, want %.8g (diff %.3g)", name, i, g, w, d)
			}
		}
	}
	if bad > 3 {
		t.Errorf("%s: %d elements differ", name, bad)
	}
}

// weighted returns Sum(out*w) with w from the fixture.
func weighted(tp *Tape, out *Var, w *tensor.T) *Var { return tp.Sum(tp.Mul(out, tp.Input(w))) }

func TestGoldenPyTorch(t *testing.T) {
	g := loadGolden(t)
	cases := []struct {
		name string
		run  func(t *testing.T, tp *Tape)
	}{
		{"cosine", func(t *testing.T, tp *Tape) {
			a, b := tp.Leaf(g.get("cosine.a")), tp.Leaf(g.get("cosine.b"))
			out := tp.CosineSimilarity(a, b)
			mustBackward(t, tp, weighted(tp, out, g.get("cosine.w")))
			assertClose(t, "out", out.Value.Data, g.get("cosine.out").Data, goldenRtol)
			assertClose(t, "grad_a", a.Grad.Data, g.get("cosine.grad_a").Data, goldenRtol)
			assertClose(t, "grad_b", b.Grad.Data, g.get("cosine.grad_b").Data, goldenRtol)
		}},
		{"cosine_eps", func(t *testing.T, tp *Tape) {
			a, b := tp.Leaf(g.get("cosine_eps.a")), tp.Leaf(g.get("cosine_eps.b"))
			out := tp.CosineSimilarityEps(a, b, 0.5)
			mustBackward(t, tp, weighted(tp, out, g.get("cosine_eps.w")))
			assertClose(t, "out", out.Value.Data, g.get("cosine_eps.out").Data, goldenRtol)
			assertClose(t, "grad_a", a.Grad.Data, g.get("cosine_eps.grad_a").Data, goldenRtol)
			assertClose(t, "grad_b", b.Grad.Data, g.get("cosine_eps.grad_b").Data, goldenRtol)
		}},
		{"normalize", func(t *testing.T, tp *Tape) {
			x := tp.Leaf(g.get("normalize.x"))
			out := tp.L2Normalize(x)
			mustBackward(t, tp, weighted(tp, out, g.get("normalize.w")))
			assertClose(t, "out", out.Value.Data, g.get("normalize.out").Data, goldenRtol)
			assertClose(t, "grad_x", x.Grad.Data, g.get("normalize.grad_x").Data, goldenRtol)
		}},
		{"logsoftmax_masked", func(t *testing.T, tp *Tape) {
			x := tp.Leaf(g.get("logsoftmax_masked.x"))
			out := tp.LogSoftmax(tp.FillDiagonal(x, NegInf))
			mustBackward(t, tp, weighted(tp, tp.FillDiagonal(out, 0), g.get("logsoftmax_masked.w")))
			assertClose(t, "out", out.Value.Data, g.get("logsoftmax_masked.out").Data, goldenRtol)
			assertClose(t, "grad_x", x.Grad.Data, g.get("logsoftmax_masked.grad_x").Data, goldenRtol)
		}},
		{"cross_entropy", func(t *testing.T, tp *Tape) {
			x := tp.Leaf(g.get("cross_entropy.x"))
			out := tp.CrossEntropy(x, g.ints("cross_entropy.target"))
			mustBackward(t, tp, out)
			assertClose(t, "out", out.Value.Data, g.get("cross_entropy.out").Data, goldenRtol)
			assertClose(t, "grad_x", x.Grad.Data, g.get("cross_entropy.grad_x").Data, goldenRtol)
		}},
		{"ntxent", func(t *testing.T, tp *Tape) {
			z1, z2 := tp.Leaf(g.get("ntxent.z1")), tp.Leaf(g.get("ntxent.z2"))
			z := tp.L2Normalize(tp.ConcatRows(z1, z2))
			s := tp.FillDiagonal(tp.Scale(tp.MatMul(z, z, false, true), 1/0.5), NegInf)
			out := tp.CrossEntropy(s, g.ints("ntxent.target"))
			mustBackward(t, tp, out)
			assertClose(t, "logits", s.Value.Data, g.get("ntxent.logits").Data, goldenRtol)
			assertClose(t, "out", out.Value.Data, g.get("ntxent.out").Data, goldenRtol)
			assertClose(t, "grad_z1", z1.Grad.Data, g.get("ntxent.grad_z1").Data, goldenRtol)
			assertClose(t, "grad_z2", z2.Grad.Data, g.get("ntxent.grad_z2").Data, goldenRtol)
		}},
		{"ntxent_logsoftmax", func(t *testing.T, tp *Tape) {
			// The same loss spelled with LogSoftmax and a one-hot pick.
			z1, z2 := tp.Leaf(g.get("ntxent.z1")), tp.Leaf(g.get("ntxent.z2"))
			z := tp.L2Normalize(tp.ConcatRows(z1, z2))
			s := tp.FillDiagonal(tp.Scale(tp.MatMul(z, z, false, true), 2), NegInf)
			ls := tp.LogSoftmax(s)
			target := g.ints("ntxent.target")
			n := len(target)
			pick := tensor.New(n, n)
			for i, c := range target {
				pick.Data[i*n+c] = -1 / float32(n)
			}
			out := tp.Sum(tp.Mul(tp.FillDiagonal(ls, 0), tp.Input(pick)))
			mustBackward(t, tp, out)
			assertClose(t, "out", out.Value.Data, g.get("ntxent.out").Data, goldenRtol)
			assertClose(t, "grad_z1", z1.Grad.Data, g.get("ntxent.grad_z1").Data, goldenRtol)
			assertClose(t, "grad_z2", z2.Grad.Data, g.get("ntxent.grad_z2").Data, goldenRtol)
		}},
		{"matmul", func(t *testing.T, tp *Tape) {
			a, b := tp.Leaf(g.get("matmul.a")), tp.Leaf(g.get("matmul.b"))
			out := tp.MatMul(a, b, false, false)
			mustBackward(t, tp, weighted(tp, out, g.get("matmul.w")))
			assertClose(t, "out", out.Value.Data, g.get("matmul.out").Data, goldenRtol)
			assertClose(t, "grad_a", a.Grad.Data, g.get("matmul.grad_a").Data, goldenRtol)
			assertClose(t, "grad_b", b.Grad.Data, g.get("matmul.grad_b").Data, goldenRtol)
		}},
		{"matmul_nt", func(t *testing.T, tp *Tape) {
			a, c := tp.Leaf(g.get("matmul_nt.a")), tp.Leaf(g.get("matmul_nt.c"))
			out := tp.MatMul(a, c, false, true)
			mustBackward(t, tp, weighted(tp, out, g.get("matmul_nt.w")))
			assertClose(t, "out", out.Value.Data, g.get("matmul_nt.out").Data, goldenRtol)
			assertClose(t, "grad_a", a.Grad.Data, g.get("matmul_nt.grad_a").Data, goldenRtol)
			assertClose(t, "grad_c", c.Grad.Data, g.get("matmul_nt.grad_c").Data, goldenRtol)
		}},
		{"simsiam", func(t *testing.T, tp *Tape) {
			p1, p2 := tp.Leaf(g.get("simsiam.p1")), tp.Leaf(g.get("simsiam.p2"))
			z1, z2 := tp.Leaf(g.get("simsiam.z1")), tp.Leaf(g.get("simsiam.z2"))
			c1 := tp.Mean(tp.CosineSimilarity(p1, tp.Detach(z2)))
			c2 := tp.Mean(tp.CosineSimilarity(p2, tp.Detach(z1)))
			out := tp.Scale(tp.Add(c1, c2), -0.5)
			mustBackward(t, tp, out)
			assertClose(t, "out", out.Value.Data, g.get("simsiam.out").Data, goldenRtol)
			assertClose(t, "grad_p1", p1.Grad.Data, g.get("simsiam.grad_p1").Data, goldenRtol)
			assertClose(t, "grad_p2", p2.Grad.Data, g.get("simsiam.grad_p2").Data, goldenRtol)
			for _, z := range []*Var{z1, z2} { // stop-gradient: exactly zero
				for i, v := range z.Grad.Data {
					if v != 0 {
						t.Fatalf("detached z got gradient %g at %d", v, i)
					}
				}
			}
		}},
	}
	for _, name := range []string{"bn1d", "bn2d"} {
		name := name
		cases = append(cases, struct {
			name string
			run  func(t *testing.T, tp *Tape)
		}{name, func(t *testing.T, tp *Tape) {
			x := tp.Leaf(g.get(name + ".x"))
			gamma := NewParam("gamma", g.get(name+".gamma"))
			beta := NewParam("beta", g.get(name+".beta"))
			st := NewBNState(gamma.Len())
			out := tp.BatchNorm(x, gamma, beta, st, true)
			w := g.get(name + ".w")
			mustBackward(t, tp, weighted(tp, out, w))
			assertClose(t, "out", out.Value.Data, g.get(name+".out").Data, goldenRtol)
			assertClose(t, "grad_x", x.Grad.Data, g.get(name+".grad_x").Data, goldenRtol)
			assertClose(t, "grad_gamma", gamma.Grad.Data, g.get(name+".grad_gamma").Data, goldenRtol)
			assertClose(t, "grad_beta", beta.Grad.Data, g.get(name+".grad_beta").Data, goldenRtol)
			assertClose(t, "running_mean", st.RunningMean.Data, g.get(name+".running_mean").Data, goldenRtol)
			assertClose(t, "running_var", st.RunningVar.Data, g.get(name+".running_var").Data, goldenRtol)

			// Evaluation mode with the running statistics just updated.
			tp.Reset()
			gamma.Grad.Zero()
			beta.Grad.Zero()
			x = tp.Leaf(g.get(name + ".x"))
			out = tp.BatchNorm(x, gamma, beta, st, false)
			mustBackward(t, tp, weighted(tp, out, w))
			ev := name + "_eval"
			assertClose(t, "eval out", out.Value.Data, g.get(ev+".out").Data, goldenRtol)
			assertClose(t, "eval grad_x", x.Grad.Data, g.get(ev+".grad_x").Data, goldenRtol)
			assertClose(t, "eval grad_gamma", gamma.Grad.Data, g.get(ev+".grad_gamma").Data, goldenRtol)
			assertClose(t, "eval grad_beta", beta.Grad.Data, g.get(ev+".grad_beta").Data, goldenRtol)
		}})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.run(t, NewTape()) })
	}
}

func mustBackward(t *testing.T, tp *Tape, loss *Var) {
	t.Helper()
	if err := tp.Backward(loss); err != nil {
		t.Fatal(err)
	}
}
