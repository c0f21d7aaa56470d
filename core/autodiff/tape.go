package autodiff

import (
	"errors"
	"fmt"
	"math"

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

	slot     int32 // planGrads: 1 + the gradient request the Var's gradient is
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
	if tp.reuseGrads {
		tp.planGrads(loss)
	}
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
		if o := n.out; tp.reuseGrads && o.base == nil && !o.param && o.Grad != nil {
			// Every op that reads o (they come later on the tape) has
			// run, and so has the one that made it: o.Grad is dead.
			// (It is already nil when the op handed the buffer on to
			// its operand: see passGrad.)
			o.Grad = nil
		}
	}
	if tp.reuseGrads {
		tp.dropViewGrads()
	}
	return nil
}

// planGrads plans the gradient buffers of a Backward with reuse. It
// replays the buffers' lifetimes on the tape (an operand's gradient is
// taken when the first op that reads it runs backward, as gradOf does, and
// is dead after the op that produced it has run backward) and then packs
// these intervals into as few bytes of buffers as it can: largest first,
// each into the first buffer none of whose intervals overlaps it (greedy
// by size, as static memory planners for inference do). gradOf then hands
// every Var the buffer the plan gave it. A repeated step makes the same
// plan, so the pool is allocated once, at the sizes the step needs.
func (tp *Tape) planGrads(loss *Var) {
	p := &tp.grads
	p.size, p.start, p.end = p.size[:0], p.start[:0], p.end[:0]
	for i := range tp.nodes {
		n := &tp.nodes[i]
		for _, v := range [...]*Var{n.out, n.a, n.b, n.c} {
			if v != nil {
				v.slot = 0
			}
		}
	}
	loss.slot = 0
	now := 0
	take := func(v *Var) {
		if v.base != nil {
			v = v.base
		}
		if !v.requires || v.param || v.slot != 0 {
			return
		}
		p.size = append(p.size, len(v.Value.Data))
		p.start = append(p.start, now)
		p.end = append(p.end, math.MaxInt)
		v.slot = int32(len(p.size))
	}
	take(loss)
	for i := len(tp.nodes) - 1; i >= 0; i-- {
		n := &tp.nodes[i]
		if n.out.slot == 0 {
			continue
		}
		now++
		if x := n.a; canPassGrad(n) && x.slot == 0 {
			// passGrad: the operand's gradient continues the output's.
			x.slot = n.out.slot
			for _, y := range [...]*Var{n.b, n.c} {
				if y != nil {
					take(y)
				}
			}
			continue
		}
		for _, x := range [...]*Var{n.a, n.b, n.c} {
			if x != nil {
				take(x)
			}
		}
		p.end[n.out.slot-1] = now
	}
	p.pack()
}

// canPassGrad reports whether the backward pass of nd may write its first
// operand's gradient over its output's gradient when that operand has no
// gradient yet (see passGrad): the op computes it elementwise from the
// output's gradient at the same index, after any reduction over that
// gradient, and the operand is an intermediate of the output's size.
func canPassGrad(nd *node) bool {
	x := nd.a
	return !clearGrads && nd.op == opBatchNorm && nd.t0 && x.requires && x.base == nil && !x.param &&
		len(x.Value.Data) == len(nd.out.Value.Data)
}

// passGrad gives nd's first operand, which has no gradient yet, nd's output
// gradient buffer as its own, for an op that then overwrites it in place
// with the operand's gradient: the output's gradient is dead after this op
// (every op reading the output has run backward), so with reuseGrads on
// the two need not be alive at once, which halves the gradient memory of a
// chain of convolutions and batch norms. It reports false, changing
// nothing, when the op must use a buffer of its own. It follows
// planGrads' decision (the two Vars then share one request), which the
// plan's buffer assignment relies on.
func (tp *Tape) passGrad(nd *node) ([]float32, bool) {
	x, o := nd.a, nd.out
	if !tp.reuseGrads || x.slot == 0 || x.slot != o.slot || x.Grad != nil || o.Grad == nil || o.base != nil {
		return nil, false
	}
	g := o.Grad.Data
	o.Grad = nil
	x.Grad = tp.tensorOf(g, x.Value.Shape)
	x.fresh = false
	return g, true
}

// gradPool holds the gradient buffers Backward recycles with reuseGrads
// on, and the plan (see planGrads) of which request uses which buffer.
// Its slices are reused from step to step, so a repeated step allocates
// nothing.
type gradPool struct {
	all [][]float32 // the buffers

	// Request r (a Var's slot - 1) needs size[r] floats from the op
	// numbered start[r] to end[r] (inclusive) and is given all[buf[r]].
	size, start, end, buf []int
	order                 []int   // requests, largest first
	users                 [][]int // per buffer: the requests given it
}

// pack assigns the requests to buffers and grows the buffers to fit.
func (p *gradPool) pack() {
	p.order = p.order[:0]
	for r := range p.size {
		p.order = append(p.order, r)
	}
	// Insertion sort: stable (ties keep request order, so the plan is
	// deterministic) and allocation-free; a tape has at most a few
	// hundred gradient requests.
	for i := 1; i < len(p.order); i++ {
		for j := i; j > 0 && p.size[p.order[j]] > p.size[p.order[j-1]]; j-- {
			p.order[j], p.order[j-1] = p.order[j-1], p.order[j]
		}
	}
	for b := range p.users {
		p.users[b] = p.users[b][:0]
	}
	nb := 0
	p.buf = p.buf[:0]
	for range p.size {
		p.buf = append(p.buf, -1)
	}
	for _, r := range p.order {
		b := 0
		for ; b < nb; b++ {
			if !p.overlaps(b, r) {
				break
			}
		}
		if b == nb {
			nb++
			if b == len(p.users) {
				p.users = append(p.users, nil)
			}
		}
		p.users[b] = append(p.users[b], r)
		p.buf[r] = b
	}
	// Buffer b's size is that of its first (largest) request.
	for b := 0; b < nb; b++ {
		n := p.size[p.users[b][0]]
		if b == len(p.all) {
			p.all = append(p.all, nil)
		}
		if cap(p.all[b]) < n {
			p.all[b] = make([]float32, n)
		}
	}
}

// overlaps reports whether request r's interval meets one of buffer b's.
func (p *gradPool) overlaps(b, r int) bool {
	for _, q := range p.users[b] {
		if p.start[q] <= p.end[r] && p.start[r] <= p.end[q] {
			return true
		}
	}
	return false
}

// get returns v's planned buffer, or a new one if the plan did not
// foresee v (it always does for the ops of this package).
func (p *gradPool) get(v *Var) []float32 {
	n := len(v.Value.Data)
	if v.slot > 0 && int(v.slot) <= len(p.buf) {
		if b := p.all[p.buf[v.slot-1]]; cap(b) >= n {
			return b[:n:n]
		}
	}
	return make([]float32, n)
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
			b = tp.grads.get(v)
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
