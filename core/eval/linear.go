package eval

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"

	"github.com/sslrun/sslrun/core/gemm"
	"github.com/sslrun/sslrun/core/optim"
	"github.com/sslrun/sslrun/core/parallel"
)

// The learning-rate schedules of the linear probe.
const (
	// ScheduleCosine decays the lr per step from LR to 0 with a half
	// cosine and no warmup (lightly's LinearClassifier; torch
	// CosineAnnealingLR with eta_min 0 stepped every batch).
	ScheduleCosine = "cosine"
	// ScheduleConstant keeps LR throughout.
	ScheduleConstant = "constant"
)

// LinearConfig configures the linear probe. Fields are used as given;
// start from DefaultLinear.
type LinearConfig struct {
	// Epochs is the number of passes over the train set.
	Epochs int
	// BatchSize is the number of samples per SGD step; the last batch of
	// an epoch may be smaller (drop_last=False). BatchSize <= 0 or >= N
	// means full-batch gradient descent in the sample order given.
	BatchSize int
	// LR is the peak learning rate, Momentum the SGD momentum and
	// WeightDecay the L2 penalty added to the gradient (torch.optim.SGD,
	// applied to the weight and the bias).
	LR, Momentum, WeightDecay float64
	// Schedule is ScheduleCosine or ScheduleConstant.
	Schedule string
	// Standardize rescales every feature to zero mean and unit variance
	// with the train set's statistics (population std; constant features
	// are only centred). solo-learn and lightly do not standardize.
	Standardize bool
	// Seed drives the initialization and the batch order.
	Seed uint64
	// NumClasses, when positive, is the number of classes; otherwise one
	// more than the largest label in either set.
	NumClasses int
}

// DefaultLinear returns the probe sslrun uses unless told otherwise:
// SGD with momentum 0.9, lr 0.1 at batch 256 (lightly's 0.1*batch/256),
// no weight decay, per-step cosine decay to 0, 100 epochs (solo-learn's
// offline linear count), raw features, the classifier of the last epoch.
func DefaultLinear() LinearConfig {
	return LinearConfig{Epochs: 100, BatchSize: 256, LR: 0.1, Momentum: 0.9, Schedule: ScheduleCosine}
}

func (c LinearConfig) validate() error {
	switch {
	case c.Epochs < 1:
		return fmt.Errorf("eval: linear: %d epochs, need >= 1", c.Epochs)
	case !(c.LR > 0) || math.IsInf(c.LR, 0):
		return fmt.Errorf("eval: linear: lr %v, need > 0", c.LR)
	case c.Momentum < 0 || c.Momentum >= 1:
		return fmt.Errorf("eval: linear: momentum %v, need in [0, 1)", c.Momentum)
	case c.WeightDecay < 0:
		return fmt.Errorf("eval: linear: weight decay %v, need >= 0", c.WeightDecay)
	case c.Schedule != ScheduleCosine && c.Schedule != ScheduleConstant:
		return fmt.Errorf("eval: linear: schedule %q, want %q or %q", c.Schedule, ScheduleCosine, ScheduleConstant)
	}
	return nil
}

// Linear is a trained linear classifier on (optionally standardized)
// features: logits = W x' + B with x' = (x - Mean) * InvStd.
type Linear struct {
	// Dim is the number of input features, Classes the number of outputs.
	Dim, Classes int
	// W is Classes x Dim, row-major (the layout of torch's nn.Linear).
	W []float32
	// B holds the Classes biases.
	B []float32
	// Mean and InvStd standardize the input; both nil when the probe was
	// trained on raw features.
	Mean, InvStd []float32
}

// LinearResult is the outcome of a linear probe.
type LinearResult struct {
	// Result holds the test accuracy and the protocol.
	Result
	// TrainTop1 is the accuracy of the final classifier on the train set.
	TrainTop1 float64
	// TrainLoss is the mean cross-entropy over the last epoch's batches
	// (measured before each step, as a training loop logs it).
	TrainLoss float64
	// Model is the final (last-epoch) classifier.
	Model *Linear
}

// LinearProbe trains a softmax classifier on the frozen train features
// with SGD and evaluates it on the test features; the classifier of the
// last epoch is reported (no selection on the test set).
func LinearProbe(train, test Set, cfg LinearConfig) (LinearResult, error) {
	if err := cfg.validate(); err != nil {
		return LinearResult{}, err
	}
	classes, err := checkPair(train, test, cfg.NumClasses)
	if err != nil {
		return LinearResult{}, fmt.Errorf("eval: linear: %w", err)
	}
	m, loss := trainLinear(train, cfg, classes, nil)
	tr1, _ := m.Accuracy(train)
	te1, te5 := m.Accuracy(test)
	top5 := min(5, classes)
	batch := cfg.BatchSize
	if batch <= 0 || batch >= train.N() {
		batch = train.N()
	}
	p := baseProtocol("linear", train, test, classes, top5)
	p["epochs"] = strconv.Itoa(cfg.Epochs)
	p["batch_size"] = strconv.Itoa(batch)
	p["drop_last"] = "false"
	p["optimizer"] = "sgd"
	p["lr"] = fmtFloat(cfg.LR)
	p["momentum"] = fmtFloat(cfg.Momentum)
	p["weight_decay"] = fmtFloat(cfg.WeightDecay)
	p["lr_schedule"] = cfg.Schedule
	if cfg.Schedule == ScheduleCosine {
		p["lr_schedule"] = "cosine per step to 0, no warmup"
	}
	p["loss"] = "softmax cross-entropy, mean over the batch"
	p["init"] = "torch nn.Linear default: U(-1/sqrt(dim), 1/sqrt(dim)) for weight and bias"
	p["seed"] = strconv.FormatUint(cfg.Seed, 10)
	p["shuffle"] = "per epoch, PCG seeded"
	p["feature_norm"] = "none"
	if cfg.Standardize {
		p["feature_norm"] = "standardize (train mean, population std)"
	}
	p["selection"] = "last epoch"
	p["train_top1"] = fmtFloat(tr1)
	return LinearResult{
		Result:    Result{Top1: te1, Top5: te5, N: test.N(), Protocol: p},
		TrainTop1: tr1, TrainLoss: loss, Model: m,
	}, nil
}

// trainLinear runs the probe's SGD; init, when non-nil, replaces the
// random initialization (for golden tests). It returns the model and the
// mean loss of the last epoch. cfg and the sets must be valid.
func trainLinear(train Set, cfg LinearConfig, classes int, init *Linear) (*Linear, float64) {
	n, d := train.N(), train.Dim
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x11ea7))
	m := &Linear{Dim: d, Classes: classes, W: make([]float32, classes*d), B: make([]float32, classes)}
	if init != nil {
		copy(m.W, init.W)
		copy(m.B, init.B)
	} else {
		bound := 1 / math.Sqrt(float64(d))
		for i := range m.W {
			m.W[i] = float32((2*rng.Float64() - 1) * bound)
		}
		for i := range m.B {
			m.B[i] = float32((2*rng.Float64() - 1) * bound)
		}
	}
	if cfg.Standardize {
		m.Mean, m.InvStd = standardization(train)
	}

	batch := cfg.BatchSize
	full := batch <= 0 || batch >= n
	if full {
		batch = n
	}
	stepsPerEpoch := (n + batch - 1) / batch
	total := cfg.Epochs * stepsPerEpoch

	gW := make([]float32, len(m.W))
	gB := make([]float32, len(m.B))
	wp := &optim.Param{Name: "weight", Value: m.W, Grad: gW, Shape: []int{classes, d}, Kind: optim.Weight}
	bp := &optim.Param{Name: "bias", Value: m.B, Grad: gB, Shape: []int{classes}, Kind: optim.Bias}
	opt, err := optim.New(optim.SGD, []optim.Group{{
		Name: "linear", Params: []*optim.Param{wp, bp},
		Momentum: cfg.Momentum, WeightDecay: cfg.WeightDecay,
	}})
	if err != nil {
		// The config was validated; a failure here is a programmer error.
		panic(fmt.Sprintf("eval: linear: optimizer: %v", err))
	}

	perm := make([]int32, n)
	for i := range perm {
		perm[i] = int32(i)
	}
	// With raw features a full batch is the train matrix itself; otherwise
	// batches are gathered (and standardized) into xb.
	var xb []float32
	if !full || m.Mean != nil {
		xb = make([]float32, batch*d)
	}
	g := &gather{src: train, m: m}
	logits := make([]float32, batch*classes)
	yb := make([]int32, batch)
	var lastLoss float64
	step := 0
	for e := 0; e < cfg.Epochs; e++ {
		if !full {
			rng.Shuffle(n, func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
		}
		var epochLoss float64
		for lo := 0; lo < n; lo += batch {
			bs := min(batch, n-lo)
			x := train.X[:n*d]
			if xb != nil {
				g.idx, g.dst = perm[lo:lo+bs], xb
				parallel.Run(bs, 64, g)
				x = xb[:bs*d]
			}
			for i := range bs {
				yb[i] = train.Labels[perm[lo+i]]
			}
			lg := logits[:bs*classes]
			gemm.Sgemm(false, true, bs, classes, d, 1, x, d, m.W, d, 0, lg, classes)
			epochLoss += softmaxXentGrad(lg, m.B, yb[:bs], classes) * float64(bs)
			// lg now holds dL/dlogits; dW = G^T x, dB = column sums of G.
			gemm.Sgemm(true, false, classes, d, bs, 1, lg, classes, x, d, 0, gW, d)
			clear(gB)
			for i := range bs {
				for c := range classes {
					gB[c] += lg[i*classes+c]
				}
			}
			lr := cfg.LR
			if cfg.Schedule == ScheduleCosine {
				lr = 0.5 * cfg.LR * (1 + math.Cos(math.Pi*float64(step)/float64(total)))
			}
			opt.Step(lr)
			step++
		}
		lastLoss = epochLoss / float64(n)
	}
	return m, lastLoss
}

// gather copies (and standardizes) the rows idx of src into dst; it is a
// parallel.Task so that the copy of a large batch uses both cores.
type gather struct {
	src Set
	m   *Linear
	idx []int32
	dst []float32
}

func (g *gather) Do(lo, hi int) {
	d := g.src.Dim
	for i := lo; i < hi; i++ {
		j := int(g.idx[i])
		g.m.input(g.dst[i*d:(i+1)*d], g.src.X[j*d:(j+1)*d])
	}
}

// input writes the model's input for the feature row x into dst.
func (m *Linear) input(dst, x []float32) {
	if m.Mean == nil {
		copy(dst, x)
		return
	}
	for j, v := range x {
		dst[j] = (v - m.Mean[j]) * m.InvStd[j]
	}
}

// softmaxXentGrad adds the bias to the logits lg (rows of `classes`),
// returns the mean cross-entropy against labels y and overwrites lg with
// the gradient of that mean with respect to the logits,
// (softmax - onehot) / rows.
func softmaxXentGrad(lg, bias []float32, y []int32, classes int) float64 {
	rows := len(y)
	inv := 1 / float64(rows)
	var loss float64
	for i := range rows {
		z := lg[i*classes : (i+1)*classes]
		mx := math.Inf(-1)
		for c := range z {
			z[c] += bias[c]
			mx = math.Max(mx, float64(z[c]))
		}
		var s float64
		for _, v := range z {
			s += math.Exp(float64(v) - mx)
		}
		lse := mx + math.Log(s)
		loss += lse - float64(z[y[i]])
		for c, v := range z {
			p := math.Exp(float64(v) - lse)
			if c == int(y[i]) {
				p--
			}
			z[c] = float32(p * inv)
		}
	}
	return loss * inv
}

// standardization returns the train mean and 1/std of every feature
// (population std, computed in float64; 1 where the std is 0).
func standardization(s Set) (mean, invStd []float32) {
	n, d := s.N(), s.Dim
	sum := make([]float64, d)
	for i := range n {
		for j, v := range s.X[i*d : (i+1)*d] {
			sum[j] += float64(v)
		}
	}
	mu := make([]float64, d)
	for j := range mu {
		mu[j] = sum[j] / float64(n)
	}
	clear(sum)
	for i := range n {
		for j, v := range s.X[i*d : (i+1)*d] {
			dv := float64(v) - mu[j]
			sum[j] += dv * dv
		}
	}
	mean, invStd = make([]float32, d), make([]float32, d)
	for j := range d {
		mean[j] = float32(mu[j])
		invStd[j] = 1
		if sd := math.Sqrt(sum[j] / float64(n)); sd > 0 {
			invStd[j] = float32(1 / sd)
		}
	}
	return mean, invStd
}

// evalRows is the number of samples whose logits Accuracy computes with
// one Sgemm call.
const evalRows = 2048

// Logits writes the n x Classes logits of the n feature rows x into out.
func (m *Linear) Logits(x []float32, out []float32) {
	var buf []float32
	if m.Mean != nil {
		buf = make([]float32, min(len(x)/m.Dim, evalRows)*m.Dim)
	}
	m.logits(x, out, buf)
}

// logits is Logits with the standardization buffer buf (evalRows rows, or
// fewer when x is shorter) supplied by the caller.
func (m *Linear) logits(x, out, buf []float32) {
	d := m.Dim
	n := len(x) / d
	for lo := 0; lo < n; lo += evalRows {
		rows := min(evalRows, n-lo)
		in := x[lo*d : (lo+rows)*d]
		if m.Mean != nil {
			for i := range rows {
				m.input(buf[i*d:(i+1)*d], in[i*d:(i+1)*d])
			}
			in = buf[:rows*d]
		}
		o := out[lo*m.Classes : (lo+rows)*m.Classes]
		gemm.Sgemm(false, true, rows, m.Classes, d, 1, in, d, m.W, d, 0, o, m.Classes)
		for i := range rows {
			for c := range m.Classes {
				o[i*m.Classes+c] += m.B[c]
			}
		}
	}
}

// Predict returns the predicted class of every row of s.
func (m *Linear) Predict(s Set) []int32 {
	out := make([]float32, s.N()*m.Classes)
	m.Logits(s.X, out)
	pred := make([]int32, s.N())
	for i := range pred {
		pred[i] = int32(argmax(out[i*m.Classes : (i+1)*m.Classes]))
	}
	return pred
}

// Accuracy returns the top-1 and top-5 accuracy of m on s (top-5 over
// min(5, Classes) classes, ties to the lower class index).
func (m *Linear) Accuracy(s Set) (top1, top5 float64) {
	rows := min(s.N(), evalRows)
	out := make([]float32, rows*m.Classes)
	var buf []float32
	if m.Mean != nil {
		buf = make([]float32, rows*m.Dim)
	}
	k5 := min(5, m.Classes)
	var c1, c5 int
	d := m.Dim
	for lo := 0; lo < s.N(); lo += evalRows {
		rows := min(evalRows, s.N()-lo)
		o := out[:rows*m.Classes]
		m.logits(s.X[lo*d:(lo+rows)*d], o, buf)
		for i := range rows {
			r := rank(o[i*m.Classes:(i+1)*m.Classes], int(s.Labels[lo+i]))
			if r == 0 {
				c1++
			}
			if r < k5 {
				c5++
			}
		}
	}
	return float64(c1) / float64(s.N()), float64(c5) / float64(s.N())
}
