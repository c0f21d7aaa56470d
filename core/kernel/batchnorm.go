package kernel

import (
	"fmt"
	"math"

	"github.com/sslrun/sslrun/core/parallel"
)

// Batch normalization over x viewed as [n, c, hw]: BatchNorm1d on [N, C]
// is hw = 1, BatchNorm2d on [N, C, H, W] is hw = H*W. Statistics are per
// channel over the m = n*hw values of that channel, with PyTorch's
// semantics:
//
//   - training: y = (x - mean) * invstd * gamma + beta with the batch mean
//     and the biased variance, invstd = 1/sqrt(var + eps); the running
//     statistics become (1-momentum)*running + momentum*batch, where the
//     variance that enters running_var is the unbiased one, var*m/(m-1);
//   - evaluation: the same map with running_mean and running_var.
//
// Accuracy: every per-channel sum is accumulated in float64 (four partial
// sums to keep the adds pipelined). The variance is computed in one pass
// from sums of x - shift and (x - shift)^2, where shift is the channel's
// first value; shifting keeps E[d^2] - E[d]^2 free of the cancellation that
// the textbook one-pass formula suffers when |mean| >> std. Normalization
// computes (x - hi) - lo, with the float64 mean split into two float32s,
// rather than x*a + b, for the same reason. The backward pass recovers the
// exact mean from the float32 saved one (it sums x - mean anyway), so a
// channel with |mean| >> std does not see the saved mean's rounding error
// amplified by invstd.
//
// gamma and beta nil mean no affine transform (gamma = 1, beta = 0); then
// the backward functions take dgamma and dbeta nil too. Work is split over
// channels across core/parallel's workers; no call allocates in steady
// state.

// bnMode selects what a bnTask computes.
type bnMode int

const (
	bnTrain bnMode = iota
	bnEval
	bnBackward
	bnEvalBackward
)

// bnTask carries one batch-norm call's arguments to the workers; tasks are
// recycled through bnPool so that calls allocate nothing.
type bnTask struct {
	mode       bnMode
	n, c, hw   int
	x, y, dy   []float32
	dx         []float32
	gamma      []float32
	beta       []float32
	mean, inv  []float32 // saved batch mean and inverse std (training)
	rm, rv     []float32 // running mean and variance
	dgamma     []float32
	dbeta      []float32
	momentum   float64
	eps        float64
	accumulate bool

	// relu fuses a ReLU after the normalization (training mode only);
	// coef holds each channel's bnMap, written by the forward pass and
	// read by the backward pass to recompute the ReLU's mask.
	relu bool
	coef []float32
}

// bnMap is one channel's normalization z = ((x-hi)-lo)*a + b in float32,
// laid out as bn_amd64.s reads it.
type bnMap struct{ a, b, hi, lo float32 }

// z maps x. The conversion keeps the compiler from fusing the multiply
// and the add, so z matches the assembly loops bit for bit and a backward
// pass recomputes exactly the forward's ReLU mask.
func (m *bnMap) z(x float32) float32 { return float32(((x-m.hi)-m.lo)*m.a) + m.b }

// mapOf returns channel ch's bnMap from a coef buffer.
func mapOf(coef []float32, ch int) bnMap {
	c := coef[4*ch : 4*ch+4 : 4*ch+4]
	return bnMap{c[0], c[1], c[2], c[3]}
}

// setMap stores m as channel ch's bnMap in a coef buffer.
func setMap(coef []float32, ch int, m bnMap) {
	c := coef[4*ch : 4*ch+4 : 4*ch+4]
	c[0], c[1], c[2], c[3] = m.a, m.b, m.hi, m.lo
}

// bnDx holds one channel's backward map dx = a*g + b*((x-hi)-lo) + c.
type bnDx struct{ a, b, c, hi, lo float32 }

var bnPool = parallel.NewFreeList(16, func() *bnTask { return new(bnTask) })

func (t *bnTask) run() {
	m := t.n * t.hw
	grain := max(1, (1<<14)/max(1, m))
	parallel.RunDynamic(t.c, grain, t)
	*t = bnTask{}
	bnPool.Put(t)
}

func bnCheck(n, c, hw int) {
	if n <= 0 || c <= 0 || hw <= 0 {
		panic(fmt.Sprintf("kernel: batch norm sizes n=%d c=%d hw=%d must be positive", n, c, hw))
	}
}

func needLen(name string, s []float32, n int, optional bool) {
	if s == nil && optional {
		return
	}
	if len(s) < n {
		panic(fmt.Sprintf("kernel: %s has %d elements, need %d", name, len(s), n))
	}
}

// BatchNormTrain runs training-mode batch normalization: y (overwritten)
// from x, the batch mean and inverse standard deviation written to saveMean
// and saveInvStd (length c, needed by BatchNormBackward), and runMean/runVar
// updated in place with momentum (PyTorch's default is 0.1) unless they are
// nil. gamma and beta may be nil (no affine). eps is PyTorch's (1e-5 by
// default). y may alias x. It panics when n*hw < 2, where PyTorch raises
// "Expected more than 1 value per channel when training".
func BatchNormTrain(n, c, hw int, x, gamma, beta, y, saveMean, saveInvStd, runMean, runVar []float32, momentum, eps float32) {
	checkTrainArgs(n, c, hw, x, gamma, beta, y, saveMean, saveInvStd, runMean, runVar)
	t := bnPool.Get()
	*t = bnTask{mode: bnTrain, n: n, c: c, hw: hw, x: x, y: y, gamma: gamma, beta: beta,
		mean: saveMean, inv: saveInvStd, rm: runMean, rv: runVar,
		momentum: float64(momentum), eps: float64(eps)}
	t.run()
}

// checkTrainArgs panics, as BatchNormTrain documents, on shapes or
// buffers a training-mode batch norm cannot use.
func checkTrainArgs(n, c, hw int, x, gamma, beta, y, saveMean, saveInvStd, runMean, runVar []float32) {
	bnCheck(n, c, hw)
	if n*hw < 2 {
		panic(fmt.Sprintf("kernel: batch norm training needs more than 1 value per channel, got n=%d hw=%d", n, hw))
	}
	needLen("x", x, n*c*hw, false)
	needLen("y", y, n*c*hw, false)
	needLen("gamma", gamma, c, true)
	needLen("beta", beta, c, true)
	needLen("saveMean", saveMean, c, false)
	needLen("saveInvStd", saveInvStd, c, false)
	needLen("runMean", runMean, c, true)
	needLen("runVar", runVar, c, true)
}

// BatchNormReLUTrain is BatchNormTrain followed by a ReLU, y =
// max(BN(x), 0), computed in the same pass over y. coef (length 4*c)
// receives per-channel constants of the normalization that
// BatchNormReLUBackward needs to recompute exactly which outputs the ReLU
// zeroed, so that neither the pre-activation nor a mask has to be stored.
// The other arguments are BatchNormTrain's, but y must not alias x: the
// backward pass reads x.
func BatchNormReLUTrain(n, c, hw int, x, gamma, beta, y, saveMean, saveInvStd, coef, runMean, runVar []float32, momentum, eps float32) {
	checkTrainArgs(n, c, hw, x, gamma, beta, y, saveMean, saveInvStd, runMean, runVar)
	needLen("coef", coef, 4*c, false)
	t := bnPool.Get()
	*t = bnTask{mode: bnTrain, n: n, c: c, hw: hw, x: x, y: y, gamma: gamma, beta: beta,
		mean: saveMean, inv: saveInvStd, rm: runMean, rv: runVar,
		momentum: float64(momentum), eps: float64(eps), relu: true, coef: coef}
	t.run()
}

// BatchNormReLUBackward is the backward pass of BatchNormReLUTrain: dy is
// the gradient of the ReLU's output, masked here where the ReLU passed
// its input (BN(x) > 0, or NaN, as ReLUBackward does), and then taken
// through the batch norm as BatchNormBackward does. x, gamma, saveMean,
// saveInvStd and coef are the forward's. As in BatchNormBackward, dx may
// alias dy only when accumulate is false.
func BatchNormReLUBackward(n, c, hw int, x, dy, gamma, saveMean, saveInvStd, coef, dx, dgamma, dbeta []float32, accumulate bool) {
	bnCheck(n, c, hw)
	needLen("x", x, n*c*hw, false)
	needLen("dy", dy, n*c*hw, false)
	needLen("dx", dx, n*c*hw, false)
	needLen("gamma", gamma, c, true)
	needLen("saveMean", saveMean, c, false)
	needLen("saveInvStd", saveInvStd, c, false)
	needLen("coef", coef, 4*c, false)
	needLen("dgamma", dgamma, c, true)
	needLen("dbeta", dbeta, c, true)
	t := bnPool.Get()
	*t = bnTask{mode: bnBackward, n: n, c: c, hw: hw, x: x, dy: dy, dx: dx, gamma: gamma,
		mean: saveMean, inv: saveInvStd, dgamma: dgamma, dbeta: dbeta, accumulate: accumulate,
		relu: true, coef: coef}
	t.run()
}

// BatchNormEval runs evaluation-mode batch normalization with the running
// statistics: y = (x - runMean)/sqrt(runVar + eps)*gamma + beta, y
// overwritten (it may alias x). gamma and beta may be nil.
func BatchNormEval(n, c, hw int, x, gamma, beta, runMean, runVar, y []float32, eps float32) {
	bnCheck(n, c, hw)
	needLen("x", x, n*c*hw, false)
	needLen("y", y, n*c*hw, false)
	needLen("gamma", gamma, c, true)
	needLen("beta", beta, c, true)
	needLen("runMean", runMean, c, false)
	needLen("runVar", runVar, c, false)
	t := bnPool.Get()
	*t = bnTask{mode: bnEval, n: n, c: c, hw: hw, x: x, y: y, gamma: gamma, beta: beta,
		rm: runMean, rv: runVar, eps: float64(eps)}
	t.run()
}

// BatchNormBackward is the backward pass of BatchNormTrain. From the
// forward input x, the output gradient dy and the saved batch statistics it
// computes
//
//	dbeta  = sum(dy)
//	dgamma = sum(dy * xhat),  xhat = (x - mean)*invstd
//	dx     = gamma*invstd/m * (m*dy - dbeta - xhat*dgamma)
//
// per channel (gamma = 1 when nil). dgamma and dbeta may be nil (no affine,
// or not wanted). With accumulate false dx, dgamma and dbeta are
// overwritten; with accumulate true the gradients are added to them. dx may
// alias dy only when accumulate is false.
func BatchNormBackward(n, c, hw int, x, dy, gamma, saveMean, saveInvStd, dx, dgamma, dbeta []float32, accumulate bool) {
	bnCheck(n, c, hw)
	needLen("x", x, n*c*hw, false)
	needLen("dy", dy, n*c*hw, false)
	needLen("dx", dx, n*c*hw, false)
	needLen("gamma", gamma, c, true)
	needLen("saveMean", saveMean, c, false)
	needLen("saveInvStd", saveInvStd, c, false)
	needLen("dgamma", dgamma, c, true)
	needLen("dbeta", dbeta, c, true)
	t := bnPool.Get()
	*t = bnTask{mode: bnBackward, n: n, c: c, hw: hw, x: x, dy: dy, dx: dx, gamma: gamma,
		mean: saveMean, inv: saveInvStd, dgamma: dgamma, dbeta: dbeta, accumulate: accumulate}
	t.run()
}

// BatchNormEvalBackward is the backward pass of BatchNormEval, an affine
// map per channel: dx = dy*gamma/sqrt(runVar+eps), dbeta = sum(dy), dgamma
// = sum(dy*(x - runMean)/sqrt(runVar+eps)). x is only read for dgamma and
// may be nil when dgamma is nil. dx, dgamma and dbeta may each be nil (not
// wanted). Accumulate semantics are those of BatchNormBackward.
func BatchNormEvalBackward(n, c, hw int, x, dy, gamma, runMean, runVar []float32, eps float32, dx, dgamma, dbeta []float32, accumulate bool) {
	bnCheck(n, c, hw)
	needLen("dy", dy, n*c*hw, false)
	needLen("dx", dx, n*c*hw, true)
	needLen("gamma", gamma, c, true)
	needLen("runMean", runMean, c, false)
	needLen("runVar", runVar, c, false)
	needLen("dgamma", dgamma, c, true)
	needLen("dbeta", dbeta, c, true)
	if dgamma != nil {
		needLen("x", x, n*c*hw, false)
	}
	t := bnPool.Get()
	*t = bnTask{mode: bnEvalBackward, n: n, c: c, hw: hw, x: x, dy: dy, dx: dx, gamma: gamma,
		rm: runMean, rv: runVar, eps: float64(eps), dgamma: dgamma, dbeta: dbeta, accumulate: accumulate}
	t.run()
}

// bnBlock is how many channels the hw == 1 ([N, C]) paths handle at once:
// they walk the rows of a channel block so that memory is read
// sequentially, with per-channel accumulators on the stack.
const bnBlock = 128

// Do processes channels [lo, hi).
func (t *bnTask) Do(lo, hi int) {
	if t.hw == 1 {
		for cb := lo; cb < hi; cb += bnBlock {
			ce := min(hi, cb+bnBlock)
			switch t.mode {
			case bnTrain:
				t.trainRows(cb, ce)
			case bnEval:
				t.evalRows(cb, ce)
			case bnBackward:
				t.backwardRows(cb, ce)
			case bnEvalBackward:
				t.evalBackwardRows(cb, ce)
			}
		}
		return
	}
	for ch := lo; ch < hi; ch++ {
		switch t.mode {
		case bnTrain:
			t.trainChannel(ch)
		case bnEval:
			t.evalChannel(ch)
		case bnBackward:
			t.backwardChannel(ch)
		case bnEvalBackward:
			t.evalBackwardChannel(ch)
		}
	}
}

// seg returns channel ch's values of image i in buffer b.
func (t *bnTask) seg(b []float32, i, ch int) []float32 {
	return b[(i*t.c+ch)*t.hw:][:t.hw]
}

func opt(s []float32, i int, def float32) float32 {
	if s == nil {
		return def
	}
	return s[i]
}

// stats turns shifted sums into mean, biased variance and inverse std, and
// updates the running statistics.
func (t *bnTask) stats(ch int, shift, s1, s2 float64) (mean, inv float64) {
	m := float64(t.n * t.hw)
	d := s1 / m
	v := max(0, s2/m-d*d)
	mean = shift + d
	inv = 1 / math.Sqrt(v+t.eps)
	t.mean[ch] = float32(mean)
	t.inv[ch] = float32(inv)
	if t.rm != nil {
		t.rm[ch] = float32((1-t.momentum)*float64(t.rm[ch]) + t.momentum*mean)
	}
	if t.rv != nil {
		t.rv[ch] = float32((1-t.momentum)*float64(t.rv[ch]) + t.momentum*v*m/(m-1))
	}
	return mean, inv
}

func (t *bnTask) trainChannel(ch int) {
	shift := float64(t.x[ch*t.hw])
	var s1, s2 float64
	for i := 0; i < t.n; i++ {
		a, b := shiftedSums(t.seg(t.x, i, ch), shift)
		s1 += a
		s2 += b
	}
	mean, inv := t.stats(ch, shift, s1, s2)
	var m bnMap
	m.a = float32(inv * float64(opt(t.gamma, ch, 1)))
	m.hi, m.lo = split(mean)
	m.b = opt(t.beta, ch, 0)
	if t.relu {
		setMap(t.coef, ch, m)
	}
	for i := 0; i < t.n; i++ {
		normalize(t.seg(t.x, i, ch), t.seg(t.y, i, ch), &m, t.relu)
	}
}

// normalize sets y = m.z(x), or max(m.z(x), 0) with relu.
func normalize(x, y []float32, m *bnMap, relu bool) {
	y = y[:len(x)]
	if n := len(x) &^ 7; bnAsm && n > 0 {
		bnNormAVX(&x[0], &y[0], n, m, relu)
		x, y = x[n:], y[n:]
	}
	if relu {
		for k, v := range x {
			y[k] = max(m.z(v), 0)
		}
		return
	}
	for k, v := range x {
		y[k] = m.z(v)
	}
}

// split writes the float64 m as hi + lo in float32: (x - hi) - lo then
// centres a float32 x on m almost exactly (x - hi is exact when x is near
// m), where x - float32(m) would be off by up to half an ulp of m.
func split(m float64) (hi, lo float32) {
	hi = float32(m)
	return hi, float32(m - float64(hi))
}

// shiftedSums returns sum(x - shift) and sum((x - shift)^2) in float64.
// The loops consume x four (or two) elements at a time by reslicing, which
// lets the compiler drop the bounds checks.
func shiftedSums(x []float32, shift float64) (s1, s2 float64) {
	var a0, a1, a2, a3, b0, b1, b2, b3 float64
	if n := len(x) &^ 7; bnAsm && n > 0 {
		a0, b0 = bnSumsAVX(&x[0], n, shift)
		x = x[n:]
	}
	for len(x) >= 4 {
		d0 := float64(x[0]) - shift
		d1 := float64(x[1]) - shift
		d2 := float64(x[2]) - shift
		d3 := float64(x[3]) - shift
		a0 += d0
		a1 += d1
		a2 += d2
		a3 += d3
		b0 += d0 * d0
		b1 += d1 * d1
		b2 += d2 * d2
		b3 += d3 * d3
		x = x[4:]
	}
	for _, v := range x {
		d := float64(v) - shift
		a0 += d
		b0 += d * d
	}
	return (a0 + a1) + (a2 + a3), (b0 + b1) + (b2 + b3)
}

// gradSums returns sum(dy) and sum(dy*(x - mean)) in float64.
func gradSums(dy, x []float32, mean float64) (s1, s2 float64) {
	s1, s2, _ = gradSums3(dy, x, mean)
	return s1, s2
}

// gradSums3 returns sum(dy), sum(dy*(x - mean)) and sum(x - mean) in
// float64.
func gradSums3(dy, x []float32, mean float64) (s1, s2, s3 float64) {
	x = x[:len(dy)]
	var a0, a1, b0, b1, c0, c1 float64
	if n := len(dy) &^ 7; bnAsm && n > 0 {
		a0, b0, c0 = bnGradSumsAVX(&dy[0], &x[0], n, mean, nil)
		dy, x = dy[n:], x[n:]
	}
	for len(dy) >= 2 && len(x) >= 2 {
		g0, g1 := float64(dy[0]), float64(dy[1])
		d0, d1 := float64(x[0])-mean, float64(x[1])-mean
		a0 += g0
		a1 += g1
		b0 += g0 * d0
		b1 += g1 * d1
		c0 += d0
		c1 += d1
		dy, x = dy[2:], x[2:]
	}
	for i, g := range dy {
		d := float64(x[i]) - mean
		a0 += float64(g)
		b0 += float64(g) * d
		c0 += d
	}
	return a0 + a1, b0 + b1, c0 + c1
}

// gradSumsReLU is gradSums3 with dy masked by the ReLU of m.z(x): the
// gradient only passes where !(z <= 0).
func gradSumsReLU(dy, x []float32, mean float64, m *bnMap) (s1, s2, s3 float64) {
	x = x[:len(dy)]
	if n := len(dy) &^ 7; bnAsm && n > 0 {
		s1, s2, s3 = bnGradSumsAVX(&dy[0], &x[0], n, mean, m)
		dy, x = dy[n:], x[n:]
	}
	for i, g := range dy {
		if m.z(x[i]) <= 0 {
			g = 0
		}
		d := float64(x[i]) - mean
		s1 += float64(g)
		s2 += float64(g) * d
		s3 += d
	}
	return s1, s2, s3
}

// backDx sets (or, with acc, adds to) dx = k.a*g + k.b*((x-k.hi)-k.lo) +
// k.c, where g is dy, or with m != nil dy masked as in gradSumsReLU.
func backDx(dx, dy, x []float32, k *bnDx, m *bnMap, acc bool) {
	dy, x = dy[:len(dx)], x[:len(dx)]
	if n := len(dx) &^ 7; bnAsm && n > 0 {
		bnDxAVX(&dx[0], &dy[0], &x[0], n, k, m, acc)
		dx, dy, x = dx[n:], dy[n:], x[n:]
	}
	a, b, c, hi, lo := k.a, k.b, k.c, k.hi, k.lo
	for i := range dx {
		g := dy[i]
		if m != nil && m.z(x[i]) <= 0 {
			g = 0
		}
		v := a*g + b*((x[i]-hi)-lo) + c
		if acc {
			dx[i] += v
		} else {
			dx[i] = v
		}
	}
}

func sum64(x []float32) float64 {
	var a0, a1, a2, a3 float64
	for len(x) >= 4 {
		a0 += float64(x[0])
		a1 += float64(x[1])
		a2 += float64(x[2])
		a3 += float64(x[3])
		x = x[4:]
	}
	for _, v := range x {
		a0 += float64(v)
	}
	return (a0 + a1) + (a2 + a3)
}

func (t *bnTask) evalChannel(ch int) {
	a := float32(float64(opt(t.gamma, ch, 1)) / math.Sqrt(float64(t.rv[ch])+t.eps))
	mf, b := t.rm[ch], opt(t.beta, ch, 0)
	for i := 0; i < t.n; i++ {
		y := t.seg(t.y, i, ch)
		for k, v := range t.seg(t.x, i, ch)[:len(y)] {
			y[k] = (v-mf)*a + b
		}
	}
}

// setOrAdd stores v into s[i], or adds it when accumulating; nil s is a
// gradient nobody wants.
func (t *bnTask) setOrAdd(s []float32, i int, v float64) {
	switch {
	case s == nil:
	case t.accumulate:
		s[i] += float32(v)
	default:
		s[i] = float32(v)
	}
}

func (t *bnTask) backwardChannel(ch int) {
	mean, inv := float64(t.mean[ch]), float64(t.inv[ch])
	var fm *bnMap
	if t.relu {
		m := mapOf(t.coef, ch)
		fm = &m
	}
	var sdy, sdyx, sx float64
	for i := 0; i < t.n; i++ {
		var a, b, c float64
		if fm != nil {
			a, b, c = gradSumsReLU(t.seg(t.dy, i, ch), t.seg(t.x, i, ch), mean, fm)
		} else {
			a, b, c = gradSums3(t.seg(t.dy, i, ch), t.seg(t.x, i, ch), mean)
		}
		sdy += a
		sdyx += b
		sx += c
	}
	m := float64(t.n * t.hw)
	mean, sdyx = refineMean(mean, m, sdy, sdyx, sx)
	t.setOrAdd(t.dbeta, ch, sdy)
	t.setOrAdd(t.dgamma, ch, sdyx*inv)
	k1 := float64(opt(t.gamma, ch, 1)) * inv
	// dx = k1*dy - k1*inv^2*sdyx/m * (x - mean) - k1*sdy/m
	k := bnDx{a: float32(k1), b: float32(-k1 * inv * inv * sdyx / m), c: float32(-k1 * sdy / m)}
	k.hi, k.lo = split(mean)
	for i := 0; i < t.n; i++ {
		backDx(t.seg(t.dx, i, ch), t.seg(t.dy, i, ch), t.seg(t.x, i, ch), &k, fm, t.accumulate)
	}
}

// refineMean undoes the rounding of the float32 saved mean: with sx =
// sum(x - mean) over the m values, the exact batch mean is mean + sx/m, and
// sum(dy*(x - exact)) = sdyx - (sx/m)*sdy. Without it a channel whose
// |mean| is large against its std would see the mean's half-ulp error
// amplified by invstd in xhat.
func refineMean(mean, m, sdy, sdyx, sx float64) (float64, float64) {
	d := sx / m
	return mean + d, sdyx - d*sdy
}

func (t *bnTask) evalBackwardChannel(ch int) {
	inv := 1 / math.Sqrt(float64(t.rv[ch])+t.eps)
	if t.dgamma != nil || t.dbeta != nil {
		var sdy, sdyx float64
		for i := 0; i < t.n; i++ {
			dy := t.seg(t.dy, i, ch)
			if t.dgamma != nil {
				a, b := gradSums(dy, t.seg(t.x, i, ch), float64(t.rm[ch]))
				sdy += a
				sdyx += b
			} else {
				sdy += sum64(dy)
			}
		}
		t.setOrAdd(t.dbeta, ch, sdy)
		t.setOrAdd(t.dgamma, ch, sdyx*inv)
	}
	if t.dx == nil {
		return
	}
	a := float32(float64(opt(t.gamma, ch, 1)) * inv)
	for i := 0; i < t.n; i++ {
		dx := t.seg(t.dx, i, ch)
		dy := t.seg(t.dy, i, ch)[:len(dx)]
		if t.accumulate {
			for k := range dx {
				dx[k] += a * dy[k]
			}
		} else {
			for k := range dx {
				dx[k] = a * dy[k]
			}
		}
	}
}

// The *Rows methods are the hw == 1 ([N, C]) versions for channels
// [cb, ce), ce-cb <= bnBlock: they read row segments x[i*c+cb : i*c+ce].

func (t *bnTask) trainRows(cb, ce int) {
	w := ce - cb
	var shift, s1, s2 [bnBlock]float64
	for k := 0; k < w; k++ {
		shift[k] = float64(t.x[cb+k])
	}
	for i := 0; i < t.n; i++ {
		row := t.x[i*t.c+cb : i*t.c+ce]
		for k, v := range row {
			d := float64(v) - shift[k]
			s1[k] += d
			s2[k] += d * d
		}
	}
	var a, b, mhi, mlo [bnBlock]float32
	for k := 0; k < w; k++ {
		ch := cb + k
		mean, inv := t.stats(ch, shift[k], s1[k], s2[k])
		a[k] = float32(inv * float64(opt(t.gamma, ch, 1)))
		b[k] = opt(t.beta, ch, 0)
		mhi[k], mlo[k] = split(mean)
		if t.relu {
			setMap(t.coef, ch, bnMap{a[k], b[k], mhi[k], mlo[k]})
		}
	}
	for i := 0; i < t.n; i++ {
		x := t.x[i*t.c+cb : i*t.c+ce]
		y := t.y[i*t.c+cb : i*t.c+ce]
		if t.relu {
			for k, v := range x {
				y[k] = max(float32(((v-mhi[k])-mlo[k])*a[k])+b[k], 0)
			}
			continue
		}
		for k, v := range x {
			y[k] = float32(((v-mhi[k])-mlo[k])*a[k]) + b[k]
		}
	}
}

func (t *bnTask) evalRows(cb, ce int) {
	var a, b [bnBlock]float32
	for k := 0; k < ce-cb; k++ {
		ch := cb + k
		a[k] = float32(float64(opt(t.gamma, ch, 1)) / math.Sqrt(float64(t.rv[ch])+t.eps))
		b[k] = opt(t.beta, ch, 0)
	}
	mf := t.rm[cb:ce]
	for i := 0; i < t.n; i++ {
		x := t.x[i*t.c+cb : i*t.c+ce]
		y := t.y[i*t.c+cb : i*t.c+ce]
		for k, v := range x {
			y[k] = (v-mf[k])*a[k] + b[k]
		}
	}
}

func (t *bnTask) backwardRows(cb, ce int) {
	w := ce - cb
	var mean, sdy, sdyx, sx [bnBlock]float64
	for k := 0; k < w; k++ {
		mean[k] = float64(t.mean[cb+k])
	}
	var fm [bnBlock]bnMap
	if t.relu {
		for k := 0; k < w; k++ {
			fm[k] = mapOf(t.coef, cb+k)
		}
	}
	for i := 0; i < t.n; i++ {
		x := t.x[i*t.c+cb : i*t.c+ce]
		dy := t.dy[i*t.c+cb : i*t.c+ce]
		for k, g := range dy {
			if t.relu && fm[k].z(x[k]) <= 0 {
				g = 0
			}
			d := float64(x[k]) - mean[k]
			sdy[k] += float64(g)
			sdyx[k] += float64(g) * d
			sx[k] += d
		}
	}
	m := float64(t.n)
	var a, b, c, mhi, mlo [bnBlock]float32
	for k := 0; k < w; k++ {
		ch := cb + k
		inv := float64(t.inv[ch])
		mean[k], sdyx[k] = refineMean(mean[k], m, sdy[k], sdyx[k], sx[k])
		t.setOrAdd(t.dbeta, ch, sdy[k])
		t.setOrAdd(t.dgamma, ch, sdyx[k]*inv)
		k1 := float64(opt(t.gamma, ch, 1)) * inv
		a[k] = float32(k1)
		b[k] = float32(-k1 * inv * inv * sdyx[k] / m)
		c[k] = float32(-k1 * sdy[k] / m)
		mhi[k], mlo[k] = split(mean[k])
	}
	for i := 0; i < t.n; i++ {
		x := t.x[i*t.c+cb : i*t.c+ce]
		dy := t.dy[i*t.c+cb : i*t.c+ce]
		dx := t.dx[i*t.c+cb : i*t.c+ce]
		if t.relu {
			for k := range dx {
				g := dy[k]
				if fm[k].z(x[k]) <= 0 {
					g = 0
				}
				v := a[k]*g + b[k]*((x[k]-mhi[k])-mlo[k]) + c[k]
				if t.accumulate {
					dx[k] += v
				} else {
					dx[k] = v
				}
			}
			continue
		}
		if t.accumulate {
			for k := range dx {
				dx[k] += a[k]*dy[k] + b[k]*((x[k]-mhi[k])-mlo[k]) + c[k]
			}
		} else {
			for k := range dx {
				dx[k] = a[k]*dy[k] + b[k]*((x[k]-mhi[k])-mlo[k]) + c[k]
			}
		}
	}
}

func (t *bnTask) evalBackwardRows(cb, ce int) {
	w := ce - cb
	var inv [bnBlock]float64
	for k := 0; k < w; k++ {
		inv[k] = 1 / math.Sqrt(float64(t.rv[cb+k])+t.eps)
	}
	if t.dgamma != nil || t.dbeta != nil {
		var sdy, sdyx [bnBlock]float64
		rm := t.rm[cb:ce]
		for i := 0; i < t.n; i++ {
			dy := t.dy[i*t.c+cb : i*t.c+ce]
			if t.dgamma == nil {
				for k, g := range dy {
					sdy[k] += float64(g)
				}
				continue
			}
			x := t.x[i*t.c+cb : i*t.c+ce]
			for k, g := range dy {
				sdy[k] += float64(g)
				sdyx[k] += float64(g) * (float64(x[k]) - float64(rm[k]))
			}
		}
		for k := 0; k < w; k++ {
			t.setOrAdd(t.dbeta, cb+k, sdy[k])
			t.setOrAdd(t.dgamma, cb+k, sdyx[k]*inv[k])
		}
	}
	if t.dx == nil {
		return
	}
	var a [bnBlock]float32
	for k := 0; k < w; k++ {
		a[k] = float32(float64(opt(t.gamma, cb+k, 1)) * inv[k])
	}
	for i := 0; i < t.n; i++ {
		dy := t.dy[i*t.c+cb : i*t.c+ce]
		dx := t.dx[i*t.c+cb : i*t.c+ce]
		if t.accumulate {
			for k := range dx {
				dx[k] += a[k] * dy[k]
			}
		} else {
			for k := range dx {
				dx[k] = a[k] * dy[k]
			}
		}
	}
}
