package decompose

import (
	"math"

	"github.com/sslrun/sslrun/core/tensor"
)

// GradStats are the gradient metrics of one tensor; see the package doc for
// the exact definitions.
type GradStats struct {
	// N is the number of rows, D the number of channels.
	N, D int
	// Options the statistics were computed with (for the context).
	Options Options

	Norm, CenterCoef, CenterCos, CenterNorm, ResidualNorm  float64
	CenterShare, DecenterShare, CollapseShare, DecorrShare float64
}

// Metrics returns the gradient metrics as database rows.
func (s *GradStats) Metrics() []Metric {
	ctx := s.Options.context(s.N)
	return []Metric{
		{"grad_norm", s.Norm, ctx},
		{"grad_center_coef", s.CenterCoef, ctx},
		{"grad_center_cos", s.CenterCos, ctx},
		{"grad_center_norm", s.CenterNorm, ctx},
		{"grad_residual_norm", s.ResidualNorm, ctx},
		{"grad_center_share", s.CenterShare, ctx},
		{"grad_decenter_share", s.DecenterShare, ctx},
		{"grad_collapse_share", s.CollapseShare, ctx},
		{"grad_decorr_share", s.DecorrShare, ctx},
	}
}

// Gradient splits a gradient with a fresh Analyzer.
func Gradient(z, g *tensor.T, opts Options) (GradStats, error) { return New().Gradient(z, g, opts) }

// Gradient splits the gradient g acting on the rows of z (both [N, d, ...])
// into its part along the batch centre of the normalized z and the rest. By
// default g is dL/dz on the raw z and is converted to the tangential
// gradient on Z = z/||z|| (multiplied by ||z_m||); with opts.GradNormalized
// it is taken to act on Z already. The shares are NaN when g is zero.
func (a *Analyzer) Gradient(z, g *tensor.T, opts Options) (GradStats, error) {
	n, d, err := matrix("z", z, 1)
	if err != nil {
		return GradStats{}, err
	}
	if _, _, err := matrix("gradient", g, 1); err != nil {
		return GradStats{}, err
	}
	if err := sameShape(z, g, "z", "gradient"); err != nil {
		return GradStats{}, err
	}
	a.normalize(z.Data, n, d)
	a.center(n, d)
	a.u = grow(a.u, n*d)
	for m := range n {
		// u_m = -g_m on the normalized vector.
		scale := -1.0
		if !opts.GradNormalized {
			scale = -a.zn[m]
		}
		src, dst := g.Data[m*d:(m+1)*d], a.u[m*d:(m+1)*d]
		for i, v := range src {
			dst[i] = scale * float64(v)
		}
		if opts.GradNormalized && opts.GradTangential {
			zr := a.z[m*d : (m+1)*d]
			c := dot(dst, zr)
			for i, v := range zr {
				dst[i] -= c * v
			}
		}
	}
	return a.split(n, d, opts), nil
}

// split computes the centre/residual split of the rows of a.u along a.o.
func (a *Analyzer) split(n, d int, opts Options) GradStats {
	st := GradStats{N: n, D: d, Options: opts}
	mo := norm(a.o)
	inv := 0.0
	if mo > 0 {
		inv = 1 / mo
	}
	var sumU, sumU2, sumC, sumCos, sumAbsC, sumV, sumV2, dec2, col2 float64
	nz := 0
	for m := range n {
		row := a.u[m*d : (m+1)*d]
		c := dot(row, a.o) * inv
		u2 := dot(row, row)
		// ||v||^2 computed directly rather than as u2 - c^2, which cancels
		// when the gradient is almost along the centre.
		var v2 float64
		for i, x := range row {
			r := x - c*a.o[i]*inv
			v2 += r * r
		}
		un := math.Sqrt(u2)
		sumU += un
		sumU2 += u2
		sumC += c
		sumAbsC += math.Abs(c)
		sumV += math.Sqrt(v2)
		sumV2 += v2
		if c < 0 {
			dec2 += c * c
		} else {
			col2 += c * c
		}
		if un > 0 {
			sumCos += c / un
			nz++
		}
	}
	fn := float64(n)
	st.Norm = sumU / fn
	st.CenterCoef = sumC / fn
	st.CenterNorm = sumAbsC / fn
	st.ResidualNorm = sumV / fn
	st.CenterCos = math.NaN()
	if nz > 0 {
		st.CenterCos = sumCos / float64(nz)
	}
	st.CenterShare = (dec2 + col2) / sumU2
	st.DecenterShare = dec2 / sumU2
	st.CollapseShare = col2 / sumU2
	st.DecorrShare = sumV2 / sumU2
	return st
}
