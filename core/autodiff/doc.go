// Package autodiff is sslrun's reverse-mode automatic differentiation: a
// tape that records the operations of one training step and replays them
// backwards to accumulate gradients into the parameters.
//
// # Model
//
// A Var is a node of the computation: a Value tensor and, once a gradient has
// reached it, a Grad tensor of the same shape. Parameters (NewParam) are
// persistent Vars whose Grad lives as long as they do; Backward adds into it
// (+=), and the optimizer zeroes it. Everything else is created by a Tape:
// inputs (Input), leaves that want a gradient (Leaf) and the results of the
// operations (MatMul, Linear, BatchNorm, CosineSimilarity, ...), all methods
// on *Tape.
//
// A training step is
//
//	tp.Reset()
//	loss := build(tp, ...) // forward: ops record themselves on the tape
//	err := tp.Backward(loss)
//	opt.Step()             // reads and zeroes the parameters' Grad
//
// # Ops
//
// Every op is a method on *Tape returning a new *Var (shapes in brackets):
//
//	linear algebra  MatMul(a, b, transA, transB), Linear(x [N,in], w [out,in], b [out]|nil),
//	                AddBias(x [N,D]|[N,C,...], b [D]|[C])
//	elementwise     Add, Sub, Mul (equal shapes), Scale(x, s), AddScalar(x, s), Neg, Exp,
//	                Log, Square, Sqrt, ReLU, AddReLU (fused ReLU(Add(a, b)))
//	reductions      Sum, Mean (-> [1]), SumRows, MeanRows ([N,...] -> [...]),
//	                RowDot (a, b [N,D] -> [N]), BroadcastRows (v [...], n -> [n,...])
//	losses          L2Normalize (F.normalize, dim=1), CosineSimilarity (F.cosine_similarity,
//	                dim=-1, PyTorch 1.13), LogSoftmax (rows), CrossEntropy (mean),
//	                FillDiagonal (x [N,M], v; v may be NegInf)
//	shape           ConcatRows, SliceRows and Reshape (views: no copy, shared gradient)
//	vision          Conv2d, BatchNorm (+ BNState), BatchNormReLU (fused), MaxPool2d,
//	                AvgPool2d, GlobalAvgPool2d, running on core/kernel
//	graph control   Input, Leaf, Detach, NoGrad / SetGrad, Backward, Reset
//
// GradCheck compares any composition of ops with central finite differences.
//
// # Memory
//
// The tape is built for a step that repeats with the same shapes thousands of
// times, and allocates nothing once it has seen one step:
//
//   - Values, gradients of intermediates and the state an op saves for its
//     backward pass (BatchNorm's mean and inverse std, CrossEntropy's
//     softmax, ...) come from an arena of float32 buffers. Reset rewinds it;
//     the k-th request of a step gets the buffer the k-th request of the last
//     step got, reallocated only if it is too small.
//   - Vars, tensor.T headers and shape slices come from chunked slabs that
//     are rewound the same way (chunks never move, so pointers stay valid).
//   - The recorded operations are plain structs in a reused slice (op kind,
//     operands, a few int/float parameters); Backward dispatches on the kind
//     with a switch, so no closure is created per op.
//
// Consequently every Var a Tape returns, and its Value and Grad, are valid
// only until the next Reset. Copy what must outlive the step. Parameters and
// the tensors passed to Input/Leaf are never touched by Reset.
//
// # Gradients of intermediates
//
// Backward walks the recorded ops from the loss back to the first. The
// gradient buffer of an intermediate Var is taken from the arena the first
// time a gradient reaches it; the first op that writes it overwrites (GEMMs
// with beta=0, elementwise loops with "=") and later ones accumulate, so no
// buffer is zeroed unless an op writes only part of it. After Backward,
// v.Grad holds dLoss/dv for every intermediate v that gradient reached (nil
// otherwise) until the next Reset: analyzers read the gradient acting on z
// or p from there. Training loops, which need only the parameters'
// gradients, turn on SetReuseGrads instead: each intermediate's buffer then
// returns to a pool as soon as the op that produced it has run backward, so
// a step holds only the few gradients live at once.
//
// # No-grad mode and stop-gradient
//
// In no-grad mode (NoGrad, SetGrad(false)) ops compute values but record
// nothing and their results do not require grad: the BYOL target network,
// evaluation and embedding extraction run this way. Detach returns a Var with
// the same Value through which no gradient flows (the paper's sg(.)).
//
// # Concurrency
//
// A Tape is not safe for concurrent use; use one Tape per goroutine.
// Large elementwise loops and all GEMMs run on core/parallel's worker pool.
//
// # Programmer errors
//
// Ops panic on mismatched shapes, as the kernels do: a shape error in a model
// is a bug in its code, found by the first forward pass of any test. Backward
// and the other API functions that depend on data return errors.
package autodiff
