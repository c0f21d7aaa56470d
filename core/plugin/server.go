package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sslrun/sslrun/core/parallel"
	pb "github.com/sslrun/sslrun/core/plugin/proto"
	"github.com/sslrun/sslrun/core/plugin/shm"
	"github.com/sslrun/sslrun/core/tensor"
)

// Handshake is the fixed go-plugin handshake: a plugin binary started by
// anything but sslrun refuses to serve, and one built for another protocol
// version is rejected at start.
var Handshake = goplugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "SSLRUN_PLUGIN_MAGIC_COOKIE",
	MagicCookieValue: "0b5c1e3a9d6f4e72a8c1b0f5d3e79a46",
}

// pluginSetName is the single go-plugin entry each protocol version serves.
const pluginSetName = "sslrun"

// serveProtocol is the protocol version Serve speaks: ProtocolVersion,
// except in tests that play a plugin built before it.
var serveProtocol = ProtocolVersion

// maxMsgSize bounds gRPC messages. Tensor data never travels over gRPC,
// but large metric sets or schemas may exceed gRPC's 4 MiB default.
const maxMsgSize = 64 << 20

// windowSize is the HTTP/2 flow-control window of plugin connections, on
// both ends. Setting it turns off gRPC's dynamic window (BDP estimation),
// whose PING frames after received data wake the peer's reader goroutine,
// and with it a thread that preempts the peer's kernels mid-computation.
// Messages here carry references only, a few KiB at most, so a fixed 1 MiB
// window never throttles them.
const windowSize = 1 << 20

// panicPrefix marks a status message that carries a recovered panic.
const panicPrefix = "panic: "

// EnvThreads, when set in a plugin's environment (LaunchSpec.Env), is the
// number of threads its kernels use (core/parallel.SetThreads): a host
// that runs with a fixed thread count gives its plugins the same, so that
// results do not depend on where a computation runs.
const EnvThreads = "SSLRUN_THREADS"

// EnvCPUProfile, when set to a directory in a plugin's environment, makes
// the plugin write a CPU profile of its whole life to
// DIR/<plugin>-<pid>.pprof (finished when the host closes it), for `go tool
// pprof`: a plugin's time is otherwise invisible to the host's profiler.
const EnvCPUProfile = "SSLRUN_PLUGIN_CPUPROFILE"

// envBundled selects the bundled plugin a re-executed sslrun binary serves.
const envBundled = "SSLRUN_PLUGIN_BUNDLED"

// bundledArg is the argument a bundled plugin process is started with, so
// that ps shows what it is.
const bundledArg = "__sslrun-plugin"

// Bundled is the registry of plugins compiled into the sslrun binary. The
// command fills it at start-up; ServeBundled serves an entry in a
// re-executed child.
var Bundled = map[string]func() Plugin{}

// BundledName reports whether this process was started by a host to serve
// a bundled plugin, and which one. cmd/sslrun calls it first thing in main:
//
//	if name, ok := plugin.BundledName(); ok {
//		if err := plugin.ServeBundled(name); err != nil { ...exit 1 }
//		return
//	}
func BundledName() (string, bool) {
	name := os.Getenv(envBundled)
	return name, name != "" && (os.Getenv(Handshake.MagicCookieKey) == Handshake.MagicCookieValue || debugMode())
}

// EnvDebug, set to 1 when a plugin binary is run by hand, makes Serve run
// it in debug mode (under a debugger, say): it serves without a host,
// prints "SSLRUN_REATTACH=<json>" on stdout and waits for hosts to attach
// (LaunchSpec.Reattach) until interrupted. For a bundled plugin also set
// SSLRUN_PLUGIN_BUNDLED=<name>.
const EnvDebug = "SSLRUN_PLUGIN_DEBUG"

// EnvReattach is the variable debug mode prints; its value is what
// LaunchSpec.Reattach takes.
const EnvReattach = "SSLRUN_REATTACH"

func debugMode() bool { return os.Getenv(EnvDebug) == "1" }

// reattachInfo is the JSON form of a debug-mode plugin's address.
type reattachInfo struct {
	Pid      int    `json:"pid"`
	Network  string `json:"network"`
	Address  string `json:"address"`
	Protocol int    `json:"protocol_version"`
}

// ServeIfBundled returns at once unless this process was started by a host
// to serve a bundled plugin; then it serves it and exits the process (status
// 1 on failure). A main, or a TestMain whose test binary hosts re-execute,
// calls it first thing after filling Bundled.
func ServeIfBundled() {
	name, ok := BundledName()
	if !ok {
		return
	}
	if err := ServeBundled(name); err != nil {
		fmt.Fprintf(os.Stderr, "plugin %s: %v\n", name, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// ServeBundled serves the bundled plugin registered under name until the
// host closes it.
func ServeBundled(name string) error {
	f, ok := Bundled[name]
	if !ok {
		names := make([]string, 0, len(Bundled))
		for n := range Bundled {
			names = append(names, n)
		}
		sort.Strings(names)
		return fmt.Errorf("no bundled plugin %q (have %s)", name, strings.Join(names, ", "))
	}
	p := f()
	if p.Name == "" {
		p.Name = name
	}
	return serve(p)
}

// Serve serves p to the sslrun host that started this process and returns
// when the host closes it; it exits the process with status 1 on failure.
// It is all a plugin's main needs to call.
func Serve(p Plugin) {
	if err := serve(p); err != nil {
		fmt.Fprintf(os.Stderr, "plugin %s: %v\n", p.Name, err)
		os.Exit(1)
	}
}

func serve(p Plugin) error {
	if p.Name == "" {
		return errors.New("plugin has no name")
	}
	if p.Loss == nil && p.Analyzer == nil && p.Encoder == nil {
		return fmt.Errorf("plugin %s implements no kind", p.Name)
	}
	if v := os.Getenv(EnvThreads); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return fmt.Errorf("plugin %s: %s=%q: want a positive integer", p.Name, EnvThreads, v)
		}
		parallel.SetThreads(n)
	}
	// go-plugin replaces os.Stderr by a pipe it forwards line by line;
	// structured logs go to the real fd 2 as hclog JSON, which the host
	// parses. This process only serves the plugin, so zerolog's global
	// field names can be set to hclog's.
	stderr := os.NewFile(2, "stderr")
	zerolog.LevelFieldName = "@level"
	zerolog.MessageFieldName = "@message"
	log := zerolog.New(stderr).Level(zerolog.DebugLevel)
	s := &server{p: &p, in: shm.NewRemote(false), log: &log}
	if _, err := parallel.QuietMonitor(); err != nil {
		log.Warn().Err(err).Msg("plugin runtime monitor keeps its priority")
	}
	if serveProtocol >= 3 {
		req, ans, err := openCalls()
		if err != nil {
			return fmt.Errorf("plugin %s: %w", p.Name, err)
		}
		if req != nil {
			go s.serveCalls(req, ans)
		}
	}
	if dir := os.Getenv(EnvCPUProfile); dir != "" {
		stop, err := startCPUProfile(dir, p.Name)
		if err != nil {
			return fmt.Errorf("plugin %s: %s: %w", p.Name, EnvCPUProfile, err)
		}
		s.stopProfile = stop
	}
	defer s.in.Close()
	defer func() {
		// A call still running (hung) holds mu; the process is exiting
		// then and its mappings go with it, so do not wait for it.
		if !s.mu.TryLock() {
			return
		}
		defer s.mu.Unlock()
		if s.out != nil {
			s.out.Close()
		}
	}()
	cfg := &goplugin.ServeConfig{
		HandshakeConfig: Handshake,
		VersionedPlugins: map[int]goplugin.PluginSet{
			serveProtocol: {pluginSetName: &grpcPlugin{server: s}},
		},
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return grpc.NewServer(append(opts, grpc.MaxRecvMsgSize(maxMsgSize), grpc.MaxSendMsgSize(maxMsgSize),
				grpc.InitialWindowSize(windowSize), grpc.InitialConnWindowSize(windowSize))...)
		},
		Logger: hclog.New(&hclog.LoggerOptions{Name: p.Name, Level: hclog.Warn, Output: stderr, JSONFormat: true}),
	}
	if !debugMode() {
		goplugin.Serve(cfg)
		return nil
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	reattach := make(chan *goplugin.ReattachConfig, 1)
	closed := make(chan struct{})
	cfg.Test = &goplugin.ServeTestConfig{Context: ctx, ReattachConfigCh: reattach, CloseCh: closed}
	go goplugin.Serve(cfg)
	select {
	case rc := <-reattach:
		b, err := json.Marshal(reattachInfo{Pid: rc.Pid, Network: rc.Addr.Network(), Address: rc.Addr.String(), Protocol: rc.ProtocolVersion})
		if err != nil {
			return fmt.Errorf("debug mode: %w", err)
		}
		fmt.Printf("%s='%s'\n", EnvReattach, b)
	case <-closed:
		return errors.New("debug mode: server stopped before it was ready")
	}
	<-closed
	return nil
}

// grpcPlugin is the go-plugin glue: the server side registers the four
// services; the client side hands back the connection.
type grpcPlugin struct {
	goplugin.NetRPCUnsupportedPlugin
	server *server
}

func (g *grpcPlugin) GRPCServer(_ *goplugin.GRPCBroker, s *grpc.Server) error {
	pb.RegisterPluginServer(s, g.server)
	pb.RegisterLossServer(s, g.server)
	pb.RegisterAnalyzerServer(s, g.server)
	pb.RegisterEncoderServer(s, g.server)
	return nil
}

func (g *grpcPlugin) GRPCClient(_ context.Context, _ *goplugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return c, nil
}

// server implements every service over one Plugin. Calls are serialised:
// the output arena is reset per call and the host makes one call at a time.
type server struct {
	pb.UnimplementedPluginServer
	pb.UnimplementedLossServer
	pb.UnimplementedAnalyzerServer
	pb.UnimplementedEncoderServer

	p   *Plugin
	log *zerolog.Logger

	mu       sync.Mutex
	in       *shm.Remote // host segments, read-only
	out      *shm.Arena  // this plugin's output segments
	outBytes int
	// stopProfile finishes the EnvCPUProfile profile; guarded by mu.
	stopProfile func()
}

func (s *server) Info(context.Context, *pb.Empty) (*pb.InfoResponse, error) {
	info := s.p.Info()
	r := &pb.InfoResponse{Name: info.Name, Version: info.Version, Protocol: int32(serveProtocol)}
	for _, k := range info.Kinds {
		r.Kinds = append(r.Kinds, string(k))
	}
	return r, nil
}

func (s *server) ConfigSchema(context.Context, *pb.Empty) (*pb.SchemaResponse, error) {
	return schemaToPB(s.p.Schema)
}

func (s *server) Configure(ctx context.Context, req *pb.ConfigureRequest) (*pb.ConfigureResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cfg, err := unmarshalConfig(req.Config, req.ConfigType)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	s.outBytes = int(req.OutputBytes)
	var resp pb.ConfigureResponse
	err = s.guard("Configure", func() error {
		for _, c := range s.p.components() {
			if cf, ok := c.(Configurer); ok {
				if err := cf.Configure(s.ctx(ctx), cfg); err != nil {
					resp.Diagnostics = append(resp.Diagnostics, configDiags(err)...)
				}
			}
		}
		return nil
	})
	return &resp, err
}

func (s *server) Close(ctx context.Context, _ *pb.Empty) (*pb.Empty, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopProfile != nil {
		s.stopProfile()
		s.stopProfile = nil
	}
	err := s.guard("Close", func() error {
		var errs []error
		for _, c := range s.p.components() {
			if cl, ok := c.(Closer); ok {
				errs = append(errs, cl.Close(s.ctx(ctx)))
			}
		}
		return errors.Join(errs...)
	})
	return &pb.Empty{}, err
}

// ctx attaches the output arena and logger to a call's context. It reads
// s.out, so callers must hold s.mu.
func (s *server) ctx(ctx context.Context) context.Context { return withCall(ctx, s.out, s.log) }

// guard runs f turning panics, including faults from writes to read-only
// input tensors, into a status error the host recognises.
func (s *server) guard(call string, f func() error) (err error) {
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	defer func() {
		if r := recover(); r != nil {
			msg := fmt.Sprint(r)
			if fa, ok := r.(interface{ Addr() uintptr }); ok && s.in.Contains(fa.Addr()) {
				msg = fmt.Sprintf("write to a read-only input tensor at %#x (%v)", fa.Addr(), r)
			}
			s.log.Error().Str("call", call).Str("stack", string(debug.Stack())).Msg(panicPrefix + msg)
			err = status.Error(codes.Aborted, panicPrefix+msg)
		}
	}()
	if err := f(); err != nil {
		if _, ok := status.FromError(err); ok {
			return err
		}
		return status.Error(codes.Unknown, err.Error())
	}
	return nil
}

// begin prepares a call: maps newly announced host segments, resolves the
// inputs and resets the output arena.
func (s *server) begin(req *pb.CallRequest) (Input, error) {
	if err := s.in.Sync(descsFromPB(req.GetArenas())); err != nil {
		return Input{}, status.Errorf(codes.FailedPrecondition, "map host arena: %v", err)
	}
	ts, scalars, err := viewTensors(s.in, req.GetInputs())
	if err != nil {
		return Input{}, status.Errorf(codes.InvalidArgument, "inputs: %v", err)
	}
	if s.out == nil {
		if s.out, err = shm.NewArena(s.outBytes); err != nil {
			return Input{}, status.Errorf(codes.ResourceExhausted, "output arena: %v", err)
		}
	} else if err := s.out.Reset(); err != nil {
		return Input{}, status.Errorf(codes.ResourceExhausted, "output arena: %v", err)
	}
	return Input{Step: stepFromPB(req.GetStep()), Name: req.GetName(), Tensors: ts, Scalars: scalars}, nil
}

// finish places outputs in the output arena and lists its segments.
func (s *server) finish(resp *pb.CallResponse, out Output, arrays []Array) error {
	ts, err := putTensors(s.out, out.Tensors, out.Scalars)
	if err != nil {
		return status.Errorf(codes.ResourceExhausted, "outputs: %v", err)
	}
	resp.Outputs = ts
	resp.Metrics = metricsToPB(out.Metrics)
	for _, a := range arrays {
		if a.T == nil {
			return status.Errorf(codes.InvalidArgument, "array %q has no tensor", a.Name)
		}
		r, err := s.out.Put(a.T)
		if err != nil {
			return status.Errorf(codes.ResourceExhausted, "array %q: %v", a.Name, err)
		}
		resp.Arrays = append(resp.Arrays, &pb.Array{Name: a.Name, Ref: refToPB(r), Context: a.Context})
	}
	var descs []shm.Desc
	for _, seg := range s.out.Segments() {
		descs = append(descs, seg.Desc())
	}
	resp.Arenas = descsToPB(descs)
	return nil
}

// run is the common path of every tensor-carrying call.
func (s *server) run(ctx context.Context, call string, req *pb.CallRequest, f func(ctx context.Context, in Input) (Output, []Array, error)) (*pb.CallResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// The host computes nothing until this call returns; idle kernel
	// workers polling for more work would only take its cores.
	defer parallel.Park()
	in, err := s.begin(req)
	if err != nil {
		return nil, err
	}
	resp := &pb.CallResponse{}
	err = s.guard(call, func() error {
		out, arrays, err := f(s.ctx(ctx), in)
		if err != nil {
			return err
		}
		return s.finish(resp, out, arrays)
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func unimplemented(kind Kind) error {
	return status.Errorf(codes.Unimplemented, "plugin does not implement %s", kind)
}

func (s *server) Spec(ctx context.Context, _ *pb.Empty) (*pb.LossSpec, error) {
	if s.p.Loss == nil {
		return nil, unimplemented(KindLoss)
	}
	// s.ctx reads s.out, which begin assigns under s.mu.
	s.mu.Lock()
	defer s.mu.Unlock()
	var spec LossSpec
	err := s.guard("Loss.Spec", func() (err error) {
		spec, err = s.p.Loss.Spec(s.ctx(ctx))
		return err
	})
	if err != nil {
		return nil, err
	}
	return lossSpecToPB(spec), nil
}

func (s *server) Compute(ctx context.Context, req *pb.CallRequest) (*pb.CallResponse, error) {
	if s.p.Loss == nil {
		return nil, unimplemented(KindLoss)
	}
	return s.run(ctx, "Loss.Compute", req, func(ctx context.Context, in Input) (Output, []Array, error) {
		r, err := s.p.Loss.Compute(ctx, in)
		if err != nil {
			return Output{}, nil, err
		}
		return Output{Tensors: r.Grads, Scalars: map[string]float64{"loss": r.Loss}, Metrics: r.Metrics}, nil, nil
	})
}

func (s *server) Observe(ctx context.Context, req *pb.CallRequest) (*pb.CallResponse, error) {
	if s.p.Analyzer == nil {
		return nil, unimplemented(KindAnalyzer)
	}
	return s.run(ctx, "Analyzer.Observe", req, func(ctx context.Context, in Input) (Output, []Array, error) {
		ms, arrays, err := s.p.Analyzer.Observe(ctx, in)
		return Output{Metrics: ms}, arrays, err
	})
}

func (s *server) Evaluate(ctx context.Context, req *pb.CallRequest) (*pb.CallResponse, error) {
	if s.p.Analyzer == nil {
		return nil, unimplemented(KindAnalyzer)
	}
	return s.run(ctx, "Analyzer.Evaluate", req, func(ctx context.Context, in Input) (Output, []Array, error) {
		ms, arrays, err := s.p.Analyzer.Evaluate(ctx, in)
		return Output{Metrics: ms}, arrays, err
	})
}

func (s *server) Build(ctx context.Context, req *pb.EncoderSpec) (*pb.Empty, error) {
	if s.p.Encoder == nil {
		return nil, unimplemented(KindEncoder)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.guard("Encoder.Build", func() error { return s.p.Encoder.Build(s.ctx(ctx), encoderSpecFromPB(req)) })
	return &pb.Empty{}, err
}

func (s *server) Forward(ctx context.Context, req *pb.CallRequest) (*pb.CallResponse, error) {
	if s.p.Encoder == nil {
		return nil, unimplemented(KindEncoder)
	}
	return s.run(ctx, "Encoder.Forward", req, func(ctx context.Context, in Input) (Output, []Array, error) {
		out, err := s.p.Encoder.Forward(ctx, in)
		return out, nil, err
	})
}

func (s *server) Backward(ctx context.Context, req *pb.CallRequest) (*pb.CallResponse, error) {
	if s.p.Encoder == nil {
		return nil, unimplemented(KindEncoder)
	}
	o := req.GetOptim()
	if serveProtocol < 2 {
		o = nil // a protocol 1 plugin does not know the field
	}
	return s.run(ctx, "Encoder.Backward", req, func(ctx context.Context, in Input) (Output, []Array, error) {
		ms, err := s.p.Encoder.Backward(ctx, in)
		if err != nil || o == nil {
			return Output{Metrics: ms}, nil, err
		}
		// The host's BackwardStep: the step rides on this call.
		sms, err := s.p.Encoder.Step(ctx, optimFromPB(o))
		if err != nil {
			return Output{}, nil, fmt.Errorf("optimizer step: %w", err)
		}
		return Output{Metrics: append(ms, sms...)}, nil, nil
	})
}

func (s *server) Step(ctx context.Context, req *pb.OptimRequest) (*pb.CallResponse, error) {
	if s.p.Encoder == nil {
		return nil, unimplemented(KindEncoder)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	resp := &pb.CallResponse{}
	err := s.guard("Encoder.Step", func() error {
		ms, err := s.p.Encoder.Step(s.ctx(ctx), optimFromPB(req))
		resp.Metrics = metricsToPB(ms)
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func (s *server) Embed(ctx context.Context, req *pb.CallRequest) (*pb.CallResponse, error) {
	if s.p.Encoder == nil {
		return nil, unimplemented(KindEncoder)
	}
	return s.run(ctx, "Encoder.Embed", req, func(ctx context.Context, in Input) (Output, []Array, error) {
		t, err := s.p.Encoder.Embed(ctx, in)
		if err != nil {
			return Output{}, nil, err
		}
		return Output{Tensors: map[string]*tensor.T{"embedding": t}}, nil, nil
	})
}

func (s *server) Save(ctx context.Context, req *pb.PathRequest) (*pb.Empty, error) {
	if s.p.Encoder == nil {
		return nil, unimplemented(KindEncoder)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.guard("Encoder.Save", func() error { return s.p.Encoder.Save(s.ctx(ctx), req.Path) })
	return &pb.Empty{}, err
}

func (s *server) Load(ctx context.Context, req *pb.PathRequest) (*pb.Empty, error) {
	if s.p.Encoder == nil {
		return nil, unimplemented(KindEncoder)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.guard("Encoder.Load", func() error { return s.p.Encoder.Load(s.ctx(ctx), req.Path) })
	return &pb.Empty{}, err
}

func lossSpecToPB(s LossSpec) *pb.LossSpec {
	return &pb.LossSpec{Predictor: s.Predictor, Target: string(s.Target), TauBase: s.TauBase, TauFinal: s.TauFinal,
		TauSchedule: s.TauSchedule, ProjectorDims: ints64(s.ProjectorDims), PredictorDims: ints64(s.PredictorDims),
		Inputs: s.Inputs, Options: s.Options}
}

func lossSpecFromPB(s *pb.LossSpec) LossSpec {
	return LossSpec{Predictor: s.Predictor, Target: Target(s.Target), TauBase: s.TauBase, TauFinal: s.TauFinal,
		TauSchedule: s.TauSchedule, ProjectorDims: ints(s.ProjectorDims), PredictorDims: ints(s.PredictorDims),
		Inputs: s.Inputs, Options: s.Options}
}

func encoderSpecToPB(s EncoderSpec) *pb.EncoderSpec {
	r := &pb.EncoderSpec{InputShape: ints64(s.InputShape), Target: string(s.Target), Options: s.Options}
	for _, h := range s.Heads {
		r.Heads = append(r.Heads, &pb.EncoderSpec_Head{Name: h.Name, Input: h.Input, Dims: ints64(h.Dims)})
	}
	return r
}

func encoderSpecFromPB(s *pb.EncoderSpec) EncoderSpec {
	r := EncoderSpec{InputShape: ints(s.InputShape), Target: Target(s.Target), Options: s.Options}
	for _, h := range s.Heads {
		r.Heads = append(r.Heads, HeadSpec{Name: h.Name, Input: h.Input, Dims: ints(h.Dims)})
	}
	return r
}

func ints64(xs []int) []int64 {
	out := make([]int64, len(xs))
	for i, x := range xs {
		out[i] = int64(x)
	}
	return out
}

func ints(xs []int64) []int {
	out := make([]int, len(xs))
	for i, x := range xs {
		out[i] = int(x)
	}
	return out
}

// startCPUProfile starts profiling into dir/<name>-<pid>.pprof and returns
// the function that finishes the file.
func startCPUProfile(dir, name string) (func(), error) {
	path := filepath.Join(dir, fmt.Sprintf("%s-%d.pprof", name, os.Getpid()))
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("profile %s: %w", path, err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
