package kernel

import (
	"fmt"
	"math"

	"github.com/sslrun/sslrun/core/parallel"
)

// reluTask carries one ReLU call to the workers.
type reluTask struct {
	backward   bool
	x, y, dy   []float32
	accumulate bool
}

var reluPool = parallel.NewFreeList(16, func() *reluTask { return new(reluTask) })

// reluGrain keeps chunks large enough (64K elements) to pay for the
// hand-off to another worker.
const reluGrain = 1 << 16

// ReLUForward sets y = max(x, 0) elementwise, overwriting y. y may be x
// (in-place ReLU). NaN stays NaN, as in PyTorch.
func ReLUForward(x, y []float32) {
	if len(y) < len(x) {
		panic(fmt.Sprintf("kernel: relu output has %d elements, need %d", len(y), len(x)))
	}
	t := reluPool.Get()
	*t = reluTask{x: x, y: y}
	parallel.RunDynamic(len(x), reluGrain, t)
	*t = reluTask{}
	reluPool.Put(t)
}

// ReLUBackward computes the input gradient dy * [y > 0] from the forward
// output y (the forward input works as well, which is why in-place ReLU
// needs nothing else saved). With accumulate false dx is overwritten (it may
// be dy); with accumulate true the gradient is added to dx.
func ReLUBackward(y, dy, dx []float32, accumulate bool) {
	if len(dy) < len(y) || len(dx) < len(y) {
		panic(fmt.Sprintf("kernel: relu backward slices y=%d dy=%d dx=%d elements", len(y), len(dy), len(dx)))
	}
	t := reluPool.Get()
	*t = reluTask{backward: true, x: dx, y: y, dy: dy, accumulate: accumulate}
	parallel.RunDynamic(len(y), reluGrain, t)
	*t = reluTask{}
	reluPool.Put(t)
}

// Do handles elements [lo, hi). The loops are branch-free: on random
// signs a compare-and-branch mispredicts half the time, which made them
// several times slower.
func (t *reluTask) Do(lo, hi int) {
	if !t.backward {
		x, y := t.x[lo:hi], t.y[lo:hi]
		y = y[:len(x)]
		for i, v := range x {
			y[i] = max(v, 0) // max propagates NaN
		}
		return
	}
	y, dy, dx := t.y[lo:hi], t.dy[lo:hi], t.x[lo:hi]
	dy, dx = dy[:len(y)], dx[:len(y)]
	if t.accumulate {
		for i, v := range y {
			dx[i] += math.Float32frombits(math.Float32bits(dy[i]) & positive(v))
		}
		return
	}
	for i, v := range y {
		dx[i] = math.Float32frombits(math.Float32bits(dy[i]) & positive(v))
	}
}

// positive returns all ones when v > 0 and zero otherwise (also for NaN):
// v > 0 exactly when its bits b satisfy 0 < b <= bits(+Inf).
func positive(v float32) uint32 {
	if math.Float32bits(v)-1 < 0x7f800000 {
		return ^uint32(0)
	}
	return 0
}
