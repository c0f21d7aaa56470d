package plugin

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	goplugin "github.com/hashicorp/go-plugin"
	"github.com/hashicorp/hcl/v2"
	"github.com/rs/zerolog"
	"github.com/zclconf/go-cty/cty"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sslrun/sslrun/core/parallel"
	pb "github.com/sslrun/sslrun/core/plugin/proto"
	"github.com/sslrun/sslrun/core/plugin/shm"
	"github.com/sslrun/sslrun/core/tensor"
)

// Errors a plugin call can end with; match them with errors.Is on a
// *CallError. All but ErrFailed mean the plugin is gone or unusable: it
// has been killed and every later call returns the same error.
var (
	ErrExited  = errors.New("plugin process exited")
	ErrTimeout = errors.New("plugin call deadline exceeded")
	ErrPanic   = errors.New("plugin panicked")
	ErrFailed  = errors.New("plugin call returned an error")
	ErrClosed  = errors.New("plugin closed")
)

// CallError is the error of a failed plugin call. It names the plugin, its
// process id (the host's own in process), the call and the step.
type CallError struct {
	Plugin string
	Pid    int
	Call   string
	Step   int64
	Cause  error // one of ErrExited, ErrTimeout, ErrPanic, ErrFailed, ErrClosed, or a context error
	Err    error
}

// Error says which plugin, process, call and step failed, and how.
func (e *CallError) Error() string {
	return fmt.Sprintf("plugin %q (pid %d): %s at step %d: %v", e.Plugin, e.Pid, e.Call, e.Step, e.Err)
}

// Unwrap exposes both the cause class and the underlying error.
func (e *CallError) Unwrap() []error { return []error{e.Cause, e.Err} }

// DefaultCallTimeout bounds every plugin call unless LaunchSpec says
// otherwise. It is a hang detector, not a performance budget.
const DefaultCallTimeout = 5 * time.Minute

// closeTimeout bounds the Close RPC; a plugin that does not answer in time
// is killed anyway.
const closeTimeout = 5 * time.Second

// DefaultArenaBytes is the host arena's initial size; it grows on demand.
const DefaultArenaBytes = 64 << 20

// HostOptions configures a Host.
type HostOptions struct {
	// Logger receives host and plugin logs; plugin lines carry a "plugin"
	// field. The zero value discards them.
	Logger *zerolog.Logger
	// ArenaBytes is the host arena's initial size (DefaultArenaBytes if 0).
	ArenaBytes int
}

// Host owns the shared input arena and every plugin it starts. Close it
// on every path out of a run: it kills the children and unmaps the arena.
type Host struct {
	log   zerolog.Logger
	arena *shm.Arena

	mu      sync.Mutex
	clients map[*Client]struct{}
	serial  uint32 // of the last client added
	closed  bool

	// editForward, set only by tests, edits the description of a
	// forwarded segment (to make the callee fail to map it).
	editForward func(*shm.Desc)
}

// NewHost creates a host with its arena.
func NewHost(o HostOptions) (*Host, error) {
	h := &Host{log: zerolog.Nop(), clients: map[*Client]struct{}{}}
	if o.Logger != nil {
		h.log = *o.Logger
	}
	size := o.ArenaBytes
	if size == 0 {
		size = DefaultArenaBytes
	}
	a, err := shm.NewArena(size)
	if err != nil {
		return nil, fmt.Errorf("plugin host: %w", err)
	}
	h.arena = a
	// The host waits while its plugins compute; its runtime's monitor
	// thread must not preempt them (see parallel.QuietMonitor).
	if _, err := parallel.QuietMonitor(); err != nil {
		h.log.Warn().Err(err).Msg("host runtime monitor keeps its priority")
	}
	return h, nil
}

// NewTensor allocates a tensor in the host arena: passing it to a plugin
// then costs no copy. It is valid until the next Reset. Tensors elsewhere
// are copied into the arena when passed.
func (h *Host) NewTensor(shape ...int) (*tensor.T, error) {
	t, _, err := h.arena.Alloc(shape...)
	return t, err
}

// Reset starts a new step: tensors from NewTensor and copies made for
// earlier calls are released. Call it at each step's start, once views of
// the previous step are no longer used.
func (h *Host) Reset() error { return h.arena.Reset() }

// ArenaBytes is the host arena's current size.
func (h *Host) ArenaBytes() int { return h.arena.Size() }

// Close closes every plugin (killing any that do not exit) and unmaps the
// arena. Views into the arena or plugin outputs are invalid afterwards.
func (h *Host) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	clients := make([]*Client, 0, len(h.clients))
	for c := range h.clients {
		clients = append(clients, c)
	}
	h.mu.Unlock()
	var errs []error
	for _, c := range clients {
		if err := c.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, h.arena.Close())
	return errors.Join(errs...)
}

func (h *Host) add(c *Client) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return errors.New("plugin host is closed")
	}
	h.serial++
	c.serial = h.serial
	h.clients[c] = struct{}{}
	return nil
}

func (h *Host) remove(c *Client) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.clients, c)
}

// LaunchSpec says which plugin to start and how.
type LaunchSpec struct {
	// Name is the plugin's name in errors and logs; defaults to Bundled or
	// the executable's base name.
	Name string
	// Bundled selects a plugin compiled into the sslrun binary, started by
	// re-executing Executable (os.Executable() when empty).
	Bundled    string
	Executable string
	// Path is an external plugin executable; SHA256 is its pinned checksum
	// (from the lock file), required and verified before exec.
	Path   string
	SHA256 []byte
	// Reattach attaches to a plugin already running in debug mode (the
	// value of the SSLRUN_REATTACH line it printed) instead of starting
	// one. Close detaches without stopping it.
	Reattach string
	// CallTimeout bounds each call (DefaultCallTimeout if 0).
	CallTimeout time.Duration
	// StartTimeout bounds the start handshake (go-plugin's 1 minute if 0).
	StartTimeout time.Duration
	// OutputBytes hints the plugin's initial output arena size; it grows on
	// demand.
	OutputBytes int
	// Env adds "KEY=value" entries to the plugin's environment (it
	// inherits the host's otherwise), e.g. EnvThreads.
	Env []string
}

// Client is the host's handle on one plugin, running in a subprocess or
// in process. Its Loss, Analyzer and Encoder methods return the plugin's
// implementations of those interfaces. Calls on one Client must not
// overlap (each call reuses the plugin's output arena); different Clients
// may be called concurrently.
type Client struct {
	host    *Host
	name    string
	info    Info
	pid     int
	timeout time.Duration
	log     zerolog.Logger

	// Subprocess mode.
	gp        *goplugin.Client
	cmd       *exec.Cmd
	stderr    *tailWriter
	pc        pb.PluginClient
	lc        pb.LossClient
	ac        pb.AnalyzerClient
	ec        pb.EncoderClient
	inherited map[uint32]int // host segment id -> descriptor in the child
	// calls is the call channel (calls.go) of a plugin started by this
	// host that speaks protocol 3 or later; nil otherwise.
	calls    *callConn
	out      *shm.Remote // the plugin's output segments
	outBytes int
	serial   uint32 // this client's number in its host, for forwarded segment ids
	// noForward is set when the plugin could not map another plugin's
	// output segment (see Client.forward); its inputs are copied from then
	// on. Guarded by mu.
	noForward bool

	// In-process mode.
	local    *Plugin
	localOut *shm.Arena // NewTensor's arena, reset per call as in a subprocess
	localMu  sync.Mutex

	mu     sync.Mutex
	fatal  *CallError
	closed bool
}

// Launch starts a plugin subprocess and handshakes with it. On any error
// the child is killed.
func (h *Host) Launch(ctx context.Context, spec LaunchSpec) (_ *Client, err error) {
	name := spec.Name
	h.mu.Lock()
	closed := h.closed
	h.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("launch plugin %q: host is closed", name)
	}
	var cmd *exec.Cmd
	var secure *goplugin.SecureConfig
	switch {
	case spec.Bundled != "" && spec.Path != "":
		return nil, fmt.Errorf("launch plugin %q: both Bundled and Path set", name)
	case spec.Bundled != "":
		if name == "" {
			name = spec.Bundled
		}
		exe := spec.Executable
		if exe == "" {
			if exe, err = os.Executable(); err != nil {
				return nil, fmt.Errorf("launch bundled plugin %q: %w", name, err)
			}
		}
		cmd = exec.Command(exe, bundledArg, spec.Bundled)
		cmd.Env = append(os.Environ(), envBundled+"="+spec.Bundled)
		cmd.Env = append(cmd.Env, spec.Env...)
	case spec.Path != "":
		if name == "" {
			name = filepath.Base(spec.Path)
		}
		if len(spec.SHA256) == 0 {
			return nil, fmt.Errorf("launch plugin %q: no sha256 pinned for %s: add it to the lock file", name, spec.Path)
		}
		if err := VerifyChecksum(name, spec.Path, spec.SHA256); err != nil {
			return nil, err
		}
		cmd = exec.Command(spec.Path)
		cmd.Env = append(os.Environ(), spec.Env...)
		// go-plugin verifies again right before exec.
		secure = &goplugin.SecureConfig{Checksum: spec.SHA256, Hash: sha256.New()}
	case spec.Reattach != "":
		return h.reattach(ctx, name, spec)
	default:
		return nil, fmt.Errorf("launch plugin %q: neither Bundled nor Path set", name)
	}
	// If the host dies without cleaning up, the kernel kills the child.
	// (Pdeathsig follows the forking thread; Host.Close is the real
	// cleanup.)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}

	c := &Client{host: h, name: name, timeout: spec.CallTimeout, outBytes: spec.OutputBytes,
		inherited: map[uint32]int{}, out: shm.NewRemote(true), stderr: &tailWriter{}}
	if c.timeout == 0 {
		c.timeout = DefaultCallTimeout
	}
	c.log = h.log.With().Str("plugin", name).Logger()

	// The host arena's segments go to the child as descriptors 3, 4, ...,
	// reopened read-only so that the child cannot map them writable.
	for i, seg := range h.arena.Segments() {
		f, err := seg.ReadOnlyFile()
		if err != nil {
			closeFiles(cmd.ExtraFiles)
			return nil, fmt.Errorf("launch plugin %q: %w", name, err)
		}
		cmd.ExtraFiles = append(cmd.ExtraFiles, f)
		c.inherited[seg.ID()] = 3 + i
	}
	calls, child, err := newCallChannel()
	if err != nil {
		closeFiles(cmd.ExtraFiles)
		return nil, fmt.Errorf("launch plugin %q: %w", name, err)
	}
	cmd.Env = append(cmd.Env, fmt.Sprintf("%s=%d,%d", EnvCallFDs, 3+len(cmd.ExtraFiles), 4+len(cmd.ExtraFiles)))
	cmd.ExtraFiles = append(cmd.ExtraFiles, child[:]...)
	c.calls = calls
	defer closeFiles(cmd.ExtraFiles)

	c.cmd = cmd
	cfg := c.clientConfig(spec)
	cfg.Cmd, cfg.SecureConfig = cmd, secure
	c.gp = goplugin.NewClient(cfg)
	defer func() {
		if err != nil {
			c.gp.Kill()
			c.out.Close()
			if c.calls != nil {
				c.calls.Close()
			}
		}
	}()
	rpc, err := c.gp.Client()
	if err != nil {
		if errors.Is(err, goplugin.ErrChecksumsDoNotMatch) {
			actual, _ := HashFile(spec.Path)
			return nil, &ChecksumError{Plugin: name, Path: spec.Path, Expected: spec.SHA256, Actual: actual}
		}
		return nil, fmt.Errorf("start plugin %q (%s): %w%s", name, cmd.Path, err, c.stderr.last())
	}
	if cmd.Process != nil {
		c.pid = cmd.Process.Pid
	}
	if err = c.handshake(ctx, rpc); err != nil {
		return nil, err
	}
	if c.info.Protocol < 3 {
		// An older plugin ignores the channel: all its calls go over gRPC.
		c.calls.Close()
		c.calls = nil
	}
	return c, nil
}

// clientConfig is the go-plugin configuration shared by started and
// reattached plugins.
func (c *Client) clientConfig(spec LaunchSpec) *goplugin.ClientConfig {
	stream := func(s string) *lineWriter {
		return &lineWriter{emit: func(line string) { c.log.Info().Str("stream", s).Msg(line) }}
	}
	return &goplugin.ClientConfig{
		HandshakeConfig: Handshake,
		// Protocol 1 plugins still work: BackwardStep sends them the step
		// as a call of its own.
		VersionedPlugins: map[int]goplugin.PluginSet{
			1:               {pluginSetName: &grpcPlugin{}},
			2:               {pluginSetName: &grpcPlugin{}},
			ProtocolVersion: {pluginSetName: &grpcPlugin{}},
		},
		AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
		// The environment is built in Launch: the host's first, then ours,
		// so that a value the host process happens to have (say
		// SSLRUN_THREADS from the user's shell) cannot override the run's.
		// go-plugin would append the host's after ours, and exec keeps the
		// last of duplicate keys.
		SkipHostEnv:  true,
		AutoMTLS:     true,
		Logger:       newHCLogAdapter(c.log),
		Stderr:       c.stderr,
		SyncStdout:   stream("stdout"),
		SyncStderr:   stream("stderr"),
		StartTimeout: spec.StartTimeout,
		GRPCDialOptions: []grpc.DialOption{grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(maxMsgSize), grpc.MaxCallSendMsgSize(maxMsgSize)),
			grpc.WithInitialWindowSize(windowSize), grpc.WithInitialConnWindowSize(windowSize)},
	}
}

// reattach attaches to a plugin running in debug mode. It is not a child:
// the host arena reaches it through /proc/<host pid>/fd only.
func (h *Host) reattach(ctx context.Context, name string, spec LaunchSpec) (_ *Client, err error) {
	var ri reattachInfo
	if err := json.Unmarshal([]byte(strings.Trim(spec.Reattach, "'")), &ri); err != nil {
		return nil, fmt.Errorf("reattach plugin %q: parse %s: %w", name, EnvReattach, err)
	}
	var addr net.Addr
	switch ri.Network {
	case "unix":
		addr = &net.UnixAddr{Net: "unix", Name: ri.Address}
	case "tcp":
		if addr, err = net.ResolveTCPAddr("tcp", ri.Address); err != nil {
			return nil, fmt.Errorf("reattach plugin %q: %w", name, err)
		}
	default:
		return nil, fmt.Errorf("reattach plugin %q: unknown network %q", name, ri.Network)
	}
	if name == "" {
		name = fmt.Sprintf("reattached-%d", ri.Pid)
	}
	c := &Client{host: h, name: name, pid: ri.Pid, timeout: spec.CallTimeout, outBytes: spec.OutputBytes,
		inherited: map[uint32]int{}, out: shm.NewRemote(true), stderr: &tailWriter{}}
	if c.timeout == 0 {
		c.timeout = DefaultCallTimeout
	}
	c.log = h.log.With().Str("plugin", name).Logger()
	cfg := c.clientConfig(spec)
	// go-plugin negotiates nothing on reattach: it uses Plugins directly.
	if cfg.Plugins = cfg.VersionedPlugins[ri.Protocol]; cfg.Plugins == nil {
		return nil, fmt.Errorf("reattach plugin %q: protocol %d not supported (this host speaks %d)", name, ri.Protocol, ProtocolVersion)
	}
	cfg.VersionedPlugins = nil
	cfg.Reattach = &goplugin.ReattachConfig{Protocol: goplugin.ProtocolGRPC, ProtocolVersion: ri.Protocol, Addr: addr, Pid: ri.Pid, Test: true}
	c.gp = goplugin.NewClient(cfg)
	defer func() {
		if err != nil {
			c.gp.Kill()
			c.out.Close()
		}
	}()
	rpc, err := c.gp.Client()
	if err != nil {
		return nil, fmt.Errorf("reattach plugin %q (pid %d): %w", name, ri.Pid, err)
	}
	if err = c.handshake(ctx, rpc); err != nil {
		return nil, err
	}
	return c, nil
}

// handshake fetches the plugin's Info and registers the client.
func (c *Client) handshake(ctx context.Context, rpc goplugin.ClientProtocol) error {
	name := c.name
	raw, err := rpc.Dispense(pluginSetName)
	if err != nil {
		return fmt.Errorf("start plugin %q (pid %d): %w", name, c.pid, err)
	}
	conn := raw.(*grpc.ClientConn)
	c.pc, c.lc, c.ac, c.ec = pb.NewPluginClient(conn), pb.NewLossClient(conn), pb.NewAnalyzerClient(conn), pb.NewEncoderClient(conn)
	var info *pb.InfoResponse
	if err := c.invoke(ctx, "Info", 0, func(ctx context.Context) (err error) {
		info, err = c.pc.Info(ctx, &pb.Empty{})
		return err
	}); err != nil {
		return err
	}
	c.info = Info{Name: info.Name, Version: info.Version, Protocol: max(1, int(info.Protocol))}
	for _, k := range info.Kinds {
		c.info.Kinds = append(c.info.Kinds, Kind(k))
	}
	c.log.Debug().Int("pid", c.pid).Str("version", info.Version).Strs("kinds", info.Kinds).Msg("plugin started")
	return c.host.add(c)
}

// InProcess wraps p as a Client that calls it directly: no process, no
// RPC, no shared memory. Input tensors pass by pointer and are not
// write-protected; outputs from NewTensor come from a private arena with
// the same lifetime as in a subprocess (until the next call);
// errors and panics are reported as for a subprocess; a deadline is only
// seen by a plugin that watches ctx.
func (h *Host) InProcess(p Plugin) (*Client, error) {
	out, err := shm.NewArena(0)
	if err != nil {
		return nil, fmt.Errorf("plugin %q: %w", p.Name, err)
	}
	c := &Client{host: h, name: p.Name, info: p.Info(), pid: os.Getpid(), timeout: DefaultCallTimeout, local: &p, localOut: out}
	c.log = h.log.With().Str("plugin", p.Name).Logger()
	if err := h.add(c); err != nil {
		out.Close()
		return nil, err
	}
	return c, nil
}

// SetCallTimeout changes the per-call deadline. It may be called while
// calls are running; it applies to calls that start afterwards.
func (c *Client) SetCallTimeout(d time.Duration) {
	c.mu.Lock()
	c.timeout = d
	c.mu.Unlock()
}

// Name is the plugin's name in errors and logs.
func (c *Client) Name() string { return c.name }

// Info is what the plugin said about itself.
func (c *Client) Info() Info { return c.info }

// Pid is the plugin's process id (the host's own in process).
func (c *Client) Pid() int { return c.pid }

// Has reports whether the plugin implements kind k.
func (c *Client) Has(k Kind) bool { return slices.Contains(c.info.Kinds, k) }

// Schema fetches the plugin's configuration schema.
func (c *Client) Schema(ctx context.Context) (Schema, error) {
	if c.local != nil {
		return c.local.Schema, nil
	}
	var resp *pb.SchemaResponse
	if err := c.invoke(ctx, "ConfigSchema", 0, func(ctx context.Context) (err error) {
		resp, err = c.pc.ConfigSchema(ctx, &pb.Empty{})
		return err
	}); err != nil {
		return Schema{}, err
	}
	s, err := schemaFromPB(resp)
	if err != nil {
		return Schema{}, fmt.Errorf("plugin %q: schema: %w", c.name, err)
	}
	return s, nil
}

// Configure hands the plugin its decoded configuration. A rejection is a
// *ConfigError.
func (c *Client) Configure(ctx context.Context, cfg cty.Value) error {
	b, ty, err := marshalConfig(cfg)
	if err != nil {
		return fmt.Errorf("plugin %q: %w", c.name, err)
	}
	var diags []*pb.Diagnostic
	if c.local != nil {
		err = c.invoke(ctx, "Configure", 0, func(ctx context.Context) error {
			for _, comp := range c.local.components() {
				if cf, ok := comp.(Configurer); ok {
					if err := cf.Configure(c.localCtx(ctx), cfg); err != nil {
						diags = append(diags, configDiags(err)...)
					}
				}
			}
			return nil
		})
	} else {
		err = c.invoke(ctx, "Configure", 0, func(ctx context.Context) error {
			resp, err := c.pc.Configure(ctx, &pb.ConfigureRequest{Config: b, ConfigType: ty, OutputBytes: uint64(c.outBytes), Name: c.name})
			diags = resp.GetDiagnostics()
			return err
		})
	}
	if err != nil {
		return err
	}
	return configErrorFromPB(c.name, diags)
}

// ConfigureBody validates the plugin's HCL block against its schema,
// decodes it and configures the plugin. Diagnostics, the plugin's own
// rejections included, point into the block's source.
func (c *Client) ConfigureBody(ctx context.Context, body hcl.Body, ectx *hcl.EvalContext) hcl.Diagnostics {
	schema, err := c.Schema(ctx)
	if err != nil {
		return hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Plugin schema unavailable", Detail: err.Error()}}
	}
	val, diags := DecodeConfig(body, schema, ectx)
	if diags.HasErrors() {
		return diags
	}
	if err := c.Configure(ctx, val); err != nil {
		var ce *ConfigError
		if errors.As(err, &ce) {
			return append(diags, ce.Diagnostics(body)...)
		}
		return append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Plugin configuration failed", Detail: err.Error()})
	}
	return diags
}

// Close asks the plugin to release its resources and ends its process;
// views of its outputs are invalid afterwards.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	alive := c.fatal == nil
	c.mu.Unlock()
	defer c.host.remove(c)
	var err error
	if c.local != nil {
		var errs []error
		for _, comp := range c.local.components() {
			if cl, ok := comp.(Closer); ok {
				errs = append(errs, cl.Close(c.localCtx(context.Background())))
			}
		}
		return errors.Join(append(errs, c.localOut.Close())...)
	}
	if alive && !c.gp.Exited() {
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		_, err = c.pc.Close(ctx, &pb.Empty{})
		cancel()
		if err != nil {
			err = fmt.Errorf("plugin %q (pid %d): Close: %w", c.name, c.pid, err)
		}
	}
	c.gp.Kill()
	if c.calls != nil {
		c.calls.Close()
	}
	return errors.Join(err, c.out.Close())
}

// kill ends the subprocess at once (a hung or broken plugin cannot be
// asked to exit).
func (c *Client) kill() {
	if c.local != nil {
		return
	}
	if c.cmd != nil && c.cmd.Process != nil {
		_ = c.cmd.Process.Kill()
	}
	c.gp.Kill()
}

func (c *Client) localCtx(ctx context.Context) context.Context {
	return withCall(ctx, c.localOut, &c.log)
}

// invoke runs one call under the per-call deadline and classifies its
// failure. In process, f runs on the caller's goroutine (a goroutine hop
// would dominate a benchmark): panics are recovered, but the deadline is
// only as good as the plugin's respect for ctx.
func (c *Client) invoke(ctx context.Context, call string, step int64, f func(ctx context.Context) error) error {
	c.mu.Lock()
	if c.fatal != nil {
		fe := *c.fatal
		c.mu.Unlock()
		fe.Call, fe.Step = call, step
		return &fe
	}
	if c.closed {
		c.mu.Unlock()
		return &CallError{Plugin: c.name, Pid: c.pid, Call: call, Step: step, Cause: ErrClosed, Err: ErrClosed}
	}
	// Read under mu: SetCallTimeout may run concurrently.
	timeout := c.timeout
	c.mu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var err error
	if c.local != nil {
		err = runLocal(cctx, f)
	} else {
		// This process waits for the plugin's computation: its own
		// idle kernel workers must not poll on the cores that needs.
		parallel.Park()
		err = f(cctx)
	}
	if err == nil {
		return nil
	}
	return c.classify(ctx, cctx, timeout, call, step, err)
}

type panicError struct{ msg string }

func (e *panicError) Error() string { return e.msg }

func runLocal(ctx context.Context, f func(ctx context.Context) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &panicError{msg: panicPrefix + fmt.Sprint(r)}
		}
	}()
	return f(ctx)
}

func (c *Client) classify(ctx, cctx context.Context, timeout time.Duration, call string, step int64, err error) error {
	ce := &CallError{Plugin: c.name, Pid: c.pid, Call: call, Step: step, Err: err}
	st, _ := status.FromError(err)
	var pe *panicError
	fatal := true
	switch {
	case ctx.Err() != nil:
		ce.Cause, ce.Err = ctx.Err(), fmt.Errorf("cancelled by the host: %w", ctx.Err())
	case errors.Is(cctx.Err(), context.DeadlineExceeded) || (c.local == nil && st.Code() == codes.DeadlineExceeded):
		// The server may see the propagated deadline first and answer
		// DeadlineExceeded before the host's own timer fires.
		ce.Cause, ce.Err = ErrTimeout, fmt.Errorf("no answer within %v; plugin killed", timeout)
	case errors.As(err, &pe):
		ce.Cause, ce.Err = ErrPanic, errors.New(pe.msg)
	case c.local == nil && (st.Code() == codes.Unavailable || st.Code() == codes.Canceled || c.gp.Exited()):
		ce.Cause, ce.Err = ErrExited, errors.New(c.exitReason())
	case st.Code() == codes.Aborted && strings.HasPrefix(st.Message(), panicPrefix):
		ce.Cause, ce.Err = ErrPanic, errors.New(st.Message())
	default:
		fatal = false
		ce.Cause = ErrFailed
		if st != nil && c.local == nil {
			ce.Err = errors.New(st.Message())
		}
	}
	if fatal {
		c.mu.Lock()
		if c.fatal == nil {
			c.fatal = ce
		}
		c.mu.Unlock()
		c.log.Error().Int("pid", c.pid).Str("call", call).Int64("step", step).Err(ce.Err).Msg("plugin failed")
		c.kill()
	}
	return ce
}

// exitReason waits briefly for go-plugin to reap the process and says how
// it ended, with the first line of a Go crash from its stderr.
func (c *Client) exitReason() string {
	deadline := time.Now().Add(2 * time.Second)
	for !c.gp.Exited() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if !c.gp.Exited() {
		return "connection lost" + c.stderr.crash()
	}
	reason := "exited"
	if c.cmd != nil && c.cmd.ProcessState != nil {
		reason = "exited (" + c.cmd.ProcessState.String() + ")"
	}
	return reason + c.stderr.crash()
}

func closeFiles(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}

// tailWriter keeps the plugin's last raw stderr lines, to quote a crash.
type tailWriter struct {
	mu    sync.Mutex
	lines []string
	part  strings.Builder
}

// tailLines and tailLineMax bound the kept stderr: a plugin cannot make
// the host hold its whole output.
const (
	tailLines   = 64
	tailLineMax = 4096
)

func (w *tailWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, b := range p {
		if b != '\n' {
			if w.part.Len() < tailLineMax {
				w.part.WriteByte(b)
			}
			continue
		}
		w.lines = append(w.lines, w.part.String())
		w.part.Reset()
		if len(w.lines) > tailLines {
			w.lines = w.lines[len(w.lines)-tailLines:]
		}
	}
	return len(p), nil
}

// last returns ": <last non-empty line>" of the plugin's stderr (why it
// refused to start), or the crash line when there is one.
func (w *tailWriter) last() string {
	if c := w.crash(); c != "" {
		return c
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := len(w.lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(w.lines[i]); l != "" {
			return ": " + l
		}
	}
	return ""
}

// crash returns ": <first crash line>" when the tail holds a Go panic or
// fatal error, else "".
func (w *tailWriter) crash() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, l := range w.lines {
		for _, p := range []string{"panic: ", "fatal error: ", "unexpected fault address"} {
			if strings.HasPrefix(l, p) {
				return ": " + l
			}
		}
	}
	return ""
}
