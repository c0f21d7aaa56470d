package autodiff

import (
	"math"
	"math/rand/v2"
	"testing"
	"unsafe"

	"github.com/sslrun/sslrun/core/tensor"
)

func sameMemory(a, b []float32) bool {
	return len(a) > 0 && len(b) > 0 && unsafe.SliceData(a) == unsafe.SliceData(b)
}

func TestTapeSemantics(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	cases := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"DetachStopsGradient", func(t *testing.T) {
			x := NewParam("x", randT(rng, 3, 4))
			tp := NewTape()
			// d/dx sum(sg(x)*x) = sg(x) = x, not 2x.
			mustBackward(t, tp, tp.Sum(tp.Mul(tp.Detach(x), x)))
			assertClose(t, "grad", x.Grad.Data, x.Value.Data, 0)
			tp.Reset()
			if err := tp.Backward(tp.Sum(tp.Detach(x))); err == nil {
				t.Error("Backward through a detached-only loss succeeded")
			}
		}},
		{"ParamGradAccumulates", func(t *testing.T) {
			x := NewParam("x", randT(rng, 5))
			tp := NewTape()
			for i := 0; i < 2; i++ {
				tp.Reset()
				mustBackward(t, tp, tp.Sum(tp.Scale(x, 3)))
			}
			for i, v := range x.Grad.Data {
				if v != 6 {
					t.Fatalf("grad[%d] = %g after two steps, want 6", i, v)
				}
			}
		}},
		{"RepeatedBackwardSameStep", func(t *testing.T) {
			x := NewParam("x", randT(rng, 2, 3))
			tp := NewTape()
			h := tp.Square(x)
			loss := tp.Sum(h)
			mustBackward(t, tp, loss)
			mustBackward(t, tp, loss)
			for i, v := range x.Grad.Data {
				if want := 4 * x.Value.Data[i]; math.Abs(float64(v-want)) > 1e-6 {
					t.Fatalf("param grad[%d] = %g, want %g (two backward calls)", i, v, want)
				}
			}
			for i, v := range h.Grad.Data { // intermediate recomputed, not doubled
				if v != 1 {
					t.Fatalf("intermediate grad[%d] = %g, want 1", i, v)
				}
			}
		}},
		{"BackwardErrors", func(t *testing.T) {
			tp := NewTape()
			x := NewParam("x", randT(rng, 3))
			if err := tp.Backward(nil); err == nil {
				t.Error("nil loss accepted")
			}
			if err := tp.Backward(tp.Scale(x, 2)); err == nil {
				t.Error("3-element loss accepted")
			}
			if err := tp.Backward(tp.Sum(tp.Input(x.Value))); err == nil {
				t.Error("loss without parameters accepted")
			}
		}},
		{"NoGradRecordsNothing", func(t *testing.T) {
			tp := NewTape()
			x := NewParam("x", randT(rng, 3))
			restore := tp.NoGrad()
			y := tp.Sum(tp.Exp(x))
			if y.RequiresGrad() || tp.Len() != 0 || tp.GradEnabled() {
				t.Errorf("no-grad: requires=%v ops=%d enabled=%v", y.RequiresGrad(), tp.Len(), tp.GradEnabled())
			}
			if l := tp.Leaf(x.Value); l.RequiresGrad() {
				t.Error("Leaf requires grad in no-grad mode")
			}
			restore()
			if !tp.GradEnabled() {
				t.Fatal("restore did not re-enable grad")
			}
			if err := tp.Backward(y); err == nil {
				t.Error("Backward of a no-grad result succeeded")
			}
			z := tp.Sum(tp.Exp(x))
			if !z.RequiresGrad() || tp.Len() != 2 {
				t.Errorf("grad mode: requires=%v ops=%d", z.RequiresGrad(), tp.Len())
			}
		}},
		{"ViewsShareMemory", func(t *testing.T) {
			tp := NewTape()
			x := NewParam("x", randT(rng, 4, 6))
			h := tp.Scale(x, 2)
			r := tp.Reshape(h, 2, -1)
			if got := r.Value.Shape; got[0] != 2 || got[1] != 12 {
				t.Fatalf("reshape shape %v", got)
			}
			s := tp.SliceRows(h, 1, 3)
			if !sameMemory(r.Value.Data, h.Value.Data) || !sameMemory(s.Value.Data, h.Value.Data[6:]) {
				t.Fatal("views copy their values")
			}
			mustBackward(t, tp, tp.Add(tp.Sum(tp.Square(r)), tp.Sum(s)))
			if !sameMemory(r.Grad.Data, h.Grad.Data) || !sameMemory(s.Grad.Data, h.Grad.Data[6:]) {
				t.Fatal("views do not share the gradient")
			}
			for i, v := range h.Grad.Data {
				want := 2 * h.Value.Data[i]
				if i >= 6 && i < 18 {
					want++
				}
				if math.Abs(float64(v-want)) > 1e-5 {
					t.Fatalf("h.grad[%d] = %g, want %g", i, v, want)
				}
			}
			// Reshape of a parameter: the view's gradient is the parameter's.
			tp.Reset()
			x.Grad.Zero()
			mustBackward(t, tp, tp.Sum(tp.Reshape(x, -1)))
			for _, v := range x.Grad.Data {
				if v != 1 {
					t.Fatalf("param grad through reshape %g, want 1", v)
				}
			}
		}},
		{"IntermediateGradReadable", func(t *testing.T) {
			// -dL/dP for L = -mean(cos(P, sg(Z))) with unit rows is Z/N
			// minus its component along P (the paper's gradient view).
			tp := NewTape()
			p := NewParam("p", randT(rng, 4, 5))
			z := randT(rng, 4, 5)
			pn := tp.L2Normalize(p)
			zn := tp.L2Normalize(tp.Input(z))
			loss := tp.Neg(tp.Mean(tp.RowDot(pn, tp.Detach(zn))))
			mustBackward(t, tp, loss)
			for i := range pn.Grad.Data {
				if want := -zn.Value.Data[i] / 4; math.Abs(float64(pn.Grad.Data[i]-want)) > 1e-6 {
					t.Fatalf("dL/dP[%d] = %g, want %g", i, pn.Grad.Data[i], want)
				}
			}
			if zn.Grad != nil {
				t.Error("gradient reached a Var behind a stop-gradient")
			}
		}},
		{"ReLUEdges", func(t *testing.T) {
			tp := NewTape()
			in := []float32{-2, -0.0, 0, 1e-30, 3, float32(math.Inf(1)), float32(math.Inf(-1))}
			x := tp.Leaf(mustT(in))
			y := tp.ReLU(x)
			mustBackward(t, tp, tp.Sum(y))
			wantY := []float32{0, 0, 0, 1e-30, 3, float32(math.Inf(1)), 0}
			wantG := []float32{0, 0, 0, 1, 1, 1, 0}
			for i := range in {
				if y.Value.Data[i] != wantY[i] || math.Signbit(float64(y.Value.Data[i])) || x.Grad.Data[i] != wantG[i] {
					t.Errorf("relu(%g) = %g grad %g, want %g grad %g", in[i], y.Value.Data[i], x.Grad.Data[i], wantY[i], wantG[i])
				}
			}
		}},
		{"EmptyTensors", func(t *testing.T) {
			tp := NewTape()
			x := NewParam("x", tensor.New(0, 3))
			y := tp.ReLU(tp.Add(x, x))
			mustBackward(t, tp, tp.Add(tp.Sum(y), tp.Sum(NewParam("one", tensor.New(1)))))
			if len(x.Grad.Data) != 0 {
				t.Fatal("empty gradient has elements")
			}
		}},
		{"CrossEntropyMaskedRow", func(t *testing.T) {
			// A -Inf logit gets probability 0 and exactly zero gradient.
			tp := NewTape()
			x := tp.Leaf(mustT([]float32{1, 2, 3, 4, 0.5, -1}, 2, 3))
			l := tp.CrossEntropy(tp.FillDiagonal(x, NegInf), []int{2, 0})
			mustBackward(t, tp, l)
			if x.Grad.Data[0] != 0 || x.Grad.Data[4] != 0 {
				t.Errorf("masked entries got gradient: %v", x.Grad.Data)
			}
			if v := l.Item(); math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Errorf("loss %g", v)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, c.run)
	}
}

// TestFloat64Reference checks precision-critical ops against float64
// implementations on inputs where float32 shortcuts would lose accuracy:
// batch norm of data with |mean| >> std, cross-entropy of large logits.
func TestFloat64Reference(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	t.Run("BatchNormOffset", func(t *testing.T) {
		const n, c = 64, 3
		x := tensor.New(n, c)
		for i := range x.Data {
			x.Data[i] = 1000 + 0.05*float32(rng.NormFloat64())
		}
		w := randT(rng, n, c)
		tp := NewTape()
		xl := tp.Leaf(x)
		y := tp.BatchNorm(xl, nil, nil, nil, true)
		mustBackward(t, tp, weighted(tp, y, w))
		// float64 reference, forward and backward.
		wantY := make([]float32, n*c)
		wantG := make([]float32, n*c)
		for ch := 0; ch < c; ch++ {
			var m, v float64
			for i := 0; i < n; i++ {
				m += float64(x.Data[i*c+ch])
			}
			m /= n
			for i := 0; i < n; i++ {
				d := float64(x.Data[i*c+ch]) - m
				v += d * d
			}
			v /= n
			is := 1 / math.Sqrt(v+1e-5)
			var sg, sgx float64
			for i := 0; i < n; i++ {
				xh := (float64(x.Data[i*c+ch]) - m) * is
				wantY[i*c+ch] = float32(xh)
				sg += float64(w.Data[i*c+ch])
				sgx += float64(w.Data[i*c+ch]) * xh
			}
			for i := 0; i < n; i++ {
				xh := (float64(x.Data[i*c+ch]) - m) * is
				wantG[i*c+ch] = float32(is / n * (n*float64(w.Data[i*c+ch]) - sg - xh*sgx))
			}
		}
		// The saved mean is a float32: near 1000 it is exact to ~3e-5, about
		// 6e-4 of the std, which bounds the achievable agreement of x-mean;
		// a one-pass E[x²]-E[x]² in float32 would be off by far more.
		assertClose(t, "y", y.Value.Data, wantY, 1e-3)
		assertClose(t, "grad", xl.Grad.Data, wantG, 1e-3)
	})
	t.Run("CrossEntropyLargeLogits", func(t *testing.T) {
		const n, c = 4, 50
		x := randT(rng, n, c)
		for i := range x.Data {
			x.Data[i] = 300 + 40*x.Data[i]
		}
		target := []int{3, 10, 0, 49}
		tp := NewTape()
		xl := tp.Leaf(x)
		l := tp.CrossEntropy(xl, target)
		mustBackward(t, tp, l)
		var want float64
		wantG := make([]float32, n*c)
		for i := 0; i < n; i++ {
			row := x.Data[i*c : i*c+c]
			m := math.Inf(-1)
			for _, v := range row {
				m = math.Max(m, float64(v))
			}
			var s float64
			for _, v := range row {
				s += math.Exp(float64(v) - m)
			}
			want -= (float64(row[target[i]]) - m - math.Log(s)) / n
			for j, v := range row {
				p := math.Exp(float64(v)-m) / s
				if j == target[i] {
					p--
				}
				wantG[i*c+j] = float32(p / n)
			}
		}
		assertClose(t, "loss", l.Value.Data, []float32{float32(want)}, 1e-5)
		assertClose(t, "grad", xl.Grad.Data, wantG, 1e-5)
	})
}

// mustT wraps data as a tensor of the given shape ([len(data)] if none).
func mustT(data []float32, shape ...int) *tensor.T {
	if len(shape) == 0 {
		shape = []int{len(data)}
	}
	x, err := tensor.FromSlice(data, shape...)
	if err != nil {
		panic(err)
	}
	return x
}

func TestReshapeDoesNotAllocate(t *testing.T) {
	tp := NewTape()
	x := NewParam("x", tensor.New(4, 2, 3))
	step := func() {
		tp.Reset()
		y := tp.Reshape(x, 4, -1)
		if err := tp.Backward(tp.Sum(y)); err != nil {
			t.Fatal(err)
		}
	}
	step()
	step()
	if n := testing.AllocsPerRun(20, step); n != 0 {
		t.Fatalf("Reshape step allocates %v times", n)
	}
}

// TestReLUPropagatesNaN: PyTorch's ReLU returns NaN for NaN whatever its
// sign bit; zeroing it would hide a diverged step from the NaN check.
func TestReLUPropagatesNaN(t *testing.T) {
	neg := math.Float32frombits(0xffc00000) // the NaN x86 makes of 0/0
	pos := math.Float32frombits(0x7fc00000)
	x, _ := tensor.FromSlice([]float32{neg, pos, -1, 2}, 4)
	tp := NewTape()
	y := tp.ReLU(tp.Input(x)).Value.Data
	if !math.IsNaN(float64(y[0])) || !math.IsNaN(float64(y[1])) || y[2] != 0 || y[3] != 2 {
		t.Fatalf("ReLU(%v) = %v", x.Data, y)
	}
}
