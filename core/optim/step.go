package optim

import (
	"math"

	"github.com/sslrun/sslrun/core/parallel"
)

// Step applies one update to every parameter using the gradients currently
// in Param.Grad. lr is the scheduled learning rate; each group turns it into
// its own (Group.LR: scaled, or fixed for Static groups). Step does not
// allocate and does not clear gradients (call ZeroGrad).
//
// Arithmetic follows PyTorch: element-wise updates in float32 with the
// hyperparameters rounded to float32, in the same operation order as the
// torch kernels; LARS norms are accumulated in float64 over fixed-size
// chunks, so results do not depend on the number of threads.
func (o *Optimizer) Step(lr float64) {
	o.steps++
	if o.alg == LARS {
		o.run(&o.normT)
	}
	t := float64(o.steps)
	for si := range o.slots {
		s := &o.slots[si]
		g := &o.groups[s.group]
		glr := g.LR(lr)
		s.lr = float32(glr)
		s.wdStep, s.scale = float32(s.wd), 1
		switch o.alg {
		case LARS:
			s.wdStep = 0
			if !s.adapt {
				break
			}
			var p2, g2 float64
			for c := s.c0; c < s.c1; c++ {
				p2 += o.norms[2*c]
				g2 += o.norms[2*c+1]
			}
			pn, gn := math.Sqrt(p2), math.Sqrt(g2)
			if pn == 0 || gn == 0 {
				break
			}
			trust := g.Eta * pn / (gn + pn*s.wd + g.Eps)
			if g.ClipLR {
				trust = min(trust/glr, 1)
			}
			s.wdStep, s.scale = float32(s.wd), float32(trust)
		case AdamW:
			// torch: param.mul_(1 - lr*wd); step_size = lr/bc1;
			// denom = sqrt(v)/sqrt(bc2) + eps, scalars computed in float64.
			s.decay = float32(1 - glr*s.wd)
			s.stepSize = float32(glr / (1 - math.Pow(g.Beta1, t)))
			s.bc2sqr = float32(math.Sqrt(1 - math.Pow(g.Beta2, t)))
		}
	}
	o.run(&o.updT)
}

// SetParallel makes Step split large updates across core/parallel's
// workers (off by default). The update is memory-bound: on the shared
// 2-core development machine two threads were slower than one (see the
// package benchmarks), so turn it on only where a measurement says it pays.
// Results are bit-identical either way.
func (o *Optimizer) SetParallel(on bool) { o.par = on }

// run executes a chunk task, in parallel when enabled and the parameters
// are large enough for it to pay.
func (o *Optimizer) run(t parallel.Task) {
	if !o.par || o.total < parallelMin {
		t.Do(0, len(o.chunks))
		return
	}
	parallel.Run(len(o.chunks), 1, t)
}

// normTask computes, per chunk, the sums of squares of the parameter and of
// its gradient for LARS-adapted slots.
type normTask struct{ o *Optimizer }

// Do implements parallel.Task over chunk indices.
func (t *normTask) Do(lo, hi int) {
	o := t.o
	for c := lo; c < hi; c++ {
		ch := o.chunks[c]
		s := &o.slots[ch.slot]
		if !s.adapt {
			continue
		}
		o.norms[2*c] = sumSquares(s.p.Value[ch.lo:ch.hi])
		o.norms[2*c+1] = sumSquares(s.p.Grad[ch.lo:ch.hi])
	}
}

// updateTask applies the update to each chunk.
type updateTask struct{ o *Optimizer }

// Do implements parallel.Task over chunk indices.
func (t *updateTask) Do(lo, hi int) {
	o := t.o
	first := o.steps == 1
	for c := lo; c < hi; c++ {
		ch := o.chunks[c]
		s := &o.slots[ch.slot]
		g := &o.groups[s.group]
		p, gr := s.p.Value[ch.lo:ch.hi], s.p.Grad[ch.lo:ch.hi]
		switch o.alg {
		case SGD, LARS:
			var buf []float32
			if s.buf != nil {
				buf = s.buf[ch.lo:ch.hi]
			}
			sgdUpdate(p, gr, buf, s.wdStep, s.scale, s.lr, float32(g.Momentum),
				float32(1-g.Dampening), first, g.Nesterov)
		case AdamW:
			adamwUpdate(p, gr, s.m[ch.lo:ch.hi], s.v[ch.lo:ch.hi], s.decay,
				float32(g.Beta1), float32(1-g.Beta1), float32(g.Beta2), float32(1-g.Beta2),
				s.stepSize, s.bc2sqr, float32(g.Eps))
		}
	}
}

// sumSquares returns sum x[i]^2 accumulated in float64 on four lanes.
func sumSquares(x []float32) float64 {
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(x); i += 4 {
		a, b, c, d := float64(x[i]), float64(x[i+1]), float64(x[i+2]), float64(x[i+3])
		s0 += a * a
		s1 += b * b
		s2 += c * c
		s3 += d * d
	}
	for ; i < len(x); i++ {
		a := float64(x[i])
		s0 += a * a
	}
	return (s0 + s1) + (s2 + s3)
}

// sgdUpdate is the SGD / LARS element update with d = (g + wd*p) * scale:
// torch.optim.SGD when scale is 1, solo-learn's LARS otherwise (with wd = 0,
// scale = 1 for parameters it does not adapt). buf is nil without momentum;
// first marks the step that initializes the buffer to d.
func sgdUpdate(p, g, buf []float32, wd, scale, lr, mu, damp1 float32, first, nesterov bool) {
	g = g[:len(p)]
	if buf == nil {
		for i, pi := range p {
			d := (g[i] + wd*pi) * scale
			p[i] = pi - lr*d
		}
		return
	}
	buf = buf[:len(p)]
	switch {
	case first && nesterov:
		for i, pi := range p {
			d := (g[i] + wd*pi) * scale
			buf[i] = d
			p[i] = pi - lr*(d+mu*d)
		}
	case first:
		for i, pi := range p {
			d := (g[i] + wd*pi) * scale
			buf[i] = d
			p[i] = pi - lr*d
		}
	case nesterov:
		for i, pi := range p {
			d := (g[i] + wd*pi) * scale
			b := mu*buf[i] + damp1*d
			buf[i] = b
			p[i] = pi - lr*(d+mu*b)
		}
	default:
		for i, pi := range p {
			d := (g[i] + wd*pi) * scale
			b := mu*buf[i] + damp1*d
			buf[i] = b
			p[i] = pi - lr*b
		}
	}
}

// adamwUpdate is torch.optim.AdamW's single-tensor update (amsgrad off).
func adamwUpdate(p, g, m, v []float32, decay, b1, omb1, b2, omb2, stepSize, bc2sqrt, eps float32) {
	g, m, v = g[:len(p)], m[:len(p)], v[:len(p)]
	for i, pi := range p {
		gi := g[i]
		mi := m[i]*b1 + omb1*gi
		vi := v[i]*b2 + omb2*gi*gi
		m[i], v[i] = mi, vi
		denom := float32(math.Sqrt(float64(vi)))/bc2sqrt + eps
		p[i] = pi*decay - stepSize*(mi/denom)
	}
}
