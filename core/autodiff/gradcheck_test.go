package autodiff

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/sslrun/sslrun/core/tensor"
	"github.com/sslrun/sslrun/internal/tensortest"
)

// randT returns a tensor of standard normal values from a seeded generator;
// short, as the case table below calls it a hundred times.
var randT = tensortest.Randn

// randAway returns normal values pushed at least margin away from 0, for
// ops with a kink at 0 (ReLU) or a domain starting there (Log, Sqrt with abs).
func randAway(rng *rand.Rand, margin float32, shape ...int) *tensor.T {
	t := randT(rng, shape...)
	for i, v := range t.Data {
		if v >= 0 {
			t.Data[i] = v + margin
		} else {
			t.Data[i] = v - margin
		}
	}
	return t
}

func randPos(rng *rand.Rand, shape ...int) *tensor.T {
	t := randT(rng, shape...)
	for i, v := range t.Data {
		t.Data[i] = float32(math.Abs(float64(v))) + 0.5
	}
	return t
}

// randDistinct returns a permutation of spread-out values, so that max
// pooling has no near-ties a finite difference could flip.
func randDistinct(rng *rand.Rand, shape ...int) *tensor.T {
	t := tensor.New(shape...)
	for i, p := range rng.Perm(len(t.Data)) {
		t.Data[i] = float32(p)*0.1 - float32(len(t.Data))*0.05
	}
	return t
}

type gcCase struct {
	name   string
	inputs func(rng *rand.Rand) []*tensor.T
	build  func(tp *Tape, in []*Var) *Var
	opts   GradCheckOptions
}

func ins(ts ...*tensor.T) []*tensor.T { return ts }

func gradCheckCases() []gcCase {
	bn4 := NewBNState(3)
	for i := range bn4.RunningMean.Data {
		bn4.RunningMean.Data[i] = 0.3 * float32(i)
		bn4.RunningVar.Data[i] = 0.5 + float32(i)
	}
	return []gcCase{
		{"Add", func(r *rand.Rand) []*tensor.T { return ins(randT(r, 3, 4), randT(r, 3, 4)) },
			func(tp *Tape, in []*Var) *Var { return tp.Add(in[0], in[1]) }, GradCheckOptions{}},
		{"Sub", func(r *rand.Rand) []*tensor.T { return ins(randT(r, 3, 4), randT(r, 3, 4)) },
			func(tp *Tape, in []*Var) *Var { return tp.Sub(in[0], in[1]) }, GradCheckOptions{}},
		{"Mul", func(r *rand.Rand) []*tensor.T { return ins(randT(r, 3, 4), randT(r, 3, 4)) },
			func(tp *Tape, in []*Var) *Var { return tp.Mul(in[0], in[1]) }, GradCheckOptions{}},
		{"MulSelf", func(r *rand.Rand) []*tensor.T { return ins(randT(r, 3, 4)) },
			func(tp *Tape, in []*Var) *Var { return tp.Mul(in[0], in[0]) }, GradCheckOptions{}},
		{"Scale", func(r *rand.Rand) []*tensor.T { return ins(randT(r, 5)) },
			func(tp *Tape, in []*Var) *Var { return tp.Scale(in[0], -2.5) }, GradCheckOptions{}},
		{"AddScalarNeg", func(r *rand.Rand) []*tensor.T { return ins(randT(r, 5)) },
			func(tp *Tape, in []*Var) *Var { return tp.Neg(tp.AddScalar(in[0], 3)) }, GradCheckOptions{}},
		{"Exp", func(r *rand.Rand) []*tensor.T { return ins(randT(r, 2, 5)) },
			func(tp *Tape, in []*Var) *Var { return tp.Exp(in[0]) }, GradCheckOptions{Eps: 1e-3}},
		{"Log", func(r *rand.Rand) []*tensor.T { return ins(randPos(r, 2, 5)) },
			func(tp *Tape, in []*Var) *Var { return tp.Log(in[0]) }, GradCheckOptions{Eps: 1e-3}},
		{"Square", func(r *rand.Rand) []*tensor.T { return ins(randT(r, 2, 5)) },
			func(tp *Tape, in []*Var) *Var { return tp.Square(in[0]) }, GradCheckOptions{}},
		{"Sqrt", func(r *rand.Rand) []*tensor.T { return ins(randPos(r, 2, 5)) },
			func(tp *Tape, in []*Var) *Var { return tp.Sqrt(in[0]) }, GradCheckOptions{Eps: 1e-3}},
		{"ReLU", func(r *rand.Rand) []*tensor.T { return ins(randAway(r, 0.1, 3, 7)) },
			func(tp *Tape, in []*Var) *Var { return tp.ReLU(in[0]) }, GradCheckOptions{}},
		{"SumMean", func(r *rand.Rand) []*tensor.T { return ins(randT(r, 3, 4), randT(r, 6)) },
			func(tp *Tape, in []*Var) *Var {
				return tp.Add(tp.Sum(in[0]), tp.Scale(tp.Mean(in[1]), 3))
			}, GradCheckOptions{}},
		{"MeanRowsSumRows", func(r *rand.Rand) []*tensor.T { return ins(randT(r, 4, 3), randT(r, 2, 3)) },
			func(tp *Tape, in []*Var) *Var { return tp.Mul(tp.MeanRows(in[0]), tp.SumRows(in[1])) }, GradCheckOptions{}},
		{"BroadcastRowsCentre", func(r *rand.Rand) []*tensor.T { return ins(randT(r, 5, 3)) },
			func(tp *Tape, in []*Var) *Var { // residual r = Z - o
				return tp.Sub(in[0], tp.BroadcastRows(tp.MeanRows(in[0]), 5))
			}, GradCheckOptions{}},
		{"RowDot", func(r *rand.Rand) []*tensor.T { return ins(randT(r, 4, 6), randT(r, 4, 6)) },
			func(tp *Tape, in []*Var) *Var { return tp.RowDot(in[0], in[1]) }, GradCheckOptions{}},
		{"AddBias2D", func(r *rand.Rand) []*tensor.T { return ins(randT(r, 4, 3), randT(r, 3)) },
			func(tp *Tape, in []*Var) *Var { return tp.AddBias(in[0], in[1]) }, GradCheckOptions{}},
		{"AddBias4D", func(r *rand.Rand) []*tensor.T { return ins(randT(r, 2, 3, 2, 2), randT(r, 3)) },
			func(tp *Tape, in []*Var) *Var { return tp.AddBias(in[0], in[1]) }, GradCheckOptions{}},
		{"MatMulNN", func(r *rand.Rand) []*tensor.T { return ins(randT(r, 3, 4), randT(r, 4, 5)) },
			func(tp *Tape, in []*Var) *Var { return tp.MatMul(in[0], in[1], false, false) }, GradCheckOptions{}},
		{"MatMulTN", func(r *rand.Rand) []*tensor.T { return ins(randT(r, 4, 3), randT(r, 4, 5)) },
			func(tp *Tape, in []*Var) *Var { return tp.MatMul(in[0], in[1], true, false) }, GradCheckOptions{}},
		{"MatMulNT", func(r *rand.Rand) []*tensor.T { return ins(randT(r, 3, 4), randT(r, 5, 4)) },
			func(tp *Tape, in []*Var) *Var { return tp.MatMul(in[0], in[1], false, true) }, GradCheckOptions{}},
		{"MatMulTT", func(r *rand.Rand) []*tensor.T { return ins(randT(r, 4, 3), randT(r, 5, 4)) },
			func(tp *Tape, in []*Var) *Var { return tp.MatMul(in[0], in[1], true, true) }, GradCheckOptions{}},
		{"MatMulGram", func(r *rand.Rand) []*tensor.T { return ins(randT(r, 4, 3)) },
			func(tp *Tape, in []*Var) *Var { return tp.MatMul(in[0], in[0], false, true) }, GradCheckOptions{}},
		{"Linear", func(r *rand.Rand) []*tensor.T { return ins(randT(r, 3, 4), randT(r, 5, 4), randT(r, 5)) },
			func(tp *Tape, in []*Var) *Var { return tp.Linear(in[0], in[1], in[2]) }, GradCheckOptions{}},
		{"LinearNoBias", func(r *rand.Rand) []*tensor.T { return ins(randT(r, 3, 4), randT(r, 5, 4)) },
			func(tp *Tape, in []*Var) *Var { return tp.Linear(in[0], in[1], nil) }, GradCheckOptions{}},
		{"L2Normalize", func(r *rand.Rand) []*tensor.T { return ins(randT(r, 4, 5)) },
			func(tp *Tape, in []*Var) *Var { return tp.L2Normalize(in[0]) }, GradCheckOptions{Eps: 1e-3}},
		{"CosineSimilarity", func(r *rand.Rand) []*tensor.T { return ins(randT(r, 4, 5), randT(r, 4, 5)) },
			func(tp *Tape, in []*Var) *Var { return tp.CosineSimilarity(in[0], in[1]) }, GradCheckOptions{Eps: 1e-3}},
		{"CosineSelf", func(r *rand.Rand) []*tensor.T { return ins(randT(r, 3, 4), randT(r, 3, 4)) },
			func(tp *Tape, in []*Var) *Var { // same Var on both sides plus a shared one
				return tp.CosineSimilarity(in[0], tp.Add(in[0], in[1]))
			}, GradCheckOptions{Eps: 1e-3}},
		{"LogSoftmax", func(r *rand.Rand) []*tensor.T { return ins(randT(r, 3, 5)) },
			func(tp *Tape, in []*Var) *Var { return tp.LogSoftmax(in[0]) }, GradCheckOptions{Eps: 1e-3}},
		{"LogSoftmaxMasked", func(r *rand.Rand) []*tensor.T { return ins(randT(r, 4, 4)) },
			func(tp *Tape, in []*Var) *Var {
				// -Inf outputs on the diagonal would poison Σ out·w: pick
				// the off-diagonal entries by adding the mask back as 0.
				y := tp.LogSoftmax(tp.FillDiagonal(in[0], NegInf))
				return tp.FillDiagonal(y, 0)
			}, GradCheckOptions{Eps: 1e-3}},
		{"CrossEntropy", func(r *rand.Rand) []*tensor.T { return ins(randT(r, 4, 6)) },
			func(tp *Tape, in []*Var) *Var { return tp.CrossEntropy(in[0], []int{1, 0, 5, 2}) }, GradCheckOptions{Eps: 1e-3}},
		{"NTXent", func(r *rand.Rand) []*tensor.T { return ins(randT(r, 3, 4), randT(r, 3, 4)) },
			func(tp *Tape, in []*Var) *Var {
				z := tp.L2Normalize(tp.ConcatRows(in[0], in[1]))
				s := tp.Scale(tp.MatMul(z, z, false, true), 1/0.5)
				return tp.CrossEntropy(tp.FillDiagonal(s, NegInf), []int{3, 4, 5, 0, 1, 2})
			}, GradCheckOptions{Eps: 1e-3}},
		{"ConcatSliceReshape", func(r *rand.Rand) []*tensor.T { return ins(randT(r, 2, 3), randT(r, 3, 3)) },
			func(tp *Tape, in []*Var) *Var {
				c := tp.ConcatRows(in[0], in[1])
				a := tp.SliceRows(c, 1, 4)
				b := tp.Reshape(tp.SliceRows(in[1], 0, 3), 9)
				return tp.Add(tp.Reshape(tp.Square(a), -1), b)
			}, GradCheckOptions{}},
		{"SliceOfParam", func(r *rand.Rand) []*tensor.T { return ins(randT(r, 4, 3)) },
			func(tp *Tape, in []*Var) *Var {
				return tp.Mul(tp.SliceRows(in[0], 0, 2), tp.SliceRows(in[0], 2, 4))
			}, GradCheckOptions{}},
		{"FillDiagonal", func(r *rand.Rand) []*tensor.T { return ins(randT(r, 3, 4)) },
			func(tp *Tape, in []*Var) *Var { return tp.Square(tp.FillDiagonal(in[0], 2)) }, GradCheckOptions{}},
		{"BatchNormTrain2D", func(r *rand.Rand) []*tensor.T { return ins(randT(r, 6, 3), randT(r, 3), randT(r, 3)) },
			func(tp *Tape, in []*Var) *Var { return tp.BatchNorm(in[0], in[1], in[2], NewBNState(3), true) },
			GradCheckOptions{Eps: 1e-3, Atol: 2e-3}},
		{"BatchNormTrainNoAffine", func(r *rand.Rand) []*tensor.T { return ins(randT(r, 5, 4)) },
			func(tp *Tape, in []*Var) *Var { return tp.BatchNorm(in[0], nil, nil, nil, true) },
			GradCheckOptions{Eps: 1e-3, Atol: 2e-3}},
		{"BatchNormTrain4D", func(r *rand.Rand) []*tensor.T { return ins(randT(r, 2, 3, 2, 3), randT(r, 3), randT(r, 3)) },
			func(tp *Tape, in []*Var) *Var { return tp.BatchNorm(in[0], in[1], in[2], NewBNState(3), true) },
			GradCheckOptions{Eps: 1e-3, Atol: 2e-3}},
		{"BatchNormEval4D", func(r *rand.Rand) []*tensor.T { return ins(randT(r, 2, 3, 2, 2), randT(r, 3), randT(r, 3)) },
			func(tp *Tape, in []*Var) *Var { return tp.BatchNorm(in[0], in[1], in[2], bn4, false) },
			GradCheckOptions{}},
		{"Conv2dStride2Pad1", func(r *rand.Rand) []*tensor.T { return ins(randT(r, 2, 3, 5, 5), randT(r, 4, 3, 3, 3)) },
			func(tp *Tape, in []*Var) *Var { return tp.Conv2d(in[0], in[1], 2, 2, 1, 1) }, GradCheckOptions{}},
		{"Conv2d1x1", func(r *rand.Rand) []*tensor.T { return ins(randT(r, 2, 3, 3, 3), randT(r, 2, 3, 1, 1)) },
			func(tp *Tape, in []*Var) *Var { return tp.Conv2d(in[0], in[1], 1, 1, 0, 0) }, GradCheckOptions{}},
		{"MaxPool2d", func(r *rand.Rand) []*tensor.T { return ins(randDistinct(r, 2, 2, 5, 5)) },
			func(tp *Tape, in []*Var) *Var { return tp.MaxPool2d(in[0], 3, 2, 1) }, GradCheckOptions{}},
		{"AvgPool2d", func(r *rand.Rand) []*tensor.T { return ins(randT(r, 2, 2, 5, 5)) },
			func(tp *Tape, in []*Var) *Var { return tp.AvgPool2d(in[0], 3, 2, 1) }, GradCheckOptions{}},
		{"GlobalAvgPool2d", func(r *rand.Rand) []*tensor.T { return ins(randT(r, 2, 3, 2, 3)) },
			func(tp *Tape, in []*Var) *Var { return tp.GlobalAvgPool2d(in[0]) }, GradCheckOptions{}},
		{"SimSiamLoss", func(r *rand.Rand) []*tensor.T {
			return ins(randT(r, 4, 5), randT(r, 4, 5), randT(r, 4, 5), randT(r, 4, 5))
		}, func(tp *Tape, in []*Var) *Var {
			p1, p2, z1, z2 := in[0], in[1], in[2], in[3]
			c1 := tp.Mean(tp.CosineSimilarity(p1, tp.Detach(z2)))
			c2 := tp.Mean(tp.CosineSimilarity(p2, tp.Detach(z1)))
			return tp.Scale(tp.Add(c1, c2), -0.5)
		}, GradCheckOptions{Eps: 1e-3, Constant: []bool{false, false, true, true}}},
		{"MLPBlock", func(r *rand.Rand) []*tensor.T { return ins(randT(r, 6, 4), randT(r, 5, 4), randT(r, 5), randT(r, 5)) },
			func(tp *Tape, in []*Var) *Var {
				h := tp.BatchNorm(tp.Linear(in[0], in[1], nil), in[2], in[3], NewBNState(5), true)
				return tp.L2Normalize(tp.ReLU(h))
			}, GradCheckOptions{Eps: 1e-3, Atol: 2e-3, Rtol: 2e-2}},
	}
}

func TestGradCheck(t *testing.T) {
	for i, tc := range gradCheckCases() {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			tc.opts.Seed = uint64(i)
			res, err := GradCheck(tc.build, tc.inputs(rng), tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if res.Checked == 0 {
				t.Fatal("nothing checked")
			}
			t.Logf("checked %d, max abs err %.2g, worst/tol %.2f", res.Checked, res.MaxAbsErr, res.Worst)
		})
	}
}

// TestGradCheckCatchesBug makes sure the checker is not vacuous: a wrong
// gradient (the detached path counted as differentiable vs not) fails.
func TestGradCheckCatchesBug(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	x := randT(rng, 3, 4)
	// y = x * sg(x): the tape's gradient is sg(x) = x, the true derivative of
	// the function is 2x, so the finite-difference check must fail.
	_, err := GradCheck(func(tp *Tape, in []*Var) *Var { return tp.Mul(in[0], tp.Detach(in[0])) },
		[]*tensor.T{x}, GradCheckOptions{})
	if err == nil {
		t.Fatal("gradient check passed a detached path as differentiable")
	}
}
