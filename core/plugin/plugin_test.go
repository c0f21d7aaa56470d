package plugin_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/rs/zerolog"

	"github.com/sslrun/sslrun/core/plugin"
	"github.com/sslrun/sslrun/core/plugin/internal/testplugin"
	"github.com/sslrun/sslrun/core/tensor"
	"github.com/sslrun/sslrun/internal/testenv"
)

// The test binary doubles as the plugin binary, as sslrun does: started
// with the handshake cookie it serves a fixture instead of running tests.
func TestMain(m *testing.M) {
	for n, f := range testplugin.Plugins() {
		plugin.Bundled[n] = f
	}
	if v, err := strconv.Atoi(os.Getenv("SSLRUN_TEST_SERVE_PROTOCOL")); err == nil {
		plugin.ServeProtocolForTest(v)
	}
	if name, ok := plugin.BundledName(); ok {
		if err := plugin.ServeBundled(name); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if os.Getenv(plugin.Handshake.MagicCookieKey) == plugin.Handshake.MagicCookieValue {
		plugin.Serve(testplugin.Quad()) // started as an external plugin
		os.Exit(0)
	}
	os.Exit(m.Run())
}

var modes = []string{"in-process", "subprocess"}

// transports adds the gRPC path of a subprocess: a protocol 2 plugin has
// no call channel, so its per-step calls travel over gRPC.
var transports = []string{"in-process", "subprocess", "subprocess-grpc"}

// syncBuf is a goroutine-safe log sink.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newHost(t testing.TB, arenaBytes int) (*plugin.Host, *syncBuf) {
	t.Helper()
	buf := &syncBuf{}
	log := zerolog.New(buf).Level(zerolog.DebugLevel)
	h, err := plugin.NewHost(plugin.HostOptions{Logger: &log, ArenaBytes: arenaBytes})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Errorf("host close: %v", err)
		}
	})
	return h, buf
}

func launch(t testing.TB, h *plugin.Host, name, mode string, spec plugin.LaunchSpec) *plugin.Client {
	t.Helper()
	var c *plugin.Client
	var err error
	switch mode {
	case "in-process":
		c, err = h.InProcess(plugin.Bundled[name]())
	case "subprocess", "subprocess-grpc":
		spec.Bundled = name
		if mode == "subprocess-grpc" {
			spec.Env = append(spec.Env, "SSLRUN_TEST_SERVE_PROTOCOL=2")
		}
		c, err = h.Launch(context.Background(), spec)
	default:
		t.Fatalf("unknown mode %q", mode)
	}
	if err != nil {
		t.Fatalf("launch %s: %v", name, err)
	}
	if mode == "subprocess-grpc" && c.Info().Protocol != 2 {
		t.Fatalf("%s: the plugin speaks protocol %d, want 2", mode, c.Info().Protocol)
	}
	// Protocol 3 plugins get the call channel, older ones gRPC only.
	if want := mode != "in-process" && c.Info().Protocol >= 3; c.CallChannelForTest() != want {
		t.Fatalf("%s: call channel in use = %v, want %v", mode, !want, want)
	}
	if spec.CallTimeout != 0 {
		c.SetCallTimeout(spec.CallTimeout)
	}
	return c
}

func parseBody(t testing.TB, src string) hcl.Body {
	t.Helper()
	f, diags := hclsyntax.ParseConfig([]byte(src), "pipeline.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	return f.Body
}

func configure(t testing.TB, c *plugin.Client, src string) {
	t.Helper()
	if diags := c.ConfigureBody(context.Background(), parseBody(t, src), nil); diags.HasErrors() {
		t.Fatalf("configure: %v", diags)
	}
}

func filled(t testing.TB, h *plugin.Host, inArena bool, f func(i int) float32, shape ...int) *tensor.T {
	t.Helper()
	var x *tensor.T
	if inArena {
		var err error
		if x, err = h.NewTensor(shape...); err != nil {
			t.Fatal(err)
		}
	} else {
		x = tensor.New(shape...)
	}
	for i := range x.Data {
		x.Data[i] = f(i)
	}
	return x
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-5*(1+math.Abs(b)) }

func TestLossContract(t *testing.T) {
	ctx := context.Background()
	for _, mode := range transports {
		t.Run(mode, func(t *testing.T) {
			h, logs := newHost(t, 0)
			c := launch(t, h, "quad", mode, plugin.LaunchSpec{})
			if info := c.Info(); info.Name != "quad" || info.Version != "0.1.0" || !slices.Equal(info.Kinds, []plugin.Kind{plugin.KindLoss}) {
				t.Fatalf("info %+v", info)
			}
			if c.Analyzer() != nil || c.Encoder() != nil {
				t.Fatal("quad claims kinds it does not have")
			}
			configure(t, c, "scale = 2\n")
			spec, err := c.Loss().Spec(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(spec.Inputs, []string{"a", "b"}) || spec.Target != plugin.TargetStopGrad ||
				!slices.Equal(spec.ProjectorDims, []int{8, 4}) || spec.Options["fixture"] != "true" {
				t.Fatalf("spec %+v", spec)
			}
			for step := int64(0); step < 3; step++ {
				if err := h.Reset(); err != nil {
					t.Fatal(err)
				}
				inArena := step%2 == 0 // zero-copy and copied inputs
				a := filled(t, h, inArena, func(i int) float32 { return float32(i) * 0.5 }, 4, 8)
				b := filled(t, h, inArena, func(i int) float32 { return float32(step) - float32(i%3) }, 4, 8)
				res, err := c.Loss().Compute(ctx, plugin.LossInputs{Step: plugin.Step{Step: step, Train: true},
					Tensors: map[string]*tensor.T{"a": a, "b": b}})
				if err != nil {
					t.Fatal(err)
				}
				var want float64
				for i := range a.Data {
					d := float64(a.Data[i] - b.Data[i])
					want += d * d
					if g := res.Grads["a"].Data[i]; !near(float64(g), 2*d) {
						t.Fatalf("step %d: grad a[%d] = %v, want %v", step, i, g, 2*d)
					}
					if g := res.Grads["b"].Data[i]; !near(float64(g), -2*d) {
						t.Fatalf("step %d: grad b[%d] = %v, want %v", step, i, g, -2*d)
					}
				}
				if !near(res.Loss, want) {
					t.Errorf("step %d: loss %v, want %v", step, res.Loss, want)
				}
				if !slices.Equal(res.Grads["a"].Shape, []int{4, 8}) {
					t.Errorf("grad shape %v", res.Grads["a"].Shape)
				}
				if len(res.Metrics) != 1 || res.Metrics[0].Name != "sq_dist" || res.Metrics[0].Context["tensor"] != "a-b" {
					t.Errorf("metrics %+v", res.Metrics)
				}
			}
			waitFor(t, func() bool { return strings.Contains(logs.String(), "quad configured") },
				"plugin log line in host log: %s", logs)
			if !strings.Contains(logs.String(), `"plugin":"quad"`) {
				t.Errorf("plugin logs not tagged with its name: %s", logs)
			}
		})
	}
}

// TestPluginStdout checks that a subprocess plugin's plain stdout reaches
// the host log tagged with its name.
func TestPluginStdout(t *testing.T) {
	h, logs := newHost(t, 0)
	c := launch(t, h, "quad", "subprocess", plugin.LaunchSpec{})
	configure(t, c, `fail = "print"`)
	waitFor(t, func() bool {
		s := logs.String()
		i := strings.Index(s, "quad says hi on stdout")
		if i < 0 {
			return false
		}
		line := s[strings.LastIndexByte(s[:i], '\n')+1:]
		return strings.Contains(line, `"plugin":"quad"`) && strings.Contains(line, `"stream":"stdout"`)
	}, "tagged stdout line in host log: %s", logs)
}

func waitFor(t *testing.T, cond func() bool, format string, args ...any) {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Errorf("timed out waiting for "+format, args...)
}

func TestAnalyzerContract(t *testing.T) {
	ctx := context.Background()
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			h, _ := newHost(t, 0)
			c := launch(t, h, "mean", mode, plugin.LaunchSpec{})
			configure(t, c, "")
			z := filled(t, h, true, func(i int) float32 { return float32(i + 1) }, 2, 2)
			ms, arrays, err := c.Analyzer().Observe(ctx, plugin.StepTensors{Step: plugin.Step{Step: 5},
				Tensors: map[string]*tensor.T{"z1": z}})
			if err != nil {
				t.Fatal(err)
			}
			if len(ms) != 1 || ms[0].Name != "mean" || ms[0].Value != 2.5 || ms[0].Context["tensor"] != "z1" {
				t.Fatalf("observe metrics %+v", ms)
			}
			if len(arrays) != 1 || arrays[0].Name != "count" || fmt.Sprint(arrays[0].T.Data) != "[1]" {
				t.Fatalf("observe arrays %+v", arrays)
			}
			e := filled(t, h, false, func(i int) float32 { return float32(i) }, 3, 2)
			ms, arrays, err = c.Analyzer().Evaluate(ctx, plugin.EvalSet{Step: plugin.Step{Step: 6}, Name: "val",
				Tensors: map[string]*tensor.T{"embeddings": e}})
			if err != nil {
				t.Fatal(err)
			}
			if len(ms) != 1 || ms[0].Value != 2.5 || ms[0].Context["set"] != "val" {
				t.Fatalf("evaluate metrics %+v", ms)
			}
			if len(arrays) != 1 || arrays[0].Name != "colmean" || fmt.Sprint(arrays[0].T.Data) != "[2 3]" {
				t.Fatalf("arrays %+v", arrays)
			}
		})
	}
}

func TestEncoderContract(t *testing.T) {
	ctx := context.Background()
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			h, _ := newHost(t, 0)
			c := launch(t, h, "matmul", mode, plugin.LaunchSpec{})
			configure(t, c, "")
			enc := c.Encoder()
			if err := enc.Build(ctx, plugin.EncoderSpec{InputShape: []int{3},
				Heads: []plugin.HeadSpec{{Name: "projector", Input: "backbone", Dims: []int{2}}}}); err != nil {
				t.Fatal(err)
			}
			// W = [[-3 -2] [-1 0] [1 2]] (i%7-3 row-major).
			x1 := filled(t, h, true, func(i int) float32 { return float32(i) }, 2, 3)
			x2 := filled(t, h, false, func(int) float32 { return 1 }, 1, 3)
			out, err := enc.Forward(ctx, plugin.Input{Step: plugin.Step{Step: 1, Train: true},
				Tensors: map[string]*tensor.T{"x1": x1, "x2": x2}})
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprint(out.Tensors["z1"].Data, out.Tensors["z2"].Data); got != "[1 4 -8 4] [-3 0]" {
				t.Fatalf("forward = %s", got)
			}
			ones := tensor.New(2, 2)
			ones.Fill(1)
			ms, err := enc.Backward(ctx, plugin.Input{Step: plugin.Step{Step: 1}, Tensors: map[string]*tensor.T{"z1": ones}})
			if err != nil {
				t.Fatal(err)
			}
			// dW[k][j] = sum_r x1[r][k] = [3 5 7] per column: norm sqrt(2*(9+25+49)).
			if len(ms) != 1 || !near(ms[0].Value, math.Sqrt(166)) {
				t.Fatalf("backward metrics %+v", ms)
			}
			path := filepath.Join(t.TempDir(), "w.bin")
			if err := enc.Save(ctx, path); err != nil {
				t.Fatal(err)
			}
			if ms, err = enc.Step(ctx, plugin.Optim{Step: plugin.Step{Step: 1}, LR: 0.5}); err != nil || ms[0].Value != 0.5 {
				t.Fatalf("step: %v %+v", err, ms)
			}
			x := filled(t, h, true, func(int) float32 { return 1 }, 1, 3)
			emb, err := enc.Embed(ctx, plugin.Input{Tensors: map[string]*tensor.T{"x": x}})
			if err != nil {
				t.Fatal(err)
			}
			// W - 0.5 dW, summed over rows: [-3 0] - 0.5*[15 15].
			if got := fmt.Sprint(emb.Data); got != "[-10.5 -7.5]" {
				t.Fatalf("embed after step = %s", got)
			}
			if err := enc.Load(ctx, path); err != nil {
				t.Fatal(err)
			}
			if emb, err = enc.Embed(ctx, plugin.Input{Tensors: map[string]*tensor.T{"x": x}}); err != nil || fmt.Sprint(emb.Data) != "[-3 0]" {
				t.Fatalf("embed after load = %v, %v", emb, err)
			}
		})
	}
}

// TestBackwardStep checks that BackwardStep is Backward then Step, through
// a Client in both modes (one call) and on a bare Encoder (two), and that a
// failed backward pass applies no step.
func TestBackwardStep(t *testing.T) {
	ctx := context.Background()
	for _, mode := range append(modes, "bare") {
		t.Run(mode, func(t *testing.T) {
			h, _ := newHost(t, 0)
			var enc plugin.Encoder
			if mode == "bare" {
				enc = plugin.Bundled["matmul"]().Encoder
			} else {
				enc = launch(t, h, "matmul", mode, plugin.LaunchSpec{}).Encoder()
			}
			if err := enc.Build(ctx, plugin.EncoderSpec{InputShape: []int{3},
				Heads: []plugin.HeadSpec{{Name: "projector", Input: "backbone", Dims: []int{2}}}}); err != nil {
				t.Fatal(err)
			}
			x1 := filled(t, h, true, func(i int) float32 { return float32(i) }, 2, 3)
			if _, err := enc.Forward(ctx, plugin.Input{Step: plugin.Step{Step: 1, Train: true},
				Tensors: map[string]*tensor.T{"x1": x1}}); err != nil {
				t.Fatal(err)
			}
			ones := tensor.New(2, 2)
			ones.Fill(1)
			o := plugin.Optim{Step: plugin.Step{Step: 1}, LR: 0.5}
			_, err := plugin.BackwardStep(ctx, enc, plugin.Input{Step: plugin.Step{Step: 1}, Tensors: map[string]*tensor.T{"nope": ones}}, o)
			if err == nil || !strings.Contains(err.Error(), "nope") {
				t.Fatalf("gradient on an unknown output: err = %v", err)
			}
			var ce *plugin.CallError
			if mode != "bare" && (!errors.As(err, &ce) || ce.Call != "Encoder.Backward+Step" || ce.Step != 1) {
				t.Errorf("err = %#v, want a CallError for Encoder.Backward+Step at step 1", err)
			}
			x := filled(t, h, true, func(int) float32 { return 1 }, 1, 3)
			emb, err := enc.Embed(ctx, plugin.Input{Tensors: map[string]*tensor.T{"x": x}})
			if err != nil || fmt.Sprint(emb.Data) != "[-3 0]" {
				t.Fatalf("embed after a failed backward = %v, %v: the step was applied", emb, err)
			}
			ms, err := plugin.BackwardStep(ctx, enc, plugin.Input{Step: plugin.Step{Step: 1}, Tensors: map[string]*tensor.T{"z1": ones}}, o)
			if err != nil {
				t.Fatal(err)
			}
			// Backward's gradient norm, then Step's lr.
			if len(ms) != 2 || !near(ms[0].Value, math.Sqrt(166)) || ms[1].Name != "lr" || ms[1].Value != 0.5 {
				t.Fatalf("metrics %+v", ms)
			}
			// W - 0.5 dW, summed over rows, as in TestEncoderContract.
			if emb, err = enc.Embed(ctx, plugin.Input{Tensors: map[string]*tensor.T{"x": x}}); err != nil || fmt.Sprint(emb.Data) != "[-10.5 -7.5]" {
				t.Fatalf("embed after BackwardStep = %v, %v", emb, err)
			}
		})
	}
}

func TestConfigDiagnostics(t *testing.T) {
	tests := []struct {
		name, src, want string
		line            int
	}{
		{"wrong type", `scale = "big"`, "Incorrect attribute value type", 1},
		{"unknown attribute", "\nscael = 2", `Did you mean "scale"?`, 2},
		{"rejected by plugin", "fail = \"\"\nscale = -1", "must be positive, got -1", 2},
	}
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			h, _ := newHost(t, 0)
			c := launch(t, h, "quad", mode, plugin.LaunchSpec{})
			for _, tc := range tests {
				diags := c.ConfigureBody(context.Background(), parseBody(t, tc.src), nil)
				if !diags.HasErrors() {
					t.Fatalf("%s: no error", tc.name)
				}
				d := diags[0]
				if !strings.Contains(d.Summary+" "+d.Detail, tc.want) {
					t.Errorf("%s: diag %q / %q, want %q", tc.name, d.Summary, d.Detail, tc.want)
				}
				if d.Subject == nil || d.Subject.Filename != "pipeline.hcl" || d.Subject.Start.Line != tc.line {
					t.Errorf("%s: subject %v, want pipeline.hcl line %d", tc.name, d.Subject, tc.line)
				}
			}
		})
	}
}

func quadInputs(h *plugin.Host, step int64) plugin.LossInputs {
	a, _ := h.NewTensor(2, 2)
	b, _ := h.NewTensor(2, 2)
	return plugin.LossInputs{Step: plugin.Step{Step: step}, Tensors: map[string]*tensor.T{"a": a, "b": b}}
}

// TestFailures checks that every way a plugin can fail ends in a CallError
// naming the plugin, its pid, the call and the step, and that a dead or
// hung plugin process is gone afterwards.
func TestFailures(t *testing.T) {
	tests := []struct {
		fail   string
		cause  error
		want   string
		fatal  bool
		inproc bool // meaningful in process too
	}{
		{"exit", plugin.ErrExited, "exit status 3", true, false},
		{"crash", plugin.ErrExited, "exit status 2): panic: quad: background panic", true, false},
		{"hang", plugin.ErrTimeout, "no answer within 300ms", true, false},
		{"panic", plugin.ErrPanic, "panic: quad: deliberate panic", true, true},
		{"error", plugin.ErrFailed, "quad: deliberate error", false, true},
		{"write-input", plugin.ErrPanic, "write to a read-only input tensor", true, false},
	}
	ctx := context.Background()
	for _, mode := range transports {
		for _, tc := range tests {
			if mode == "in-process" && !tc.inproc {
				continue
			}
			t.Run(mode+"/"+tc.fail, func(t *testing.T) {
				h, _ := newHost(t, 0)
				// Healthy calls get a deadline generous enough for a loaded
				// machine; only the call expected to hang gets the short one.
				c := launch(t, h, "quad", mode, plugin.LaunchSpec{CallTimeout: 30 * time.Second})
				configure(t, c, fmt.Sprintf("fail = %q\nfail_step = 2", tc.fail))
				if _, err := c.Loss().Compute(ctx, quadInputs(h, 1)); err != nil {
					t.Fatalf("step 1: %v", err)
				}
				if tc.fail == "hang" {
					c.SetCallTimeout(300 * time.Millisecond)
				}
				_, err := c.Loss().Compute(ctx, quadInputs(h, 2))
				var ce *plugin.CallError
				if !errors.As(err, &ce) || !errors.Is(err, tc.cause) {
					t.Fatalf("err = %v, want a CallError with cause %v", err, tc.cause)
				}
				msg := err.Error()
				t.Logf("error: %v", err)
				for _, s := range []string{`plugin "quad"`, fmt.Sprintf("pid %d", c.Pid()), "Loss.Compute", "step 2", tc.want} {
					if !strings.Contains(msg, s) {
						t.Errorf("error %q lacks %q", msg, s)
					}
				}
				_, err = c.Loss().Compute(ctx, quadInputs(h, 3))
				if tc.fatal != (err != nil) {
					t.Errorf("call after failure: err = %v, fatal = %v", err, tc.fatal)
				}
				if tc.fatal && mode != "in-process" {
					waitFor(t, func() bool { return !alive(c.Pid()) }, "pid %d to go", c.Pid())
				}
			})
		}
	}
}

// alive reports whether pid is a live (not zombie) process.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(fields) > 0 && fields[0] != "Z"
}

// children lists this process's live child processes.
func children() []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	self := strconv.Itoa(os.Getpid())
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) > 1 && fields[1] == self && fields[0] != "Z" {
			out = append(out, pid)
		}
	}
	return out
}

func TestCleanup(t *testing.T) {
	h, _ := newHost(t, 0)
	var pids []int
	for _, name := range []string{"quad", "mean", "matmul"} {
		c := launch(t, h, name, "subprocess", plugin.LaunchSpec{})
		pids = append(pids, c.Pid())
	}
	for _, pid := range pids {
		if !slices.Contains(children(), pid) {
			t.Fatalf("plugin pid %d is not a child", pid)
		}
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if left := children(); len(left) != 0 {
		t.Fatalf("children left after Close: %v", left)
	}
	if _, err := h.NewTensor(1); err == nil {
		t.Error("arena usable after Close")
	}
	if _, err := h.Launch(context.Background(), plugin.LaunchSpec{Bundled: "quad"}); err == nil {
		t.Error("launch after Close succeeded")
	}
	if left := children(); len(left) != 0 {
		t.Fatalf("children left after a failed launch: %v", left)
	}
}

func TestLaunchUnknownBundled(t *testing.T) {
	h, _ := newHost(t, 0)
	_, err := h.Launch(context.Background(), plugin.LaunchSpec{Bundled: "nope"})
	if err == nil || !strings.Contains(err.Error(), `no bundled plugin "nope" (have bench, matmul, mean, quad)`) {
		t.Fatalf("err = %v", err)
	}
	if left := children(); len(left) != 0 {
		t.Fatalf("children left: %v", left)
	}
}

func TestChecksum(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	lockPath := plugin.LockPath(filepath.Join(t.TempDir(), "w1.hcl"))
	lock, err := plugin.ReadLock(lockPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := lock.Pin("quad-ext", exe); err != nil {
		t.Fatal(err)
	}
	if err := lock.Write(lockPath); err != nil {
		t.Fatal(err)
	}
	if lock, err = plugin.ReadLock(lockPath); err != nil {
		t.Fatal(err)
	}
	good, err := lock.Checksum("quad-ext")
	if err != nil {
		t.Fatal(err)
	}
	h, _ := newHost(t, 0)
	c, err := h.Launch(context.Background(), plugin.LaunchSpec{Name: "quad-ext", Path: exe, SHA256: good})
	if err != nil {
		t.Fatalf("launch with the pinned checksum: %v", err)
	}
	if c.Info().Name != "quad" {
		t.Fatalf("info %+v", c.Info())
	}
	bad := slices.Clone(good)
	bad[0] ^= 0xff
	before := len(children())
	_, err = h.Launch(context.Background(), plugin.LaunchSpec{Name: "quad-ext", Path: exe, SHA256: bad})
	var ce *plugin.ChecksumError
	if !errors.As(err, &ce) || !errors.Is(err, plugin.ErrChecksum) {
		t.Fatalf("err = %v, want a ChecksumError", err)
	}
	for _, s := range []string{exe, fmt.Sprintf("%x", bad), fmt.Sprintf("%x", good)} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q lacks %q", err, s)
		}
	}
	if len(children()) != before {
		t.Error("a process was started despite the checksum mismatch")
	}
	if _, err := h.Launch(context.Background(), plugin.LaunchSpec{Path: exe}); err == nil {
		t.Error("external plugin launched without a checksum")
	}
}

// TestArenaGrowth sends more than both arenas hold: the host arena grows
// and the plugin maps the new segment through /proc; the plugin's output
// arena grows and the host maps it.
func TestArenaGrowth(t *testing.T) {
	h, _ := newHost(t, 4096)
	c := launch(t, h, "quad", "subprocess", plugin.LaunchSpec{OutputBytes: 4096})
	configure(t, c, "")
	for step, n := range []int{16, 4096, 70000, 100} {
		if err := h.Reset(); err != nil {
			t.Fatal(err)
		}
		a := filled(t, h, step%2 == 0, func(i int) float32 { return float32(i % 1000) }, n)
		b := filled(t, h, false, func(int) float32 { return 1 }, n)
		res, err := c.Loss().Compute(context.Background(), plugin.LossInputs{Step: plugin.Step{Step: int64(step)},
			Tensors: map[string]*tensor.T{"a": a, "b": b}})
		if err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		for i, g := range res.Grads["a"].Data {
			if g != a.Data[i]-1 {
				t.Fatalf("n=%d: grad[%d] = %v, want %v", n, i, g, a.Data[i]-1)
			}
		}
	}
	if h.ArenaBytes() < 2*70000*4 {
		t.Errorf("host arena did not grow: %d bytes", h.ArenaBytes())
	}
}

// benchStep is one step-sized round trip: 4 tensors of 512x512 in, 2 out.
func benchStep(b *testing.B, mode string) {
	h, _ := newHost(b, 8<<20)
	c := launch(b, h, "bench", mode, plugin.LaunchSpec{OutputBytes: 4 << 20})
	configure(b, c, "")
	loss := c.Loss()
	in := plugin.LossInputs{Tensors: map[string]*tensor.T{}}
	for i, name := range []string{"a", "b", "c", "d"} {
		// Inputs produced in the host arena, as the host does for its
		// encoder outputs: no copy on the way in.
		in.Tensors[name] = filled(b, h, true, func(j int) float32 { return float32(i*j%17) * 0.25 }, 512, 512)
	}
	ctx := context.Background()
	var compute float64
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		in.Step.Step = int64(i)
		res, err := loss.Compute(ctx, in)
		if err != nil {
			b.Fatal(err)
		}
		if res.Grads["a"].Data[1] != in.Tensors["a"].Data[1]-in.Tensors["b"].Data[1] {
			b.Fatal("wrong result")
		}
		compute += res.Metrics[0].Value
	}
	// The plugin's own compute time per call, so that the transport's share
	// (ns/op minus this) can be read off in either mode.
	b.ReportMetric(compute/float64(b.N), "compute-ns/op")
}

func BenchmarkStep(b *testing.B) {
	for _, mode := range modes {
		b.Run(mode, func(b *testing.B) { benchStep(b, mode) })
	}
}

// BenchmarkCall is the fixed cost of one call: two 2x2 inputs.
func BenchmarkCall(b *testing.B) {
	for _, mode := range modes {
		b.Run(mode, func(b *testing.B) {
			h, _ := newHost(b, 0)
			c := launch(b, h, "quad", mode, plugin.LaunchSpec{})
			configure(b, c, "")
			in := quadInputs(h, 0)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Loss().Compute(ctx, in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestExternalPlugin builds the one-file example plugin, finds it in a
// plugins directory, pins it in a lock file and runs it.
func TestExternalPlugin(t *testing.T) {
	testenv.Long(t)
	dir := t.TempDir()
	exe := filepath.Join(dir, plugin.ExternalPrefix+"mse")
	build := exec.Command("go", "build", "-o", exe, "github.com/sslrun/sslrun/core/plugin/internal/example/mse")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	path, err := plugin.Resolve("mse", dir)
	if err != nil {
		t.Fatal(err)
	}
	lockPath := plugin.LockPath(filepath.Join(dir, "p.hcl"))
	lock, _ := plugin.ReadLock(lockPath)
	if err := lock.Pin("mse", path); err != nil {
		t.Fatal(err)
	}
	sum, _ := lock.Checksum("mse")
	h, _ := newHost(t, 0)
	c, err := h.Launch(context.Background(), plugin.LaunchSpec{Name: "mse", Path: path, SHA256: sum})
	if err != nil {
		t.Fatal(err)
	}
	configure(t, c, "weight = 2")
	p := filled(t, h, true, func(i int) float32 { return float32(i) }, 2, 3)
	z := filled(t, h, true, func(int) float32 { return 1 }, 2, 3)
	res, err := c.Loss().Compute(context.Background(), plugin.LossInputs{Tensors: map[string]*tensor.T{"p1": p, "z2": z}})
	if err != nil {
		t.Fatal(err)
	}
	// sum (i-1)^2 for i<6 = 1+0+1+4+9+16 = 31; loss = 0.5*2*31.
	if res.Loss != 31 || fmt.Sprint(res.Grads["p1"].Data) != "[-2 0 2 4 6 8]" {
		t.Fatalf("loss %v grads %v", res.Loss, res.Grads["p1"].Data)
	}
	if diags := c.ConfigureBody(context.Background(), parseBody(t, "weight = -1"), nil); !diags.HasErrors() ||
		!strings.Contains(diags.Error(), "at least 0") {
		t.Fatalf("diags %v", diags)
	}
}

// TestConcurrentPlugins calls several plugins at once on the same step
// tensors, as a trainer running analyzers in parallel does: they share the
// read-only host arena.
func TestConcurrentPlugins(t *testing.T) {
	h, _ := newHost(t, 1<<16)
	var clients []*plugin.Client
	for i := 0; i < 3; i++ {
		c := launch(t, h, "mean", "subprocess", plugin.LaunchSpec{})
		configure(t, c, "")
		clients = append(clients, c)
	}
	ctx := context.Background()
	for step := int64(0); step < 5; step++ {
		if err := h.Reset(); err != nil {
			t.Fatal(err)
		}
		z := filled(t, h, true, func(i int) float32 { return float32(step) }, 64, 64)
		var wg sync.WaitGroup
		errs := make([]error, len(clients))
		for i, c := range clients {
			wg.Go(func() {
				// A private tensor per goroutine is copied into the shared
				// arena concurrently with the others.
				own := filled(t, h, false, func(int) float32 { return float32(i) }, 128, 64)
				ms, _, err := c.Analyzer().Observe(ctx, plugin.StepTensors{Step: plugin.Step{Step: step},
					Tensors: map[string]*tensor.T{"z": z, "own": own}})
				if err == nil {
					for _, m := range ms {
						want := float64(step)
						if m.Context["tensor"] == "own" {
							want = float64(i)
						}
						if m.Value != want {
							err = fmt.Errorf("client %d: %s mean %v, want %v", i, m.Context["tensor"], m.Value, want)
						}
					}
				}
				errs[i] = err
			})
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestReattach runs a plugin by hand in debug mode, as one would under a
// debugger, and attaches a host to it.
func TestReattach(t *testing.T) {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), plugin.EnvDebug+"=1", "SSLRUN_PLUGIN_BUNDLED=quad")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line := make(chan string, 1)
	go func() {
		var b bytes.Buffer
		one := make([]byte, 1)
		for {
			if _, err := stdout.Read(one); err != nil || one[0] == '\n' {
				line <- b.String()
				return
			}
			b.WriteByte(one[0])
		}
	}()
	var reattach string
	select {
	case l := <-line:
		var ok bool
		if reattach, ok = strings.CutPrefix(l, plugin.EnvReattach+"="); !ok {
			t.Fatalf("debug mode printed %q", l)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no reattach line from the debug-mode plugin")
	}
	h, _ := newHost(t, 0)
	c, err := h.Launch(context.Background(), plugin.LaunchSpec{Name: "quad-debug", Reattach: reattach})
	if err != nil {
		t.Fatal(err)
	}
	if c.Pid() != cmd.Process.Pid {
		t.Errorf("pid %d, want %d", c.Pid(), cmd.Process.Pid)
	}
	configure(t, c, "scale = 3")
	res, err := c.Loss().Compute(context.Background(), quadInputs(h, 7))
	if err != nil || res.Loss != 0 || len(res.Grads) != 2 {
		t.Fatalf("compute: %v %+v", err, res)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if !alive(cmd.Process.Pid) {
		t.Error("detaching stopped the debug-mode plugin")
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("debug-mode plugin exit: %v", err)
	}
}

// TestSetCallTimeoutConcurrent changes a client's call timeout while calls
// run; under -race it catches an unsynchronised write to the timeout.
func TestSetCallTimeoutConcurrent(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			h, _ := newHost(t, 0)
			c := launch(t, h, "quad", mode, plugin.LaunchSpec{})
			configure(t, c, "")
			ctx := context.Background()
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					c.SetCallTimeout(time.Duration(30+i%2) * time.Second)
					runtime.Gosched()
				}
			})
			for step := int64(1); step <= 20; step++ {
				if _, err := c.Loss().Compute(ctx, quadInputs(h, step)); err != nil {
					close(stop)
					wg.Wait()
					t.Fatalf("step %d: %v", step, err)
				}
			}
			close(stop)
			wg.Wait()
		})
	}
}

// TestBackwardStepProtocol1 plays an encoder plugin built before protocol 2,
// which ignores the optimizer fields on Backward: the host must send it the
// step as a call of its own. The host process has the opposite value in
// its own environment, which must not reach the plugin.
func TestBackwardStepProtocol1(t *testing.T) {
	ctx := context.Background()
	t.Setenv("SSLRUN_TEST_SERVE_PROTOCOL", "2")
	h, _ := newHost(t, 0)
	c := launch(t, h, "matmul", "subprocess", plugin.LaunchSpec{Env: []string{"SSLRUN_TEST_SERVE_PROTOCOL=1"}})
	if p := c.Info().Protocol; p != 1 {
		t.Fatalf("the plugin speaks protocol %d: the host's environment reached it", p)
	}
	enc := c.Encoder()
	if err := enc.Build(ctx, plugin.EncoderSpec{InputShape: []int{3},
		Heads: []plugin.HeadSpec{{Name: "projector", Input: "backbone", Dims: []int{2}}}}); err != nil {
		t.Fatal(err)
	}
	x1 := filled(t, h, true, func(i int) float32 { return float32(i) }, 2, 3)
	if _, err := enc.Forward(ctx, plugin.Input{Step: plugin.Step{Step: 1, Train: true}, Tensors: map[string]*tensor.T{"x1": x1}}); err != nil {
		t.Fatal(err)
	}
	ones := tensor.New(2, 2)
	ones.Fill(1)
	ms, err := plugin.BackwardStep(ctx, enc, plugin.Input{Step: plugin.Step{Step: 1}, Tensors: map[string]*tensor.T{"z1": ones}},
		plugin.Optim{Step: plugin.Step{Step: 1}, LR: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || ms[1].Name != "lr" {
		t.Fatalf("metrics %+v: want Backward's and Step's", ms)
	}
	x := filled(t, h, true, func(int) float32 { return 1 }, 1, 3)
	emb, err := enc.Embed(ctx, plugin.Input{Tensors: map[string]*tensor.T{"x": x}})
	if err != nil || fmt.Sprint(emb.Data) != "[-10.5 -7.5]" {
		t.Fatalf("embed after BackwardStep = %v, %v: the step was not applied", emb, err)
	}
}

// TestForwardedOutputs checks that one subprocess plugin's outputs reach
// another without a copy: the callee maps the producer's output segment
// (the host arena stays as the staged inputs left it), the values arrive
// intact, and when the callee cannot map it the host falls back to
// copying, once and for all.
func TestForwardedOutputs(t *testing.T) {
	ctx := context.Background()
	for _, broken := range []bool{false, true} {
		t.Run(fmt.Sprintf("broken=%v", broken), func(t *testing.T) {
			h, _ := newHost(t, 0)
			if broken {
				h.BreakForwardingForTest()
			}
			enc := launch(t, h, "matmul", "subprocess", plugin.LaunchSpec{}).Encoder()
			loss := launch(t, h, "quad", "subprocess", plugin.LaunchSpec{})
			configure(t, loss, "")
			an := launch(t, h, "mean", "subprocess", plugin.LaunchSpec{}).Analyzer()
			if err := enc.Build(ctx, plugin.EncoderSpec{InputShape: []int{3},
				Heads: []plugin.HeadSpec{{Name: "projector", Input: "backbone", Dims: []int{2}}}}); err != nil {
				t.Fatal(err)
			}
			for step := int64(1); step <= 2; step++ {
				if err := h.Reset(); err != nil {
					t.Fatal(err)
				}
				x1 := filled(t, h, true, func(i int) float32 { return float32(i) }, 2, 3)
				x2 := filled(t, h, true, func(i int) float32 { return float32(i % 2) }, 2, 3)
				staged := h.ArenaUsedForTest()
				out, err := enc.Forward(ctx, plugin.Input{Step: plugin.Step{Step: step, Train: true},
					Tensors: map[string]*tensor.T{"x1": x1, "x2": x2}})
				if err != nil {
					t.Fatal(err)
				}
				z1, z2 := out.Tensors["z1"], out.Tensors["z2"]
				var want float64
				for i := range z1.Data {
					d := float64(z1.Data[i] - z2.Data[i])
					want += 0.5 * d * d
				}
				res, err := loss.Loss().Compute(ctx, plugin.LossInputs{Step: plugin.Step{Step: step},
					Tensors: map[string]*tensor.T{"a": z1, "b": z2}})
				if err != nil {
					t.Fatalf("step %d: compute: %v", step, err)
				}
				if !near(res.Loss, want) {
					t.Fatalf("step %d: loss %v, want %v", step, res.Loss, want)
				}
				// The analyzer sees one plugin's outputs and another's gradients.
				ms, _, err := an.Observe(ctx, plugin.StepTensors{Step: plugin.Step{Step: step},
					Tensors: map[string]*tensor.T{"z1": z1, "grad/a": res.Grads["a"]}})
				if err != nil {
					t.Fatalf("step %d: observe: %v", step, err)
				}
				for _, m := range ms {
					src := z1
					if m.Context["tensor"] == "grad/a" {
						src = res.Grads["a"]
					}
					var sum float64
					for _, v := range src.Data {
						sum += float64(v)
					}
					if !near(m.Value, sum/float64(len(src.Data))) {
						t.Fatalf("step %d: analyzer mean of %s = %v, want %v", step, m.Context["tensor"], m.Value, sum/float64(len(src.Data)))
					}
				}
				copied := h.ArenaUsedForTest() - staged
				if !broken && copied != 0 {
					t.Fatalf("step %d: %d bytes copied into the host arena, want 0 (forwarded)", step, copied)
				}
				if broken && copied == 0 {
					t.Fatalf("step %d: nothing copied although the callees cannot map forwarded segments", step)
				}
			}
		})
	}
}

// TestCallCancelled checks that cancelling the host's context ends a call
// the plugin does not answer, on both transports, names the cause, and
// leaves no process behind.
func TestCallCancelled(t *testing.T) {
	for _, mode := range []string{"subprocess", "subprocess-grpc"} {
		t.Run(mode, func(t *testing.T) {
			h, _ := newHost(t, 0)
			c := launch(t, h, "quad", mode, plugin.LaunchSpec{CallTimeout: 30 * time.Second})
			configure(t, c, "fail = \"hang\"\nfail_step = 1")
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(200*time.Millisecond, cancel)
			start := time.Now()
			_, err := c.Loss().Compute(ctx, quadInputs(h, 1))
			if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "cancelled by the host") {
				t.Fatalf("err = %v, want the host's cancellation", err)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("the call ended %v after the cancellation", d)
			}
			waitFor(t, func() bool { return !alive(c.Pid()) }, "pid %d to go", c.Pid())
		})
	}
}
