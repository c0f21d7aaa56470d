package decompose

import (
	"math"

	"github.com/sslrun/sslrun/core/tensor"
)

// ExtraStats are the extra-gradient metrics of a predictor method; see the
// package doc for the exact definitions.
type ExtraStats struct {
	// N is the number of rows, D the number of channels.
	N, D int
	// Options the statistics were computed with (for the context).
	Options Options

	Eta, Cos, OENorm, RENorm, OPNorm float64
	// OE and OP are o_e and o_p (length D); nil for ExtraGradientPair,
	// whose scalars average two directions.
	OE, OP []float64
}

// Metrics returns the extra-gradient metrics as database rows.
func (s *ExtraStats) Metrics() []Metric {
	ctx := s.Options.context(s.N)
	return []Metric{
		{"extra_eta", s.Eta, ctx},
		{"extra_cos", s.Cos, ctx},
		{"extra_oe_norm", s.OENorm, ctx},
		{"extra_re_norm", s.RENorm, ctx},
		{"extra_op_norm", s.OPNorm, ctx},
	}
}

// ExtraGradient decomposes G_e = Z_b - P_b with a fresh Analyzer.
func ExtraGradient(zb, pb *tensor.T, opts Options) (ExtraStats, error) {
	return New().ExtraGradient(zb, pb, opts)
}

// ExtraGradient decomposes the extra gradient G_e = Z_b - P_b of the target
// view b (zb the projector and pb the predictor outputs, both raw [N, d, ...])
// into o_e and r_e and fits o_e ~ eta * o_p. Eta and Cos are NaN when o_p
// (or o_e, for Cos) is zero.
func (a *Analyzer) ExtraGradient(zb, pb *tensor.T, opts Options) (ExtraStats, error) {
	n, d, err := matrix("z_b", zb, 1)
	if err != nil {
		return ExtraStats{}, err
	}
	if _, _, err := matrix("p_b", pb, 1); err != nil {
		return ExtraStats{}, err
	}
	if err := sameShape(zb, pb, "z_b", "p_b"); err != nil {
		return ExtraStats{}, err
	}
	// a.z holds Z_b, a.u P_b and then G_e; a.o is o_p, a.acc o_e.
	a.normalize(zb.Data, n, d)
	a.u = grow(a.u, n*d)
	a.rowA = grow(a.rowA, n)
	normalizeInto(a.u, a.rowA, pb.Data, n, d)
	a.center(n, d) // o_z, overwritten below
	a.o = grow(a.o, d)
	meanRows(a.o, a.u, n, d)
	for i, v := range a.z[:n*d] {
		a.u[i] = v - a.u[i]
	}
	a.acc = grow(a.acc, d)
	meanRows(a.acc, a.u, n, d)
	oe, op := a.acc, a.o
	var sumR float64
	for m := range n {
		var s float64
		for i, v := range a.u[m*d : (m+1)*d] {
			r := v - oe[i]
			s += r * r
		}
		sumR += math.Sqrt(s)
	}
	st := ExtraStats{N: n, D: d, Options: opts}
	ep, pp := dot(oe, op), dot(op, op)
	st.OENorm, st.OPNorm = norm(oe), math.Sqrt(pp)
	st.RENorm = sumR / float64(n)
	st.Eta, st.Cos = math.NaN(), math.NaN()
	if pp > 0 {
		st.Eta = ep / pp
		if st.OENorm > 0 {
			st.Cos = ep / (st.OENorm * st.OPNorm)
		}
	}
	st.OE = append([]float64(nil), oe...)
	st.OP = append([]float64(nil), op...)
	return st, nil
}

// ExtraGradientPair averages ExtraGradient over the two directions of a
// symmetric loss: (z2, p2) is the target side of view 1's prediction and
// (z1, p1) that of view 2's.
func ExtraGradientPair(z1, z2, p1, p2 *tensor.T, opts Options) (ExtraStats, error) {
	return New().ExtraGradientPair(z1, z2, p1, p2, opts)
}

// ExtraGradientPair averages ExtraGradient over the two directions of a
// symmetric loss: (z2, p2) is the target side of view 1's prediction and
// (z1, p1) that of view 2's.
func (a *Analyzer) ExtraGradientPair(z1, z2, p1, p2 *tensor.T, opts Options) (ExtraStats, error) {
	s1, err := a.ExtraGradient(z2, p2, opts)
	if err != nil {
		return ExtraStats{}, err
	}
	s2, err := a.ExtraGradient(z1, p1, opts)
	if err != nil {
		return ExtraStats{}, err
	}
	return ExtraStats{
		N: s1.N, D: s1.D, Options: opts,
		Eta:    (s1.Eta + s2.Eta) / 2,
		Cos:    (s1.Cos + s2.Cos) / 2,
		OENorm: (s1.OENorm + s2.OENorm) / 2,
		RENorm: (s1.RENorm + s2.RENorm) / 2,
		OPNorm: (s1.OPNorm + s2.OPNorm) / 2,
	}, nil
}
