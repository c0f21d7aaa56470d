package autodiff

// opKind names a recorded op; Tape.backward dispatches on it.
type opKind uint8

const (
	opNone opKind = iota
	opAdd
	opSub
	opMul
	opScale
	opAddScalar
	opExp
	opLog
	opSquare
	opSqrt
	opReLU
	opSum
	opMean
	opSumRows
	opMeanRows
	opBroadcastRows
	opRowDot
	opAddBias
	opMatMul
	opLinear
	opConcatRows
	opFillDiagonal
	opL2Normalize
	opCosine
	opLogSoftmax
	opCrossEntropy
	opBatchNorm
	opConv2d
	opMaxPool2d
	opAvgPool2d
	opGlobalAvgPool2d
	opAddReLU
)

// node is one recorded op: its kind, result, operands and whatever small
// parameters and saved buffers its backward pass needs. Nodes live in a
// reused slice, so recording an op allocates nothing once the slice has
// grown to a step's length.
type node struct {
	op      opKind
	out     *Var
	a, b, c *Var

	i0, i1, i2, i3, i4, i5 int
	f0                     float32
	t0, t1                 bool

	s0, s1 []float32 // saved state from the arena
	s2     []float32 // more saved state (fused BN+ReLU: the kernel's coef)
	ints   []int     // saved indices (targets) from the int slab
	idx    []int32   // saved argmax from the int32 arena
	bn     *BNState
}

// backward adds node n's contribution to its operands' gradients; n.out.Grad
// is set.
func (tp *Tape) backward(n *node) {
	switch n.op {
	case opAdd, opSub, opMul, opScale, opAddScalar, opExp, opLog, opSquare, opSqrt, opReLU, opAddReLU:
		tp.backwardElementwise(n)
	case opSum, opMean, opSumRows, opMeanRows, opBroadcastRows, opRowDot, opAddBias:
		tp.backwardReduce(n)
	case opMatMul:
		tp.backwardMatMul(n)
	case opLinear:
		tp.backwardLinear(n)
	case opConcatRows, opFillDiagonal:
		tp.backwardShape(n)
	case opL2Normalize, opCosine, opLogSoftmax, opCrossEntropy:
		tp.backwardLoss(n)
	case opBatchNorm:
		tp.backwardBatchNorm(n)
	case opConv2d, opMaxPool2d, opAvgPool2d, opGlobalAvgPool2d:
		tp.backwardConvPool(n)
	default:
		panic("autodiff: unknown op in tape")
	}
}
