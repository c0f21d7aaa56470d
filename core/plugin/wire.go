package plugin

import (
	"context"
	"fmt"
	"maps"

	"github.com/rs/zerolog"

	pb "github.com/sslrun/sslrun/core/plugin/proto"
	"github.com/sslrun/sslrun/core/plugin/shm"
	"github.com/sslrun/sslrun/core/tensor"
)

type ctxKey int

const (
	keyArena ctxKey = iota
	keyLogger
)

// NewTensor returns a tensor for a plugin call's output. In a subprocess it
// lives in the plugin's output arena, so returning it costs no copy; in
// process, and outside a call, it is an ordinary heap tensor. Its contents
// are uninitialised in the arena case: overwrite all of it. It stays valid
// until the plugin's next call.
func NewTensor(ctx context.Context, shape ...int) *tensor.T {
	if a, ok := ctx.Value(keyArena).(*shm.Arena); ok {
		if t, _, err := a.Alloc(shape...); err == nil {
			return t
		}
	}
	return tensor.New(shape...)
}

// Logger returns the logger for a plugin call: in a subprocess its lines go
// to the host's log tagged with the plugin's name; in process it is the
// host's logger with the same tag.
func Logger(ctx context.Context) *zerolog.Logger {
	if l, ok := ctx.Value(keyLogger).(*zerolog.Logger); ok {
		return l
	}
	l := zerolog.Nop()
	return &l
}

func withCall(ctx context.Context, a *shm.Arena, l *zerolog.Logger) context.Context {
	if a != nil {
		ctx = context.WithValue(ctx, keyArena, a)
	}
	return context.WithValue(ctx, keyLogger, l)
}

func refToPB(r shm.Ref) *pb.Ref {
	shape := make([]int64, len(r.Shape))
	for i, d := range r.Shape {
		shape[i] = int64(d)
	}
	return &pb.Ref{Segment: r.Segment, Offset: r.Offset, Shape: shape, Dtype: pb.DType(r.DType)}
}

func refFromPB(r *pb.Ref) (shm.Ref, error) {
	if r == nil {
		return shm.Ref{}, fmt.Errorf("missing tensor reference")
	}
	shape := make([]int, len(r.Shape))
	for i, d := range r.Shape {
		if d < 0 || d > 1<<40 {
			return shm.Ref{}, fmt.Errorf("bad shape %v", r.Shape)
		}
		shape[i] = int(d)
	}
	return shm.Ref{Segment: r.Segment, Offset: r.Offset, Shape: shape, DType: shm.DType(r.Dtype)}, nil
}

func descsToPB(ds []shm.Desc) *pb.Arenas {
	out := &pb.Arenas{Segments: make([]*pb.Segment, len(ds))}
	for i, d := range ds {
		out.Segments[i] = &pb.Segment{Id: d.ID, Size: d.Size, Fd: int32(d.FD), Pid: int32(d.Pid), OwnerFd: int32(d.OwnerFD)}
	}
	return out
}

func descsFromPB(a *pb.Arenas) []shm.Desc {
	out := make([]shm.Desc, len(a.GetSegments()))
	for i, s := range a.GetSegments() {
		out[i] = shm.Desc{ID: s.Id, Size: s.Size, FD: int(s.Fd), Pid: int(s.Pid), OwnerFD: int(s.OwnerFd)}
	}
	return out
}

// putTensors places tensors in an arena (zero-copy when they already live
// there) and returns their references.
func putTensors(a *shm.Arena, ts map[string]*tensor.T, scalars map[string]float64) (*pb.Tensors, error) {
	out := &pb.Tensors{Refs: make(map[string]*pb.Ref, len(ts)), Scalars: scalars}
	for name, t := range ts {
		if t == nil {
			return nil, fmt.Errorf("tensor %q is nil", name)
		}
		r, err := a.Put(t)
		if err != nil {
			return nil, fmt.Errorf("tensor %q: %w", name, err)
		}
		out.Refs[name] = refToPB(r)
	}
	return out, nil
}

// viewTensors resolves references against mapped segments.
func viewTensors(r *shm.Remote, ts *pb.Tensors) (map[string]*tensor.T, map[string]float64, error) {
	out := make(map[string]*tensor.T, len(ts.GetRefs()))
	for name, pr := range ts.GetRefs() {
		ref, err := refFromPB(pr)
		if err != nil {
			return nil, nil, fmt.Errorf("tensor %q: %w", name, err)
		}
		t, err := r.View(ref)
		if err != nil {
			return nil, nil, fmt.Errorf("tensor %q: %w", name, err)
		}
		out[name] = t
	}
	scalars := ts.GetScalars()
	if scalars == nil {
		scalars = map[string]float64{}
	}
	return out, scalars, nil
}

func stepToPB(s Step) *pb.StepInfo {
	return &pb.StepInfo{Step: s.Step, Epoch: s.Epoch, TotalSteps: s.TotalSteps, Train: s.Train}
}

func stepFromPB(s *pb.StepInfo) Step {
	return Step{Step: s.GetStep(), Epoch: s.GetEpoch(), TotalSteps: s.GetTotalSteps(), Train: s.GetTrain()}
}

func optimToPB(o Optim) *pb.OptimRequest {
	return &pb.OptimRequest{Step: stepToPB(o.Step), Lr: o.LR, GroupLr: o.GroupLR, Scalars: o.Scalars}
}

func optimFromPB(o *pb.OptimRequest) Optim {
	return Optim{Step: stepFromPB(o.GetStep()), LR: o.GetLr(), GroupLR: o.GetGroupLr(), Scalars: o.GetScalars()}
}

func metricsToPB(ms []Metric) []*pb.Metric {
	out := make([]*pb.Metric, len(ms))
	for i, m := range ms {
		out[i] = &pb.Metric{Name: m.Name, Value: m.Value, Context: m.Context}
	}
	return out
}

func metricsFromPB(ms []*pb.Metric) []Metric {
	out := make([]Metric, len(ms))
	for i, m := range ms {
		out[i] = Metric{Name: m.Name, Value: m.Value, Context: maps.Clone(m.Context)}
	}
	return out
}
