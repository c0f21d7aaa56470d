package decompose

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/lapack"
	"gonum.org/v1/gonum/lapack/lapack64"

	"github.com/sslrun/sslrun/core/parallel"
	"github.com/sslrun/sslrun/core/tensor"
)

// normEps is F.normalize's default eps: rows are divided by max(||x||, eps).
const normEps = 1e-12

// Analyzer holds the float64 scratch buffers of the analyses so that
// repeated calls with the same shapes allocate only their results. It is not
// safe for concurrent use. The zero value is ready to use.
type Analyzer struct {
	z     []float64 // [N, d] normalized rows of the first input
	zn    []float64 // [N] norms of the first input's rows
	u     []float64 // [N, d] second input (gradient, P_b)
	o     []float64 // [d] centre
	acc   []float64 // [d] per-channel accumulator
	rowA  []float64 // [N] per-row scratch
	gramZ []float64 // [k, k], k = min(N, d)
	gramR []float64 // [k, k]

	gram gramTask  // N x N Gram on the worker pool
	eig  eigenTask // the two eigen-decompositions, one per worker
}

// New returns an Analyzer.
func New() *Analyzer { return &Analyzer{} }

// grow returns buf resized to n, reallocating only if it is too small.
func grow(buf []float64, n int) []float64 {
	if cap(buf) < n {
		return make([]float64, n)
	}
	return buf[:n]
}

// Stats are the embedding metrics of one tensor; see the package doc for
// the exact definitions.
type Stats struct {
	// N is the number of rows, D the number of channels.
	N, D int
	// Options the statistics were computed with (for the context).
	Options Options

	MO, MR, IdentityErr, NoiseFloor, MOSqrtN float64
	Std, StdSqrtD, OffDiagCov                float64
	// EffRank and EffRankResidual are NaN when the spectrum was skipped.
	EffRank, EffRankResidual float64
	// Spectrum and ResidualSpectrum are the singular values of Z and of
	// r = Z - o, descending, of length min(N, D); nil when skipped.
	Spectrum, ResidualSpectrum []float64
}

// Metrics returns the scalar metrics as database rows.
func (s *Stats) Metrics() []Metric {
	ctx := s.Options.context(s.N)
	out := []Metric{
		{"m_o", s.MO, ctx},
		{"m_r", s.MR, ctx},
		{"identity_err", s.IdentityErr, ctx},
		{"noise_floor", s.NoiseFloor, ctx},
		{"m_o_sqrt_n", s.MOSqrtN, ctx},
		{"std", s.Std, ctx},
		{"std_sqrt_d", s.StdSqrtD, ctx},
		{"offdiag_cov", s.OffDiagCov, ctx},
	}
	if s.Spectrum != nil {
		out = append(out, Metric{"eff_rank", s.EffRank, ctx}, Metric{"eff_rank_residual", s.EffRankResidual, ctx})
	}
	return out
}

// Arrays returns the spectra as database arrays (none when skipped).
func (s *Stats) Arrays() []Array {
	if s.Spectrum == nil {
		return nil
	}
	ctx := s.Options.context(s.N)
	return []Array{
		{"spectrum", []int{len(s.Spectrum)}, s.Spectrum, ctx},
		{"residual_spectrum", []int{len(s.ResidualSpectrum)}, s.ResidualSpectrum, ctx},
	}
}

// Embeddings computes the embedding metrics of x with a fresh Analyzer.
func Embeddings(x *tensor.T, opts Options) (Stats, error) { return New().Embeddings(x, opts) }

// Embeddings computes the embedding metrics of x, shape [N, d, ...] with
// N >= 2 (the unbiased std needs two rows).
func (a *Analyzer) Embeddings(x *tensor.T, opts Options) (Stats, error) {
	n, d, err := matrix("embeddings", x, 2)
	if err != nil {
		return Stats{}, err
	}
	a.normalize(x.Data, n, d)
	a.center(n, d)
	st := Stats{N: n, D: d, Options: opts, EffRank: math.NaN(), EffRankResidual: math.NaN()}
	fn, fd := float64(n), float64(d)

	// Residual norms and per-channel sums of squares in one pass over r.
	acc := grow(a.acc, d)
	a.acc = acc
	clear(acc)
	var sumR, sumR2 float64
	for m := range n {
		row := a.z[m*d : (m+1)*d]
		var s float64
		for i, v := range row {
			r := v - a.o[i]
			s += r * r
			acc[i] += r * r
		}
		sumR2 += s
		sumR += math.Sqrt(s)
	}
	mo := norm(a.o)
	st.MO = mo
	st.MR = sumR / fn
	st.IdentityErr = math.Abs(mo*mo + sumR2/fn - 1)
	st.NoiseFloor = 1 / math.Sqrt(fn)
	st.MOSqrtN = mo * math.Sqrt(fn)
	var sumStd, sumVar2 float64
	for _, s := range acc {
		v := s / (fn - 1)
		sumStd += math.Sqrt(v)
		sumVar2 += v * v
	}
	st.Std = sumStd / fd
	st.StdSqrtD = st.Std * math.Sqrt(fd)

	k := a.grams(n, d)
	// ||C||_F^2 from the residual Gram (r^T r or r r^T: same Frobenius norm)
	// minus the diagonal, which is the per-channel variance.
	var fro float64
	for i := range k {
		row := a.gramR[i*k : (i+1)*k]
		fro += row[i] * row[i]
		for _, v := range row[i+1:] {
			fro += 2 * v * v
		}
	}
	off := fro/((fn-1)*(fn-1)) - sumVar2
	if off < 0 { // round-off when C is (nearly) diagonal
		off = 0
	}
	st.OffDiagCov = off / fd

	if !opts.SkipSpectrum {
		if st.Spectrum, st.ResidualSpectrum, err = a.spectra(k); err != nil {
			return Stats{}, err
		}
		st.EffRank = effRank(st.Spectrum)
		st.EffRankResidual = effRank(st.ResidualSpectrum)
	}
	return st, nil
}

// normalize writes the rows of x divided by max(||x_m||, eps) into a.z and
// their norms into a.zn.
func (a *Analyzer) normalize(x []float32, n, d int) {
	a.z = grow(a.z, n*d)
	a.zn = grow(a.zn, n)
	normalizeInto(a.z, a.zn, x, n, d)
}

func normalizeInto(dst, norms []float64, x []float32, n, d int) {
	for m := range n {
		src := x[m*d : (m+1)*d]
		var s float64
		for _, v := range src {
			s += float64(v) * float64(v)
		}
		nr := math.Sqrt(s)
		norms[m] = nr
		inv := 1 / math.Max(nr, normEps)
		row := dst[m*d : (m+1)*d]
		for i, v := range src {
			row[i] = float64(v) * inv
		}
	}
}

// center writes the mean of the rows of a.z into a.o.
func (a *Analyzer) center(n, d int) {
	a.o = grow(a.o, d)
	meanRows(a.o, a.z, n, d)
}

func meanRows(dst, x []float64, n, d int) {
	clear(dst)
	for m := range n {
		for i, v := range x[m*d : (m+1)*d] {
			dst[i] += v
		}
	}
	inv := 1 / float64(n)
	for i := range dst {
		dst[i] *= inv
	}
}

// grams fills the upper triangles of a.gramZ (Gram of Z) and a.gramR (Gram
// of r = Z - o), both k x k with k = min(N, d): Z^T Z and r^T r = Z^T Z -
// N o o^T when d <= N, Z Z^T and its double centering otherwise. It returns k.
func (a *Analyzer) grams(n, d int) int {
	k := min(n, d)
	a.gramZ = grow(a.gramZ, k*k)
	a.gramR = grow(a.gramR, k*k)
	zm := blas64.General{Rows: n, Cols: d, Stride: d, Data: a.z[:n*d]}
	gz := blas64.Symmetric{Uplo: blas.Upper, N: k, Stride: k, Data: a.gramZ}
	if d <= n {
		blas64.Syrk(blas.Trans, 1, zm, 0, gz)
		fn := float64(n)
		for i := range k {
			oi := fn * a.o[i]
			for j := i; j < k; j++ {
				a.gramR[i*k+j] = a.gramZ[i*k+j] - oi*a.o[j]
			}
		}
		return k
	}
	a.gram = gramTask{z: a.z, g: a.gramZ, k: k, d: d}
	parallel.Run((k+1)/2, 4, &a.gram)
	a.gram = gramTask{}
	// (r r^T)_mn = G_mn - <Z_m,o> - <Z_n,o> + ||o||^2.
	a.rowA = grow(a.rowA, n)
	for m := range n {
		a.rowA[m] = dot(a.z[m*d:(m+1)*d], a.o)
	}
	oo := dot(a.o, a.o)
	for i := range k {
		for j := i; j < k; j++ {
			a.gramR[i*k+j] = a.gramZ[i*k+j] - a.rowA[i] - a.rowA[j] + oo
		}
	}
	return k
}

// gramTask fills the upper triangle of g = z z^T (z is [k, d]). Index p
// of the pool's range is the pair of rows p and k-1-p, so that every index
// costs the same (row i has k-i entries) and contiguous chunks balance.
type gramTask struct {
	z, g []float64
	k, d int
}

// Do implements parallel.Task.
func (t *gramTask) Do(lo, hi int) {
	for p := lo; p < hi; p++ {
		t.row(p)
		if q := t.k - 1 - p; q != p {
			t.row(q)
		}
	}
}

func (t *gramTask) row(i int) {
	d := t.d
	zi := blas64.Vector{N: d, Inc: 1, Data: t.z[i*d : (i+1)*d]}
	out := t.g[i*t.k : (i+1)*t.k]
	for j := i; j < t.k; j++ {
		out[j] = blas64.Dot(zi, blas64.Vector{N: d, Inc: 1, Data: t.z[j*d : (j+1)*d]})
	}
}

// eigenTask computes the eigenvalues of the Gram matrices of Z (index 0) and
// r (index 1), one per worker, each with its own LAPACK workspace.
type eigenTask struct {
	g    [2][]float64
	w    [2][]float64
	work [2][]float64
	ok   [2]bool
	k    int
}

// Do implements parallel.Task.
func (t *eigenTask) Do(lo, hi int) {
	for i := lo; i < hi; i++ {
		sym := blas64.Symmetric{Uplo: blas.Upper, N: t.k, Stride: t.k, Data: t.g[i]}
		t.w[i] = grow(t.w[i], t.k)
		if len(t.work[i]) < 1 {
			t.work[i] = make([]float64, 1)
		}
		lapack64.Syev(lapack.EVNone, sym, t.w[i], t.work[i], -1)
		if need := int(t.work[i][0]); len(t.work[i]) < need {
			t.work[i] = make([]float64, need)
		}
		t.ok[i] = lapack64.Syev(lapack.EVNone, sym, t.w[i], t.work[i], len(t.work[i]))
	}
}

// spectra returns the singular values (descending) of Z and of r from the
// k x k Gram matrices in a.gramZ and a.gramR, which are destroyed.
func (a *Analyzer) spectra(k int) (s, sr []float64, err error) {
	t := &a.eig
	t.g, t.k = [2][]float64{a.gramZ, a.gramR}, k
	parallel.Run(2, 1, t)
	t.g = [2][]float64{}
	var out [2][]float64
	for i := range out {
		if !t.ok[i] {
			return nil, nil, fmt.Errorf("decompose: eigen-decomposition of a %dx%d Gram matrix did not converge", k, k)
		}
		v := make([]float64, k)
		for j, e := range t.w[i] { // Syev returns them ascending
			v[k-1-j] = math.Sqrt(math.Max(e, 0))
		}
		out[i] = v
	}
	return out[0], out[1], nil
}

// effRank is RankMe's exp(entropy(s / sum s)) without its 1e-7 smoothing.
func effRank(s []float64) float64 {
	var sum float64
	for _, v := range s {
		sum += v
	}
	if sum == 0 {
		return 0
	}
	var h float64
	for _, v := range s {
		if p := v / sum; p > 0 {
			h -= p * math.Log(p)
		}
	}
	return math.Exp(h)
}

func dot(a, b []float64) float64 {
	var s float64
	for i, v := range a {
		s += v * b[i]
	}
	return s
}

func norm(a []float64) float64 { return math.Sqrt(dot(a, a)) }
