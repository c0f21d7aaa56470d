package plugin

import (
	"context"
	"fmt"
	"slices"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/sslrun/sslrun/core/plugin/proto"
	"github.com/sslrun/sslrun/core/plugin/shm"
	"github.com/sslrun/sslrun/core/tensor"
)

// Loss returns the plugin's loss, or nil when it is not a loss. Output
// tensors (gradients) are views valid until the next call to this plugin.
func (c *Client) Loss() Loss {
	if !c.Has(KindLoss) {
		return nil
	}
	return lossClient{c}
}

// Analyzer returns the plugin's analyzer, or nil when it is not one.
func (c *Client) Analyzer() Analyzer {
	if !c.Has(KindAnalyzer) {
		return nil
	}
	return analyzerClient{c}
}

// Encoder returns the plugin's encoder, or nil when it is not one. Output
// tensors are views valid until the next call to this plugin.
func (c *Client) Encoder() Encoder {
	if !c.Has(KindEncoder) {
		return nil
	}
	return encoderClient{c}
}

// request stages in's tensors for the plugin and lists the segments they
// live in: no copy for tensors allocated with Host.NewTensor, nor (when
// forward is true) for outputs of another subprocess plugin, which the
// callee maps from that plugin directly; anything else is copied into the
// host arena.
func (c *Client) request(in Input, forward bool) (*pb.CallRequest, bool, error) {
	ts := &pb.Tensors{Refs: make(map[string]*pb.Ref, len(in.Tensors)), Scalars: in.Scalars}
	var fwd []shm.Desc
	for name, t := range in.Tensors {
		if t == nil {
			return nil, false, fmt.Errorf("plugin %q: stage inputs at step %d: tensor %q is nil", c.name, in.Step.Step, name)
		}
		r, ok := c.host.arena.Locate(t)
		if !ok && forward {
			var d shm.Desc
			if r, d, ok = c.host.forward(c, t); ok && !slices.ContainsFunc(fwd, func(e shm.Desc) bool { return e.ID == d.ID }) {
				fwd = append(fwd, d)
			}
		}
		if !ok {
			var err error
			if r, err = c.host.arena.Put(t); err != nil {
				return nil, false, fmt.Errorf("plugin %q: stage inputs at step %d: tensor %q: %w", c.name, in.Step.Step, name, err)
			}
		}
		ts.Refs[name] = refToPB(r)
	}
	segs := c.host.arena.Segments()
	descs := make([]shm.Desc, len(segs), len(segs)+len(fwd))
	for i, s := range segs {
		descs[i] = s.Desc()
		if fd, ok := c.inherited[s.ID()]; ok {
			descs[i].FD = fd
		}
	}
	descs = append(descs, fwd...)
	return &pb.CallRequest{Step: stepToPB(in.Step), Arenas: descsToPB(descs), Inputs: ts, Name: in.Name}, len(fwd) > 0, nil
}

// forwardedID marks a segment id as another plugin's output segment, so
// that it cannot clash with the host arena's ids (small counters from 1)
// in the callee's map of segments: the high bit, the owner's client number
// and the owner's own segment id.
func forwardedID(owner, seg uint32) (uint32, bool) {
	if owner >= 1<<15 || seg >= 1<<16 {
		return 0, false
	}
	return 1<<31 | owner<<16 | seg, true
}

// forward finds t in the output segments of a subprocess plugin other than
// to and returns its reference under a forwarded id with the segment's
// description: the callee opens the owner's /proc/<pid>/fd/<n> read-only.
// The tensor stays valid while the callee runs because the host calls
// plugins one at a time and an output lives until its owner's next call.
func (h *Host) forward(to *Client, t *tensor.T) (shm.Ref, shm.Desc, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for o := range h.clients {
		if o == to || o.out == nil {
			continue
		}
		r, d, ok := o.out.Locate(t)
		if !ok {
			continue
		}
		id, ok := forwardedID(o.serial, r.Segment)
		if !ok {
			return shm.Ref{}, shm.Desc{}, false
		}
		// The callee opens the owner's /proc path: no descriptor of its own.
		r.Segment, d.ID, d.FD = id, id, -1
		if h.editForward != nil {
			h.editForward(&d)
		}
		return r, d, true
	}
	return shm.Ref{}, shm.Desc{}, false
}

// outputs maps the plugin's announced output segments and resolves its
// output tensors as views.
func (c *Client) outputs(call string, step int64, resp *pb.CallResponse) (map[string]*tensor.T, map[string]float64, error) {
	if err := c.out.Sync(descsFromPB(resp.GetArenas())); err != nil {
		return nil, nil, &CallError{Plugin: c.name, Pid: c.pid, Call: call, Step: step, Cause: ErrFailed, Err: err}
	}
	ts, scalars, err := viewTensors(c.out, resp.GetOutputs())
	if err != nil {
		return nil, nil, &CallError{Plugin: c.name, Pid: c.pid, Call: call, Step: step, Cause: ErrFailed, Err: err}
	}
	return ts, scalars, nil
}

// invokeLocalOut is invoke for an in-process call that returns tensors: as
// in a subprocess, NewTensor allocates from the plugin's output arena,
// which the call resets, so outputs live until the next such call in both
// modes.
func (c *Client) invokeLocalOut(ctx context.Context, call string, step int64, f func(ctx context.Context) error) error {
	c.localMu.Lock()
	defer c.localMu.Unlock()
	if err := c.localOut.Reset(); err != nil {
		return fmt.Errorf("plugin %q: %s at step %d: output arena: %w", c.name, call, step, err)
	}
	return c.invoke(ctx, call, step, f)
}

// send makes call m: over the call channel when the plugin has one, else
// over gRPC.
func (c *Client) send(ctx context.Context, m method, req *pb.CallRequest) (*pb.CallResponse, error) {
	if c.calls != nil {
		return c.calls.call(ctx, m, req)
	}
	switch m {
	case methodForward:
		return c.ec.Forward(ctx, req)
	case methodBackward:
		return c.ec.Backward(ctx, req)
	case methodCompute:
		return c.lc.Compute(ctx, req)
	case methodObserve:
		return c.ac.Observe(ctx, req)
	case methodEvaluate:
		return c.ac.Evaluate(ctx, req)
	case methodEmbed:
		return c.ec.Embed(ctx, req)
	}
	return nil, status.Errorf(codes.Unimplemented, "unknown method %d", m)
}

// callRPC is the subprocess path shared by every tensor-carrying call;
// optim rides on Encoder.Backward only.
func (c *Client) callRPC(ctx context.Context, call string, m method, in Input, optim *pb.OptimRequest) (*pb.CallResponse, map[string]*tensor.T, map[string]float64, error) {
	c.mu.Lock()
	forward := !c.noForward
	c.mu.Unlock()
	req, forwarded, err := c.request(in, forward)
	if err != nil {
		return nil, nil, nil, err
	}
	var resp *pb.CallResponse
	var rpcErr error
	call1 := func(ctx context.Context) (err error) {
		req.Optim = optim
		resp, err = c.send(ctx, m, req)
		rpcErr = err
		return err
	}
	err = c.invoke(ctx, call, in.Step.Step, call1)
	if err != nil && forwarded && status.Code(rpcErr) == codes.FailedPrecondition {
		// The plugin could not open another plugin's segment (a system
		// that restricts /proc/<pid>/fd): it failed before computing
		// anything, so send the same call again with copied inputs.
		c.mu.Lock()
		c.noForward = true
		c.mu.Unlock()
		c.log.Warn().Err(rpcErr).Str("call", call).Msg("plugin cannot map other plugins' outputs; copying its inputs from now on")
		if req, _, err = c.request(in, false); err != nil {
			return nil, nil, nil, err
		}
		err = c.invoke(ctx, call, in.Step.Step, call1)
	}
	if err != nil {
		return nil, nil, nil, err
	}
	ts, scalars, err := c.outputs(call, in.Step.Step, resp)
	if err != nil {
		return nil, nil, nil, err
	}
	return resp, ts, scalars, nil
}

type lossClient struct{ c *Client }

func (l lossClient) Spec(ctx context.Context) (LossSpec, error) {
	c := l.c
	var spec LossSpec
	err := c.invoke(ctx, "Loss.Spec", 0, func(ctx context.Context) error {
		if c.local != nil {
			var err error
			spec, err = c.local.Loss.Spec(c.localCtx(ctx))
			return err
		}
		r, err := c.lc.Spec(ctx, &pb.Empty{})
		if err == nil {
			spec = lossSpecFromPB(r)
		}
		return err
	})
	return spec, err
}

func (l lossClient) Compute(ctx context.Context, in LossInputs) (LossResult, error) {
	c := l.c
	if c.local != nil {
		var r LossResult
		err := c.invokeLocalOut(ctx, "Loss.Compute", in.Step.Step, func(ctx context.Context) (err error) {
			r, err = c.local.Loss.Compute(c.localCtx(ctx), in)
			return err
		})
		return r, err
	}
	resp, ts, scalars, err := c.callRPC(ctx, "Loss.Compute", methodCompute, in, nil)
	if err != nil {
		return LossResult{}, err
	}
	return LossResult{Loss: scalars["loss"], Grads: ts, Metrics: metricsFromPB(resp.Metrics)}, nil
}

type analyzerClient struct{ c *Client }

func (a analyzerClient) Observe(ctx context.Context, in StepTensors) ([]Metric, []Array, error) {
	c := a.c
	if c.local != nil {
		var ms []Metric
		var arrays []Array
		err := c.invokeLocalOut(ctx, "Analyzer.Observe", in.Step.Step, func(ctx context.Context) (err error) {
			ms, arrays, err = c.local.Analyzer.Observe(c.localCtx(ctx), in)
			return err
		})
		return ms, arrays, err
	}
	resp, _, _, err := c.callRPC(ctx, "Analyzer.Observe", methodObserve, in, nil)
	if err != nil {
		return nil, nil, err
	}
	arrays, err := c.arrays("Analyzer.Observe", in.Step.Step, resp)
	if err != nil {
		return nil, nil, err
	}
	return metricsFromPB(resp.Metrics), arrays, nil
}

func (a analyzerClient) Evaluate(ctx context.Context, in EvalSet) ([]Metric, []Array, error) {
	c := a.c
	if c.local != nil {
		var ms []Metric
		var arrays []Array
		err := c.invokeLocalOut(ctx, "Analyzer.Evaluate", in.Step.Step, func(ctx context.Context) (err error) {
			ms, arrays, err = c.local.Analyzer.Evaluate(c.localCtx(ctx), in)
			return err
		})
		return ms, arrays, err
	}
	resp, _, _, err := c.callRPC(ctx, "Analyzer.Evaluate", methodEvaluate, in, nil)
	if err != nil {
		return nil, nil, err
	}
	arrays, err := c.arrays("Analyzer.Evaluate", in.Step.Step, resp)
	if err != nil {
		return nil, nil, err
	}
	return metricsFromPB(resp.Metrics), arrays, nil
}

// arrays resolves a response's arrays as views of the plugin's output
// arena.
func (c *Client) arrays(call string, step int64, resp *pb.CallResponse) ([]Array, error) {
	var arrays []Array
	for _, pa := range resp.Arrays {
		ref, err := refFromPB(pa.Ref)
		if err == nil {
			var t *tensor.T
			if t, err = c.out.View(ref); err == nil {
				arrays = append(arrays, Array{Name: pa.Name, T: t, Context: pa.Context})
				continue
			}
		}
		return nil, &CallError{Plugin: c.name, Pid: c.pid, Call: call, Step: step, Cause: ErrFailed,
			Err: fmt.Errorf("array %q: %w", pa.Name, err)}
	}
	return arrays, nil
}

type encoderClient struct{ c *Client }

func (e encoderClient) Build(ctx context.Context, spec EncoderSpec) error {
	c := e.c
	return c.invoke(ctx, "Encoder.Build", 0, func(ctx context.Context) error {
		if c.local != nil {
			return c.local.Encoder.Build(c.localCtx(ctx), spec)
		}
		_, err := c.ec.Build(ctx, encoderSpecToPB(spec))
		return err
	})
}

func (e encoderClient) Forward(ctx context.Context, in Input) (Output, error) {
	c := e.c
	if c.local != nil {
		var out Output
		err := c.invokeLocalOut(ctx, "Encoder.Forward", in.Step.Step, func(ctx context.Context) (err error) {
			out, err = c.local.Encoder.Forward(c.localCtx(ctx), in)
			return err
		})
		return out, err
	}
	resp, ts, scalars, err := c.callRPC(ctx, "Encoder.Forward", methodForward, in, nil)
	if err != nil {
		return Output{}, err
	}
	return Output{Tensors: ts, Scalars: scalars, Metrics: metricsFromPB(resp.Metrics)}, nil
}

func (e encoderClient) Backward(ctx context.Context, grads Input) ([]Metric, error) {
	return e.backward(ctx, "Encoder.Backward", grads, nil)
}

// backwardStep is BackwardStep for a Client's encoder: one call, the
// optimizer parameters riding on the Backward request.
func (e encoderClient) backwardStep(ctx context.Context, grads Input, o Optim) ([]Metric, error) {
	return e.backward(ctx, "Encoder.Backward+Step", grads, &o)
}

// oneCallStep says whether the plugin takes the step on Backward: protocol
// 2 and later (and in process).
func (e encoderClient) oneCallStep() bool { return e.c.info.Protocol >= 2 }

func (e encoderClient) backward(ctx context.Context, call string, grads Input, o *Optim) ([]Metric, error) {
	c := e.c
	if c.local != nil {
		var ms []Metric
		err := c.invokeLocalOut(ctx, call, grads.Step.Step, func(ctx context.Context) (err error) {
			if ms, err = c.local.Encoder.Backward(c.localCtx(ctx), grads); err != nil || o == nil {
				return err
			}
			sms, err := c.local.Encoder.Step(c.localCtx(ctx), *o)
			if err != nil {
				return fmt.Errorf("optimizer step: %w", err)
			}
			ms = append(ms, sms...)
			return nil
		})
		return ms, err
	}
	var optim *pb.OptimRequest
	if o != nil {
		optim = optimToPB(*o)
	}
	resp, _, _, err := c.callRPC(ctx, call, methodBackward, grads, optim)
	if err != nil {
		return nil, err
	}
	return metricsFromPB(resp.Metrics), nil
}

func (e encoderClient) Step(ctx context.Context, o Optim) ([]Metric, error) {
	c := e.c
	var ms []Metric
	err := c.invoke(ctx, "Encoder.Step", o.Step.Step, func(ctx context.Context) error {
		if c.local != nil {
			var err error
			ms, err = c.local.Encoder.Step(c.localCtx(ctx), o)
			return err
		}
		r, err := c.ec.Step(ctx, optimToPB(o))
		if err == nil {
			ms = metricsFromPB(r.Metrics)
		}
		return err
	})
	return ms, err
}

func (e encoderClient) Embed(ctx context.Context, in Input) (*tensor.T, error) {
	c := e.c
	if c.local != nil {
		var t *tensor.T
		err := c.invokeLocalOut(ctx, "Encoder.Embed", in.Step.Step, func(ctx context.Context) (err error) {
			t, err = c.local.Encoder.Embed(c.localCtx(ctx), in)
			return err
		})
		return t, err
	}
	_, ts, _, err := c.callRPC(ctx, "Encoder.Embed", methodEmbed, in, nil)
	if err != nil {
		return nil, err
	}
	t, ok := ts["embedding"]
	if !ok {
		return nil, &CallError{Plugin: c.name, Pid: c.pid, Call: "Encoder.Embed", Step: in.Step.Step, Cause: ErrFailed,
			Err: fmt.Errorf("no embedding returned")}
	}
	return t, nil
}

func (e encoderClient) Save(ctx context.Context, path string) error {
	return e.pathCall(ctx, "Encoder.Save", path)
}

func (e encoderClient) Load(ctx context.Context, path string) error {
	return e.pathCall(ctx, "Encoder.Load", path)
}

func (e encoderClient) pathCall(ctx context.Context, call, path string) error {
	c := e.c
	return c.invoke(ctx, call, 0, func(ctx context.Context) error {
		if c.local != nil {
			if call == "Encoder.Save" {
				return c.local.Encoder.Save(c.localCtx(ctx), path)
			}
			return c.local.Encoder.Load(c.localCtx(ctx), path)
		}
		var err error
		if call == "Encoder.Save" {
			_, err = c.ec.Save(ctx, &pb.PathRequest{Path: path})
		} else {
			_, err = c.ec.Load(ctx, &pb.PathRequest{Path: path})
		}
		return err
	})
}
