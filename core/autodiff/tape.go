package autodiff

import (
	"errors"
	"fmt"

	"github.com/sslrun/sslrun/core/kernel"
	"github.com/sslrun/sslrun/core/tensor"
)

// Var is a value in a computation and, after Backward, its gradient.
//
// Value and Grad have the same shape. For a parameter (NewParam) Grad is
// allocated once and Backward adds into it. For a Var made by a Tape, Grad is
// nil until Backward writes dLoss/dVar into a buffer from the tape's arena;
// both Value and Grad are then valid until the tape's next Reset.
type Var struct {
	// Value is the forward value. Ops never modify an operand's Value.
	Value *tensor.T
	// Grad is dLoss/dValue: accumulated across Backward calls for parameters
	// and Leaf vars, written by the last Backward for intermediates.
	Grad *tensor.T
	// Name labels parameters (checkpoints, optimizer groups, logs); ops leave
	// it empty.
	Name string

	slot     int32 // planGrads: 1 + the buffer the Var's gradient uses
	requires bool  // gradient flows into this Var
	param    bool  // Grad is persistent or pre-zeroed: always accumulate
	fresh    bool  // Grad buffer taken from the arena but not yet written

	// base is set for views (Reshape, SliceRows): Value is
	// base.Value.Data[off:off+len], and so is Grad, which makes the view's
	// backward pass a no-op.
	base *Var
	off  int
}

// NewParam returns a persistent leaf that requires grad, over t (not copied),
// with a zeroed Grad of the same shape allocated once. The optimizer updates
// Value and zeroes Grad in place; a Tape never reallocates either.
func NewParam(name string, t *tensor.T) *Var {
	return &Var{
		Value:    t,
		Grad:     tensor.New(t.Shape...),
		Name:     name,
		requires: true,
		param:    true,
	}
}

// RequiresGrad reports whether gradient flows into v: true for parameters,
// Leaf vars and results of ops recorded with at least one such operand.
func (v *Var) RequiresGrad() bool { return v.requires }

// Shape is v.Value.Shape.
func (v *Var) Shape() []int { return v.Value.Shape }

// Len is the number of elements of v.Value.
func (v *Var) Len() int { return len(v.Value.Data) }

// Item returns the only element of a 1-element Var (a loss); it panics
// otherwise.
func (v *Var) Item() float32 {
	if len(v.Value.Data) != 1 {
		panic(fmt.Sprintf("autodiff: Item of a %v Var", v.Value.Shape))
	}
	return v.Value.Data[0]
}

// Tape records the ops of one step for Backward and owns the memory of
// everything it hands out. The zero value is an empty tape in grad mode,
// ready to use; NewTape is equivalent. Keep one Tape per training loop (and
// per goroutine) for its whole life: its arena is what makes steps
// allocation-free.
type Tape struct {
	nodes  []node
	noGrad bool

	// reuseGrads makes Backward hand an intermediate's gradient buffer to
	// later ops once the op that produced the intermediate has consumed it.
	reuseGrads bool
	grads      gradPool

	vals arena
	idx  arena32
	vars slab[Var]
	hdrs slab[tensor.T]
	ints intSlab

	ewT ewTask
	row rowTask
	ws  kernel.Workspace
}

// NewTape returns an empty tape in grad mode.
func NewTape() *Tape { return &Tape{} }

// Reset starts a new step: it forgets the recorded ops and rewinds the arena
// and slabs, so every Var, Value and Grad the tape handed out before is
// invalid afterwards. Grad mode is left as it was.
func (tp *Tape) Reset() {
	for i := range tp.nodes {
		tp.nodes[i] = node{}
	}
	tp.nodes = tp.nodes[:0]
	tp.vals.reset()
	tp.idx.reset()
	tp.vars.reset()
	tp.hdrs.reset()
	tp.ints.reset()
}

// SetGrad turns recording on (enabled) or off and returns the previous
// setting. With recording off, ops compute values only: their results do
// not require grad and Backward will not see them.
func (tp *Tape) SetGrad(enabled bool) (prev bool) {
	prev = !tp.noGrad
	tp.noGrad = !enabled
	return prev
}

// SetReuseGrads turns gradient-buffer reuse on or off and returns the
// previous setting. With it on, Backward recycles the gradient buffer of each
// intermediate Var as soon as the op that produced the Var has passed the
// gradient on to its operands, so the gradients of a step need about as much
// memory as the largest few live at once instead of one buffer per op; in
// exchange, the Grad of every intermediate Var is nil after Backward (the
// Grads of parameters and Leaf vars are unaffected). Training loops, which
// read only the parameters' gradients, turn it on; analyzers that read the
// gradient acting on an intermediate leave it off (the default). The
// gradients computed are the same either way, bit for bit.
func (tp *Tape) SetReuseGrads(on bool) (prev bool) {
	prev = tp.reuseGrads
	tp.reuseGrads = on
	return prev
}

// GradEnabled reports whether ops are being recorded.
func (tp *Tape) GradEnabled() bool { return !tp.noGrad }

// NoGrad turns recording off and returns a function that restores the
// previous mode:
//
//	defer tp.NoGrad()()
//
// The returned closure is allocated; hot loops that toggle the mode every
// step should use SetGrad, which does not allocate.
func (tp *Tape) NoGrad() (restore func()) {
	prev := tp.SetGrad(false)
	return func() { tp.SetGrad(prev) }
}

// Input returns a non-differentiable leaf over t (not copied). t must stay
// unchanged until Backward has run.
func (tp *Tape) Input(t *tensor.T) *Var {
	v := tp.vars.get()
	v.Value = t
	return v
}

// Leaf returns a differentiable leaf over t (not copied) whose Grad is a
// zeroed arena buffer that Backward adds into. Use it for inputs whose
// gradient is wanted (gradient checks, saliency, analyzers); it is valid until
// Reset. In no-grad mode it behaves like Input.
func (tp *Tape) Leaf(t *tensor.T) *Var {
	v := tp.Input(t)
	if tp.noGrad {
		return v
	}
	v.requires = true
	v.param = true
	v.Grad = tp.tensorOf(tp.vals.get(len(t.Data)), t.Shape)
	clear(v.Grad.Data)
	return v
}

// Detach returns a Var with x's Value through which no gradient flows: the
// stop-gradient sg(x). No copy is made.
func (tp *Tape) Detach(x *Var) *Var {
	v := tp.vars.get()
	v.Value = x.Value
	return v
}

// Len is the number of ops recorded since the last Reset.
func (tp *Tape) Len() int { return len(tp.nodes) }

// Backward propagates from loss, which must have exactly one element and
// require grad, back through every recorded op. It adds (+=) into the Grad
// of every parameter and Leaf the loss depends on and writes the Grad of
// every intermediate Var on the way (see the package doc). Calling it again
// before Reset recomputes the intermediates' gradients and adds to the
// parameters' again.
func (tp *Tape) Backward(loss *Var) error {
	if loss == nil {
		return errors.New("autodiff: backward: nil loss")
	}
	if n := len(loss.Value.Data); n != 1 {
		return fmt.Errorf("autodiff: backward: loss has shape %v (%d elements), want 1 element", loss.Value.Shape, n)
	}
	if !loss.requires {
		return errors.New("autodiff: backward: loss does not require grad (no parameter reaches it, or it was computed in no-grad mode)")
	}
	// A second Backward of the same step starts from clean intermediates.
	for i := range tp.nodes {
		if o := tp.nodes[i].out; o.base == nil && !o.param {
			o.Grad = nil
		}
	}
	if tp.reuseGrads && len(tp.grads.all) == 0 {
		tp.planGrads(loss)
	}
	tp.grads.reset()
	g, overwrite := tp.gradOf(loss)
	if overwrite {
		g[0] = 1
	} else {
		g[0]++
	}
	for i := len(tp.nodes) - 1; i >= 0; i-- {
		n := &tp.nodes[i]
		if n.out.Grad == nil {
			continue // no gradient reached this op
		}
		tp.backward(n)
		if o := n.out; tp.reuseGrads && o.base == nil && !o.param {
			// Every op that reads o (they come later on the tape) has
			// run, and so has the one that made it: o.Grad is dead.
			tp.grads.put(o.Grad.Data)
			o.Grad = nil
		}
	}
	if tp.reuseGrads {
		tp.dropViewGrads()
	}
	return nil
}

// planGrads sizes the empty gradient pool before the first Backward with
// reuse: it replays the gradient buffers' lifetimes (an operand's buffer is
// taken when the first op that reads it runs backward, and freed after the
// op that produced it) on buffer sizes only, so that the pool is allocated
// once at the sizes the step needs instead of growing through smaller
// buffers that would linger as garbage.
func (tp *Tape) planGrads(loss *Var) {
	var p sizePool
	take := func(v *Var) {
		if v.base != nil {
			v = v.base
		}
		if !v.requires || v.param || v.slot != 0 {
			return
		}
		v.slot = int32(p.get(len(v.Value.Data))) + 1
	}
	take(loss)
	for i := len(tp.nodes) - 1; i >= 0; i-- {
		n := &tp.nodes[i]
		if n.out.slot == 0 {
			continue
		}
		for _, x := range [...]*Var{n.a, n.b, n.c} {
			if x != nil {
				take(x)
			}
		}
		p.free[n.out.slot-1] = true
		n.out.slot = 0
	}
	for _, n := range p.size {
		if n > 0 {
			tp.grads.all = append(tp.grads.all, make([]float32, n))
		}
	}
}

// sizePool is gradPool on sizes alone, for planGrads.
type sizePool struct {
	size []int
	free []bool
}

func (p *sizePool) get(n int) int {
	best, big := -1, -1
	for i, c := range p.size {
		if !p.free[i] {
			continue
		}
		if c >= n && (best < 0 || c < p.size[best]) {
			best = i
		}
		if big < 0 || c > p.size[big] {
			big = i
		}
	}
	switch {
	case best >= 0:
	case big >= 0:
		best = big // grow the largest free buffer rather than add one
		p.size[best] = n
	default:
		best = len(p.size)
		p.size = append(p.size, n)
		p.free = append(p.free, false)
	}
	p.free[best] = false
	return best
}

// dropViewGrads clears the Grad of every view: it aliased a base's buffer
// that has been recycled.
func (tp *Tape) dropViewGrads() {
	for ci := 0; ci <= tp.vars.ci && ci < len(tp.vars.chunks); ci++ {
		c := tp.vars.chunks[ci]
		if ci == tp.vars.ci {
			c = c[:tp.vars.pos]
		}
		for i := range c {
			if c[i].base != nil && !c[i].base.param {
				c[i].Grad = nil
			}
		}
	}
}

// gradOf returns the gradient buffer of v for an op that is about to
// contribute dLoss/dv. overwrite reports that the buffer holds stale data and
// the op must store its contribution (and every element of it), not add it.
func (tp *Tape) gradOf(v *Var) (g []float32, overwrite bool) {
	if v.base != nil {
		n := len(v.Value.Data)
		var gb []float32
		if n == len(v.base.Value.Data) {
			gb, overwrite = tp.gradOf(v.base)
		} else {
			gb = tp.gradZero(v.base)
		}
		g = gb[v.off : v.off+n : v.off+n]
		if v.Grad == nil {
			v.Grad = tp.tensorOf(g, v.Value.Shape)
		} else {
			v.Grad.Data = g // a repeated Backward may have moved the base's buffer
		}
		return g, overwrite
	}
	if v.Grad == nil {
		var b []float32
		if tp.reuseGrads {
			b = tp.grads.get(len(v.Value.Data))
		} else {
			b = tp.vals.get(len(v.Value.Data))
		}
		v.Grad = tp.tensorOf(b, v.Value.Shape)
		v.fresh = true
		if clearGrads {
			clear(v.Grad.Data)
			v.fresh = false
		}
	}
	overwrite = v.fresh
	v.fresh = false
	return v.Grad.Data, overwrite
}

// clearGrads makes gradOf zero every new intermediate gradient buffer and
// let all ops accumulate, the simpler design the first-writer-overwrites
// scheme replaces. Only the benchmark comparing the two sets it.
var clearGrads bool

// gradZero is gradOf for ops that add into only part of the buffer: a stale
// buffer is zeroed first.
func (tp *Tape) gradZero(v *Var) []float32 {
	g, overwrite := tp.gradOf(v)
	if overwrite {
		clear(g)
	}
	return g
}

// tensorOf returns a pooled header over data with a pooled copy of shape.
func (tp *Tape) tensorOf(data []float32, shape []int) *tensor.T {
	t := tp.hdrs.get()
	t.Data = data
	t.Shape = tp.ints.get(len(shape))
	copy(t.Shape, shape)
	return t
}

// out returns a new result Var with an arena Value of the given shape,
// requiring grad when any of the operands does and recording is on.
func (tp *Tape) out(shape []int, a, b, c *Var) *Var {
	v := tp.vars.get()
	v.Value = tp.tensorOf(tp.vals.get(tensor.Numel(shape)), shape)
	v.requires = !tp.noGrad && (req(a) || req(b) || req(c))
	return v
}

func req(v *Var) bool { return v != nil && v.requires }

// record appends a node for out when it requires grad and returns it (nil
// otherwise, in which case the caller skips saving state).
func (tp *Tape) record(k opKind, out, a, b, c *Var) *node {
	if !out.requires {
		return nil
	}
	tp.nodes = append(tp.nodes, node{op: k, out: out, a: a, b: b, c: c})
	return &tp.nodes[len(tp.nodes)-1]
}

// scratch returns an arena buffer of n floats (contents undefined).
func (tp *Tape) scratch(n int) []float32 { return tp.vals.get(n) }

// arena hands out float32 buffers in request order and recycles them after
// reset: the k-th request after a reset reuses the k-th buffer if it is big
// enough. A step that repeats with the same shapes therefore allocates
// nothing after its first run.
type arena struct {
	bufs [][]float32
	pos  int
}

func (a *arena) get(n int) []float32 {
	if a.pos < len(a.bufs) {
		b := a.bufs[a.pos]
		if cap(b) < n {
			b = make([]float32, n)
			a.bufs[a.pos] = b
		}
		a.pos++
		return b[:n:n]
	}
	b := make([]float32, n)
	a.bufs = append(a.bufs, b)
	a.pos++
	return b
}

func (a *arena) reset() { a.pos = 0 }

// gradPool holds the gradient buffers Backward recycles with reuseGrads on.
// Every buffer is free when a Backward starts; get takes the smallest free
// one that is big enough (allocating only when none is) and put returns one.
// A step that repeats the same ops makes the same requests, so after the
// first steps the pool has grown to fit them and allocates nothing.
type gradPool struct {
	all  [][]float32 // every buffer, in allocation order
	free [][]float32
}

func (p *gradPool) reset() {
	p.free = append(p.free[:0], p.all...)
}

func (p *gradPool) get(n int) []float32 {
	if n == 0 {
		return nil
	}
	best := -1
	for i, b := range p.free {
		if cap(b) >= n && (best < 0 || cap(b) < cap(p.free[best])) {
			best = i
		}
	}
	if best < 0 && len(p.free) > 0 {
		// Replace the largest free buffer by a bigger one rather than
		// add a buffer: buffer sizes only grow, so a repeated step
		// soon finds all it needs.
		big := 0
		for i, b := range p.free {
			if cap(b) > cap(p.free[big]) {
				big = i
			}
		}
		for i, a := range p.all {
			if &a[:1][0] == &p.free[big][:1][0] {
				p.all[i] = make([]float32, n)
				p.free[big] = p.all[i]
				break
			}
		}
		best = big
	}
	if best < 0 {
		b := make([]float32, n)
		p.all = append(p.all, b)
		return b
	}
	b := p.free[best]
	last := len(p.free) - 1
	copy(p.free[best:], p.free[best+1:])
	p.free[last] = nil
	p.free = p.free[:last]
	return b[:n:n]
}

// put returns b, which get handed out (possibly shortened), to the free
// list.
func (p *gradPool) put(b []float32) {
	if cap(b) == 0 {
		return
	}
	for _, a := range p.all {
		if &a[:1][0] == &b[:1][0] {
			p.free = append(p.free, a)
			return
		}
	}
}

// arena32 is arena for int32 buffers (max-pool argmax).
type arena32 struct {
	bufs [][]int32
	pos  int
}

func (a *arena32) get(n int) []int32 {
	if a.pos == len(a.bufs) {
		a.bufs = append(a.bufs, nil)
	}
	b := a.bufs[a.pos]
	if cap(b) < n {
		b = make([]int32, n)
		a.bufs[a.pos] = b
	}
	a.pos++
	return b[:n:n]
}

func (a *arena32) reset() { a.pos = 0 }

// Bytes reports the memory held by the tape's arena, for diagnostics.
func (tp *Tape) Bytes() int {
	n := 0
	for _, b := range tp.vals.bufs {
		n += 4 * cap(b)
	}
	for _, b := range tp.grads.all {
		n += 4 * cap(b)
	}
	return n
}

// slab hands out zeroed *T from fixed-size chunks that never move, so the
// pointers stay valid while the slab grows; reset recycles them.
type slab[T any] struct {
	chunks  [][]T
	ci, pos int
}

const slabChunk = 256

func (s *slab[T]) get() *T {
	if s.pos == slabChunk {
		s.ci++
		s.pos = 0
	}
	if s.ci == len(s.chunks) {
		s.chunks = append(s.chunks, make([]T, slabChunk))
	}
	p := &s.chunks[s.ci][s.pos]
	s.pos++
	var zero T
	*p = zero
	return p
}

func (s *slab[T]) reset() { s.ci, s.pos = 0, 0 }

// intSlab hands out small []int (shapes, targets, indices) from chunks.
type intSlab struct {
	chunks  [][]int
	ci, pos int
}

func (s *intSlab) get(k int) []int {
	for {
		if s.ci == len(s.chunks) {
			s.chunks = append(s.chunks, make([]int, max(4096, k)))
		}
		c := s.chunks[s.ci]
		if s.pos+k <= len(c) {
			r := c[s.pos : s.pos+k : s.pos+k]
			s.pos += k
			return r
		}
		s.ci++
		s.pos = 0
	}
}

func (s *intSlab) reset() { s.ci, s.pos = 0, 0 }
