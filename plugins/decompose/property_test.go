package decompose

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/sslrun/sslrun/core/tensor"
	"github.com/sslrun/sslrun/internal/tensortest"
)

func metricMap(ms []Metric) map[string]float64 {
	out := map[string]float64{}
	for _, m := range ms {
		out[m.Key] = m.Value
	}
	return out
}

// TestRandomDirections: N random directions have ||o|| ~ 1/sqrt(N) and
// per-channel std ~ 1/sqrt(d), on both Gram paths.
func TestRandomDirections(t *testing.T) {
	for _, c := range []struct{ n, d int }{{512, 64}, {64, 256}} {
		rng := rand.New(rand.NewPCG(1, uint64(c.n)))
		st, err := Embeddings(tensortest.Randn(rng, c.n, c.d), Options{})
		if err != nil {
			t.Fatal(err)
		}
		if st.MOSqrtN < 0.6 || st.MOSqrtN > 1.4 {
			t.Errorf("%v: m_o*sqrt(N) = %g, want ~1", c, st.MOSqrtN)
		}
		if math.Abs(st.StdSqrtD-1) > 0.05 {
			t.Errorf("%v: std*sqrt(d) = %g, want ~1", c, st.StdSqrtD)
		}
		if st.IdentityErr > 1e-12 {
			t.Errorf("%v: identity_err = %g", c, st.IdentityErr)
		}
		if k := min(c.n, c.d); st.EffRank < 0.7*float64(k) || st.EffRankResidual < 0.7*float64(k) {
			t.Errorf("%v: eff_rank %g, residual %g, want most of %d", c, st.EffRank, st.EffRankResidual, k)
		}
		if got, _ := Collapsed(st, math.NaN(), math.NaN()); got {
			t.Errorf("%v: random directions reported collapsed", c)
		}
	}
}

// TestIdenticalRows is complete collapse.
func TestIdenticalRows(t *testing.T) {
	n, d := 10, 5
	x := tensor.New(n, d)
	for m := range n {
		copy(x.Data[m*d:], []float32{1, -2, 0.5, 3, 0})
	}
	st, err := Embeddings(x, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(st.MO-1) > 1e-12 || st.MR > 1e-7 || st.Std > 1e-7 || st.OffDiagCov > 1e-14 {
		t.Errorf("m_o %g, m_r %g, std %g, offdiag %g: want 1, 0, 0, 0", st.MO, st.MR, st.Std, st.OffDiagCov)
	}
	if math.Abs(st.EffRank-1) > 1e-6 {
		t.Errorf("eff_rank = %g, want 1", st.EffRank)
	}
	if got, why := Collapsed(st, math.NaN(), math.NaN()); !got {
		t.Errorf("identical rows not collapsed: %s", why)
	}
}

// TestLowRank: rows in a 3-d subspace have at most 3 significant singular
// values, and the classic std metric does not see it.
func TestLowRank(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 2))
	n, d := 128, 32
	a, b := tensortest.Randn(rng, n, 3), tensortest.Randn(rng, 3, d)
	x := tensor.New(n, d)
	for m := range n {
		for j := range d {
			var s float64
			for k := range 3 {
				s += float64(a.Data[m*3+k]) * float64(b.Data[k*d+j])
			}
			x.Data[m*d+j] = float32(s)
		}
	}
	st, err := Embeddings(x, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if st.EffRank > 3 || st.EffRankResidual > 3 {
		t.Errorf("eff_rank %g, residual %g: want <= 3", st.EffRank, st.EffRankResidual)
	}
	for i, s := range st.Spectrum[3:] {
		if s > 1e-5*st.Spectrum[0] {
			t.Errorf("spectrum[%d] = %g, want ~0 (largest %g)", i+3, s, st.Spectrum[0])
		}
	}
	if got, _ := Collapsed(st, math.NaN(), math.NaN()); got {
		t.Errorf("low-rank data reported collapsed (std*sqrt(d) %g, m_o %g)", st.StdSqrtD, st.MO)
	}
}

// TestScaleInvariant: the metrics are of the normalized rows.
func TestScaleInvariant(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	x := tensortest.Randn(rng, 20, 12)
	y := x.Clone()
	for m := range 20 {
		s := float32(0.01 + 10*rng.Float64())
		for i := range 12 {
			y.Data[m*12+i] *= s
		}
	}
	a, _ := Embeddings(x, Options{})
	b, _ := Embeddings(y, Options{})
	am, bm := metricMap(a.Metrics()), metricMap(b.Metrics())
	for k, v := range am {
		if k != "identity_err" && !near(bm[k], v, 1e-5, 1e-12) {
			t.Errorf("%s: %g after row scaling, %g before", k, bm[k], v)
		}
	}
}

// TestGradientAlongCenter: a push along +o is all centre and no
// de-centering; along -o all de-centering.
func TestGradientAlongCenter(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	n, d := 16, 8
	z := tensortest.Randn(rng, n, d)
	for i := range z.Data { // give the batch a clear centre
		z.Data[i] += float32(i%d) * 0.3
	}
	an := New()
	st, err := an.Embeddings(z, Options{SkipSpectrum: true})
	if err != nil {
		t.Fatal(err)
	}
	o := append([]float64(nil), an.o...)
	for _, sign := range []float64{1, -1} {
		// g = dL/dZ = -sign*o, so the push -g is sign*o.
		g := tensor.New(n, d)
		for m := range n {
			for i := range d {
				g.Data[m*d+i] = float32(-sign * o[i])
			}
		}
		gs, err := an.Gradient(z, g, Options{GradNormalized: true})
		if err != nil {
			t.Fatal(err)
		}
		wantDec, wantCol := 0.0, 1.0
		if sign < 0 {
			wantDec, wantCol = 1, 0
		}
		checks := []struct {
			name      string
			got, want float64
		}{
			{"center_share", gs.CenterShare, 1},
			{"decorr_share", gs.DecorrShare, 0},
			{"decenter_share", gs.DecenterShare, wantDec},
			{"collapse_share", gs.CollapseShare, wantCol},
			{"center_coef", gs.CenterCoef, sign * st.MO},
			{"center_cos", gs.CenterCos, sign},
			{"center_norm", gs.CenterNorm, st.MO},
			{"norm", gs.Norm, st.MO},
		}
		for _, c := range checks {
			if math.Abs(c.got-c.want) > 1e-6 {
				t.Errorf("push %+g*o: %s = %g, want %g", sign, c.name, c.got, c.want)
			}
		}
		if gs.ResidualNorm > 1e-6 {
			t.Errorf("push %+g*o: residual norm %g, want 0", sign, gs.ResidualNorm)
		}
	}
}

// TestGradientSharesSum: centre and residual shares add up to 1 and the
// centre share splits into de-centering and collapse.
func TestGradientSharesSum(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	z, g := tensortest.Randn(rng, 40, 24), tensortest.Randn(rng, 40, 24)
	for _, opts := range []Options{{}, {GradNormalized: true}, {GradNormalized: true, GradTangential: true}} {
		gs, err := Gradient(z, g, opts)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(gs.CenterShare+gs.DecorrShare-1) > 1e-12 || math.Abs(gs.DecenterShare+gs.CollapseShare-gs.CenterShare) > 1e-12 {
			t.Errorf("%+v: shares %+v do not add up", opts, gs)
		}
	}
}

// TestRawGradientIsTangential: dL/dz = T dL/dZ / ||z|| for Z = z/||z||, so
// the raw path and the normalized+tangential path of the same loss agree.
func TestRawGradientIsTangential(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 6))
	n, d := 12, 10
	z, gZ := tensortest.Randn(rng, n, d), tensortest.Randn(rng, n, d)
	gz := tensor.New(n, d)
	for m := range n {
		row, gr := z.Data[m*d:(m+1)*d], gZ.Data[m*d:(m+1)*d]
		var nn, c float64
		for i := range d {
			nn += float64(row[i]) * float64(row[i])
		}
		nr := math.Sqrt(nn)
		for i := range d {
			c += float64(gr[i]) * float64(row[i]) / nr
		}
		for i := range d {
			gz.Data[m*d+i] = float32((float64(gr[i]) - c*float64(row[i])/nr) / nr)
		}
	}
	raw, _ := Gradient(z, gz, Options{})
	tan, _ := Gradient(z, gZ, Options{GradNormalized: true, GradTangential: true})
	rm, tm := metricMap(raw.Metrics()), metricMap(tan.Metrics())
	for k, v := range tm {
		if !near(rm[k], v, 1e-5, 1e-7) {
			t.Errorf("%s: raw %g, normalized+tangential %g", k, rm[k], v)
		}
	}
}

func TestExtraGradient(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	z1, z2, p1, p2 := tensortest.Randn(rng, 20, 6), tensortest.Randn(rng, 20, 6), tensortest.Randn(rng, 20, 6), tensortest.Randn(rng, 20, 6)
	// P_b = Z_b: no extra gradient.
	st, err := ExtraGradient(z2, z2, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if st.OENorm != 0 || st.RENorm != 0 || st.Eta != 0 {
		t.Errorf("P = Z: o_e %g, r_e %g, eta %g, want 0", st.OENorm, st.RENorm, st.Eta)
	}
	// The pair averages the two directions.
	a, _ := ExtraGradient(z2, p2, Options{})
	b, _ := ExtraGradient(z1, p1, Options{})
	pair, err := ExtraGradientPair(z1, z2, p1, p2, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !near(pair.Eta, (a.Eta+b.Eta)/2, 1e-12, 0) || !near(pair.RENorm, (a.RENorm+b.RENorm)/2, 1e-12, 0) {
		t.Errorf("pair %+v is not the mean of %+v and %+v", pair, a, b)
	}
	// eta is the least-squares coefficient: o_e - eta o_p is orthogonal to o_p.
	var r float64
	for i := range a.OE {
		r += (a.OE[i] - a.Eta*a.OP[i]) * a.OP[i]
	}
	if math.Abs(r) > 1e-12 {
		t.Errorf("<o_e - eta o_p, o_p> = %g, want 0", r)
	}
}

// TestAnalyzerReuse: scratch buffers carry nothing over between shapes.
func TestAnalyzerReuse(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 8))
	big, small := tensortest.Randn(rng, 64, 48), tensortest.Randn(rng, 10, 7)
	an := New()
	if _, err := an.Embeddings(big, Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := an.Gradient(big, big, Options{}); err != nil {
		t.Fatal(err)
	}
	got, _ := an.Embeddings(small, Options{})
	want, _ := Embeddings(small, Options{})
	gm, wm := metricMap(got.Metrics()), metricMap(want.Metrics())
	for k, v := range wm {
		if gm[k] != v {
			t.Errorf("%s: reused analyzer %g, fresh %g", k, gm[k], v)
		}
	}
}

func TestMetricRows(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	x := tensortest.Randn(rng, 30, 8)
	st, _ := Embeddings(x, Options{Tensor: "p", Scope: "eval", Batch: 256})
	gs, _ := Gradient(x, x, Options{})
	es, _ := ExtraGradient(x, x, Options{})
	seen := map[string]bool{}
	for _, ms := range [][]Metric{st.Metrics(), gs.Metrics(), es.Metrics()} {
		for _, m := range ms {
			if strings.Contains(m.Key, "/") || seen[m.Key] {
				t.Errorf("bad or duplicate key %q", m.Key)
			}
			seen[m.Key] = true
		}
	}
	c := st.Metrics()[0].Context
	if c["tensor"] != "p" || c["scope"] != "eval" || c["batch"] != "256" {
		t.Errorf("context %v", c)
	}
	if c := gs.Metrics()[0].Context; c["tensor"] != "z" || c["scope"] != "batch" || c["batch"] != "30" {
		t.Errorf("default context %v", c)
	}
	if a := st.Arrays(); len(a) != 2 || a[0].Key != "spectrum" || a[1].Key != "residual_spectrum" || a[0].Shape[0] != 8 {
		t.Errorf("arrays %+v", a)
	}
	skip, _ := Embeddings(x, Options{SkipSpectrum: true})
	if skip.Arrays() != nil || len(skip.Metrics()) != len(st.Metrics())-2 || !math.IsNaN(skip.EffRank) {
		t.Errorf("SkipSpectrum still reports the spectrum")
	}
}

func TestErrors(t *testing.T) {
	x := tensor.New(4, 3)
	cases := []struct {
		name string
		err  error
	}{
		{"nil", func() error { _, err := Embeddings(nil, Options{}); return err }()},
		{"1-d", func() error { _, err := Embeddings(tensor.New(5), Options{}); return err }()},
		{"one row", func() error { _, err := Embeddings(tensor.New(1, 3), Options{}); return err }()},
		{"short data", func() error {
			_, err := Embeddings(&tensor.T{Shape: []int{4, 3}, Data: make([]float32, 5)}, Options{})
			return err
		}()},
		{"grad shape", func() error { _, err := Gradient(x, tensor.New(4, 2), Options{}); return err }()},
		{"extra shape", func() error { _, err := ExtraGradient(x, tensor.New(3, 3), Options{}); return err }()},
	}
	for _, c := range cases {
		if c.err == nil {
			t.Errorf("%s: no error", c.name)
		} else if !strings.HasPrefix(c.err.Error(), "decompose: ") {
			t.Errorf("%s: error %q lacks context", c.name, c.err)
		}
	}
	// [N, C, H, W] features are flattened.
	if st, err := Embeddings(tensor.New(4, 2, 3, 3), Options{Tensor: "feature", SkipSpectrum: true}); err != nil || st.D != 18 {
		t.Errorf("4-d input: d %d, err %v", st.D, err)
	}
}

func TestVerdicts(t *testing.T) {
	nan := math.NaN()
	healthy := Stats{MO: 0.05, StdSqrtD: 0.9}
	point := Stats{MO: 0.99, StdSqrtD: 0.05}
	dims := Stats{MO: 0.3, StdSqrtD: 0.05}
	cases := []struct {
		name          string
		s             Stats
		knn, chance   float64
		collapsed, nc bool
	}{
		{"healthy", healthy, nan, nan, false, false},
		{"healthy learns", healthy, 0.6, 0.1, false, false},
		{"healthy at chance", healthy, 0.11, 0.1, false, true},
		{"point", point, nan, nan, true, false},
		{"point at chance", point, 0.1, 0.1, true, false},
		{"point but kNN fine", point, 0.5, 0.1, false, false},
		{"std only", dims, -1, 0.1, true, false},
	}
	for _, c := range cases {
		got, why := Collapsed(c.s, c.knn, c.chance)
		if got != c.collapsed {
			t.Errorf("%s: Collapsed = %v (%s)", c.name, got, why)
		}
		nc, why := NotConverged(c.s, c.knn, c.chance)
		if nc != c.nc {
			t.Errorf("%s: NotConverged = %v (%s)", c.name, nc, why)
		}
	}
}
