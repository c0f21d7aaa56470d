// Command step times sslrun's training step on the canonical benchmark
// workloads of ../shared/bench/torch_baseline.py (W1 mlp-mnist, W2
// convnet-cifar, W3 resnet18-cifar; SimSiam, SimCLR, BYOL) with the same
// protocol as that script, and prints one JSON line per block.
//
// By default the step runs as sslrun runs plugins: the encoder
// (plugins/encoder: model, optimizer, EMA target) and the loss (the bundled
// plugins/simsiam, simclr or byol) are go-plugin subprocesses, served by
// re-executing this binary (plugin.ServeIfBundled), and the host moves the
// tensors through the shared-memory arenas: views in, z/p/t out to the
// loss, gradients back, then the optimizer step (four RPCs per step).
// -in-process runs the same model and loss as one core/train.Step instead.
//
// What a step is, as in torch_baseline.py: two views x1, x2 of random-normal
// inputs generated once; both forwarded separately (BatchNorm statistics per
// view); SGD lr 0.05, momentum 0.9, weight decay 5e-4 over all trainable
// parameters; for BYOL the target is updated with tau 0.99 after the
// optimizer step. The timed region is the whole step. Protocol (also as
// there): wait up to -gate-timeout s for a quiet machine, run the warm-up
// steps, then timed steps until -iters of them are "clean" (other processes
// used <= -foreign-max CPUs during the step; after a contaminated step the
// quiet wait repeats), -max-block-s has passed (x3 for W3) or 10 x -iters
// steps ran. Statistics use the clean steps, or all steps when fewer than
// min(3, iters) were clean (stats_from says which).
//
// Threads: -threads N sets GOMAXPROCS and core/parallel's thread count here
// and, through the environment, in the plugin processes.
//
// Usage:
//
//	go build -o /tmp/sslrun-step ./bench/step
//	/tmp/sslrun-step -workload mlp-mnist -method simsiam -threads 2
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"time"

	"github.com/sslrun/sslrun/core/autodiff"
	"github.com/sslrun/sslrun/core/nn"
	"github.com/sslrun/sslrun/core/optim"
	"github.com/sslrun/sslrun/core/parallel"
	"github.com/sslrun/sslrun/core/plugin"
	"github.com/sslrun/sslrun/core/tensor"
	"github.com/sslrun/sslrun/core/train"
	"github.com/sslrun/sslrun/plugins/byol"
	"github.com/sslrun/sslrun/plugins/encoder"
	"github.com/sslrun/sslrun/plugins/simclr"
	"github.com/sslrun/sslrun/plugins/simsiam"
)

// The optimizer and EMA settings of torch_baseline.py.
const (
	lr          = 0.05
	momentum    = 0.9
	weightDecay = 5e-4
	tau         = 0.99
	temperature = 0.5 // SimCLR
)

// workload is one row of torch_baseline.py's WORKLOADS table.
type workload struct {
	name          string
	batch         int
	warmup, iters int
	methods       []string
	blockScale    float64 // multiplies -max-block-s (3 for ResNet-18, as there)
}

var workloads = []workload{
	{"mlp-mnist", 512, 2, 7, []string{"simsiam", "simclr", "byol"}, 1},
	{"convnet-cifar", 256, 2, 7, []string{"simsiam", "simclr", "byol"}, 1},
	{"resnet18-cifar", 128, 1, 3, []string{"simsiam"}, 3},
}

var aliases = map[string]string{"W1": "mlp-mnist", "W2": "convnet-cifar", "W3": "resnet18-cifar"}

func findWorkload(name string) (workload, error) {
	if a, ok := aliases[name]; ok {
		name = a
	}
	for _, w := range workloads {
		if w.name == name {
			return w, nil
		}
	}
	return workload{}, fmt.Errorf("unknown workload %q (want W1, W2, W3 or mlp-mnist, convnet-cifar, resnet18-cifar)", name)
}

// registerPlugins makes this binary serve the encoder and the losses when a
// host re-executes it (a test binary too).
func registerPlugins() {
	plugin.Bundled["encoder"] = encoder.Plugin
	plugin.Bundled["simsiam"] = simsiam.Plugin
	plugin.Bundled["simclr"] = simclr.NTXentPlugin
	plugin.Bundled["byol"] = byol.Plugin
}

func main() {
	registerPlugins()
	plugin.ServeIfBundled()
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "step:", err)
		os.Exit(1)
	}
}

// options are the command-line flags.
type options struct {
	workload, method string
	threads          int
	warmup, iters    int
	inProcess        bool
	gateTimeout      float64
	maxBlockS        float64
	foreignMax       float64
	seed             uint64
	workloadDef      workload
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("step", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.workload, "workload", "mlp-mnist", "W1|W2|W3 or mlp-mnist|convnet-cifar|resnet18-cifar")
	fs.StringVar(&o.method, "method", "simsiam", "simsiam|simclr|byol (SimCLR and BYOL: W1 and W2 only, as the reference)")
	fs.IntVar(&o.threads, "threads", 1, "compute threads (GOMAXPROCS and core/parallel) in every process")
	fs.IntVar(&o.warmup, "warmup", -1, "untimed warm-up steps (default: the reference's, 2 or 1 for W3)")
	fs.IntVar(&o.iters, "iters", 0, "clean timed steps wanted (default: the reference's, 7 or 3 for W3)")
	fs.BoolVar(&o.inProcess, "in-process", false, "one core/train.Step in this process instead of encoder and loss plugin subprocesses")
	fs.Float64Var(&o.gateTimeout, "gate-timeout", 60, "max seconds to wait for a quiet machine before the block and after a contaminated step")
	fs.Float64Var(&o.maxBlockS, "max-block-s", 150, "time budget of the timed steps (x3 for W3)")
	fs.Float64Var(&o.foreignMax, "foreign-max", 0.12, "a step is clean if other processes used at most this many CPUs during it")
	fs.Uint64Var(&o.seed, "seed", 0, "seed of the weights and the inputs")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	w, err := findWorkload(o.workload)
	if err != nil {
		return err
	}
	if !slices.Contains(w.methods, o.method) {
		return fmt.Errorf("workload %s runs %v, not %q", w.name, w.methods, o.method)
	}
	if o.threads < 1 {
		return fmt.Errorf("-threads %d: want at least 1", o.threads)
	}
	if o.warmup < 0 {
		o.warmup = w.warmup
	}
	if o.iters <= 0 {
		o.iters = w.iters
	}
	o.workloadDef = w

	// Threads for this process and, through the environment go-plugin
	// passes on, for the plugin processes.
	runtime.GOMAXPROCS(o.threads)
	parallel.SetThreads(o.threads)
	if err := os.Setenv("GOMAXPROCS", strconv.Itoa(o.threads)); err != nil {
		return err
	}

	spec, err := modelSpec(w.name, o.method)
	if err != nil {
		return err
	}
	in, err := nn.WorkloadInputShape(w.name)
	if err != nil {
		return err
	}
	// The inputs, generated once: two views of standard normal noise.
	rng := rand.New(rand.NewPCG(o.seed, 0x696e70757473))
	shape := append([]int{w.batch}, in...)
	x1, x2 := randn(rng, shape), randn(rng, shape)

	var s stepper
	if o.inProcess {
		s, err = newInProcess(spec, o)
	} else {
		s, err = newPlugins(spec, in, o)
	}
	if err != nil {
		return err
	}
	rec, runErr := timedBlock(s, x1, x2, o)
	closeErr := s.close()
	if err := errors.Join(runErr, closeErr); err != nil {
		return err
	}
	rec.Workload, rec.Method, rec.Threads, rec.Batch = w.name, o.method, o.threads, w.batch
	rec.Mode = "subprocess"
	if o.inProcess {
		rec.Mode = "in-process"
	}
	rec.Warmup, rec.Iters = o.warmup, o.iters
	rec.GoVersion, rec.GOMAXPROCS = runtime.Version(), runtime.GOMAXPROCS(0)
	rec.Kind = "ours"
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s\n", b)
	return err
}

// modelSpec is the workload's network; SimCLR has no predictor.
func modelSpec(name, method string) (nn.ModelSpec, error) {
	ms, err := nn.Workload(name)
	if err != nil {
		return nn.ModelSpec{}, err
	}
	if method == "simclr" {
		ms.Predictor = nn.HeadSpec{Kind: "identity"}
	}
	return ms, nil
}

func randn(rng *rand.Rand, shape []int) *tensor.T {
	t := tensor.New(shape...)
	for i := range t.Data {
		t.Data[i] = float32(rng.NormFloat64())
	}
	return t
}

// stepper is one way of running the training step.
type stepper interface {
	// step runs training step i on the views and returns the loss.
	step(ctx context.Context, i int64, x1, x2 *tensor.T) (float64, error)
	// pids are the plugin processes (none in process).
	pids() []int
	close() error
}

// inProcess is core/train.Step with the plugins' loss functions called
// directly, as `sslrun run` trains in process.
type inProcess struct {
	st   *train.Step
	ema  bool
	stop func()
}

func newInProcess(spec nn.ModelSpec, o options) (*inProcess, error) {
	m, err := nn.Build(spec, rand.New(rand.NewPCG(o.seed, 0x6d6f64656c)))
	if err != nil {
		return nil, err
	}
	var loss train.LossFunc
	ema := false
	switch o.method {
	case "simsiam":
		loss = func(tp *autodiff.Tape, out *train.Outputs) (*autodiff.Var, error) {
			return simsiam.Loss(tp, out.Z1, out.Z2, out.P1, out.P2, simsiam.Default())
		}
	case "simclr":
		var labels []int
		loss = func(tp *autodiff.Tape, out *train.Outputs) (*autodiff.Var, error) {
			if n := 2 * out.Z1.Shape()[0]; len(labels) != n {
				labels = make([]int, n)
			}
			return simclr.NTXent(tp, out.Z1, out.Z2, temperature, labels)
		}
	case "byol":
		ema = true
		loss = func(tp *autodiff.Tape, out *train.Outputs) (*autodiff.Var, error) {
			return byol.Loss(tp, out.P1, out.P2, out.T1, out.T2), nil
		}
	}
	base := optim.Defaults(optim.SGD)
	base.Momentum, base.WeightDecay = momentum, weightDecay
	st, err := train.NewStep(train.Config{Model: m, Loss: loss, EMATarget: ema, Optimizer: optim.SGD, Base: base})
	if err != nil {
		return nil, err
	}
	return &inProcess{st: st, ema: ema}, nil
}

func (p *inProcess) step(_ context.Context, _ int64, x1, x2 *tensor.T) (float64, error) {
	t := 0.0
	if p.ema {
		t = tau
	}
	l, err := p.st.Run(x1, x2, lr, t)
	return float64(l), err
}

func (p *inProcess) pids() []int  { return nil }
func (p *inProcess) close() error { return nil }

// plugins is the host side of a step with the encoder and the loss as
// plugin subprocesses.
type plugins struct {
	h         *plugin.Host
	enc, loss *plugin.Client
	inputs    []string // what the loss reads, from its LossSpec
	views     map[string]*tensor.T
	lin       map[string]*tensor.T
	optim     plugin.Optim
}

func newPlugins(spec nn.ModelSpec, in []int, o options) (_ *plugins, err error) {
	ctx := context.Background()
	h, err := plugin.NewHost(plugin.HostOptions{})
	if err != nil {
		return nil, err
	}
	p := &plugins{h: h, views: map[string]*tensor.T{}, lin: map[string]*tensor.T{},
		optim: plugin.Optim{Scalars: map[string]float64{}}}
	defer func() {
		if err != nil {
			h.Close()
		}
	}()
	if p.enc, err = h.Launch(ctx, plugin.LaunchSpec{Bundled: "encoder"}); err != nil {
		return nil, err
	}
	if p.loss, err = h.Launch(ctx, plugin.LaunchSpec{Bundled: o.method}); err != nil {
		return nil, err
	}
	ls, err := p.loss.Loss().Spec(ctx)
	if err != nil {
		return nil, fmt.Errorf("loss %s: spec: %w", o.method, err)
	}
	p.inputs = ls.Inputs
	js, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	es := plugin.EncoderSpec{InputShape: in, Target: ls.Target, Options: map[string]string{
		"model": string(js), "seed": strconv.FormatUint(o.seed, 10), "optimizer": "sgd",
		"momentum": fmt.Sprint(momentum), "weight_decay": fmt.Sprint(weightDecay)}}
	if err := p.enc.Encoder().Build(ctx, es); err != nil {
		return nil, fmt.Errorf("encoder: build: %w", err)
	}
	return p, nil
}

// step is one training step as a host runs it: the views into the host
// arena, Forward, the loss, Backward of its gradients, the optimizer step.
func (p *plugins) step(ctx context.Context, i int64, x1, x2 *tensor.T) (float64, error) {
	if err := p.h.Reset(); err != nil {
		return 0, err
	}
	for n, x := range [...]*tensor.T{x1, x2} {
		v, err := p.h.NewTensor(x.Shape...)
		if err != nil {
			return 0, err
		}
		copy(v.Data, x.Data)
		p.views["x"+strconv.Itoa(n+1)] = v
	}
	st := plugin.Step{Step: i, Train: true}
	out, err := p.enc.Encoder().Forward(ctx, plugin.Input{Step: st, Tensors: p.views})
	if err != nil {
		return 0, fmt.Errorf("encoder forward: %w", err)
	}
	clear(p.lin)
	for _, n := range p.inputs {
		t, ok := out.Tensors[n]
		if !ok {
			return 0, fmt.Errorf("the loss reads %q, the encoder returned %v", n, keys(out.Tensors))
		}
		p.lin[n] = t
	}
	res, err := p.loss.Loss().Compute(ctx, plugin.LossInputs{Step: st, Tensors: p.lin})
	if err != nil {
		return 0, fmt.Errorf("loss: %w", err)
	}
	// As the runner does: the optimizer step rides on the Backward call.
	p.optim.Step, p.optim.LR, p.optim.Scalars["tau"] = st, lr, tau
	if _, err := plugin.BackwardStep(ctx, p.enc.Encoder(), plugin.Input{Step: st, Tensors: res.Grads}, p.optim); err != nil {
		return 0, fmt.Errorf("encoder backward and step: %w", err)
	}
	return res.Loss, nil
}

func keys(m map[string]*tensor.T) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func (p *plugins) pids() []int  { return []int{p.enc.Pid(), p.loss.Pid()} }
func (p *plugins) close() error { return p.h.Close() }

// stepRecord is one timed step, as torch_baseline.py's steps[] entries.
type stepRecord struct {
	T       float64 `json:"t"`       // wall seconds
	CPU     float64 `json:"cpu"`     // CPU seconds of the process tree (10 ms ticks)
	Foreign float64 `json:"foreign"` // CPUs used by other processes meanwhile
	Clean   bool    `json:"clean"`
	Gate    float64 `json:"gate_wait"`
	Loss    float64 `json:"loss"`
}

// record is the JSON line printed per block.
type record struct {
	Kind          string       `json:"kind"`
	Workload      string       `json:"workload"`
	Method        string       `json:"method"`
	Mode          string       `json:"mode"`
	Threads       int          `json:"threads"`
	Batch         int          `json:"batch"`
	Warmup        int          `json:"warmup"`
	Iters         int          `json:"iters"`
	Times         []float64    `json:"times"` // the steps the statistics use
	Steps         []stepRecord `json:"steps"`
	NClean        int          `json:"n_clean"`
	NSteps        int          `json:"n_steps"`
	StatsFrom     string       `json:"stats_from"`
	MedianS       float64      `json:"median_s"`
	ImgSMedian    float64      `json:"img_s_median"`
	ImgSMin       float64      `json:"img_s_min"`
	ImgSMax       float64      `json:"img_s_max"`
	ImgSAllMedian float64      `json:"img_s_all_median"`
	MeanForeign   float64      `json:"mean_foreign"`
	FirstGateWait float64      `json:"first_gate_wait_s"`
	FirstGateOK   bool         `json:"first_gate_ok"`
	BlockS        float64      `json:"block_s"`
	// PeakRSSMB is the sum of the peak RSS (VmHWM) of every process of the
	// tree: host and plugin children.
	PeakRSSMB float64 `json:"peak_rss_mb"`
	// PerProcessRSSMB is VmHWM of the host, then of each child.
	PerProcessRSSMB []float64 `json:"per_process_rss_mb"`
	// PeakPSSMB is the largest proportional set size of the tree seen
	// after a step (shared arena pages counted once).
	PeakPSSMB  float64 `json:"peak_pss_mb"`
	Pids       []int   `json:"pids,omitempty"`
	GoVersion  string  `json:"go_version"`
	GOMAXPROCS int     `json:"gomaxprocs"`
}

// quietGate waits until other processes use fewer than threshold CPUs over
// window, or timeout passes; it returns the wait and whether it was quiet.
func quietGate(pids []int, timeout, threshold float64, window time.Duration) (float64, bool) {
	t0 := time.Now()
	for {
		a := sample(pids)
		time.Sleep(window)
		if foreign(a, sample(pids)) < threshold {
			return time.Since(t0).Seconds(), true
		}
		if time.Since(t0).Seconds() > timeout {
			return time.Since(t0).Seconds(), false
		}
	}
}

// timedBlock is torch_baseline.py's timed_block for one stepper.
func timedBlock(s stepper, x1, x2 *tensor.T, o options) (*record, error) {
	ctx := context.Background()
	pids := s.pids()
	rec := &record{Pids: pids}
	runtime.GC()
	rec.FirstGateWait, rec.FirstGateOK = quietGate(pids, o.gateTimeout, 0.1, 500*time.Millisecond)
	var i int64
	for ; i < int64(o.warmup); i++ {
		if _, err := s.step(ctx, i, x1, x2); err != nil {
			return nil, fmt.Errorf("warm-up step %d: %w", i, err)
		}
	}
	maxBlock := o.maxBlockS * o.workloadDef.blockScale
	maxSteps := 10 * o.iters
	var steps []stepRecord
	var peakPss int64
	tBlock := time.Now()
	needGate := false
	nClean := 0
	for nClean < o.iters && len(steps) < maxSteps {
		if len(steps) > 0 && time.Since(tBlock).Seconds() > maxBlock {
			break
		}
		gate := 0.0
		if needGate {
			gate, _ = quietGate(pids, o.gateTimeout, 0.1, 300*time.Millisecond)
		}
		a := sample(pids)
		t0 := time.Now()
		loss, err := s.step(ctx, i, x1, x2)
		t1 := time.Now()
		b := sample(pids)
		if err != nil {
			return nil, fmt.Errorf("step %d: %w", i, err)
		}
		if math.IsNaN(loss) || math.IsInf(loss, 0) {
			return nil, fmt.Errorf("step %d: loss %v", i, loss)
		}
		i++
		fo := foreign(a, b)
		ok := fo <= o.foreignMax
		if ok {
			nClean++
		}
		steps = append(steps, stepRecord{T: t1.Sub(t0).Seconds(), CPU: float64(b.own-a.own) / clkTck,
			Foreign: math.Round(fo*1000) / 1000, Clean: ok, Gate: gate, Loss: loss})
		needGate = !ok
		// Outside the timed region: the tree's memory after the step.
		peakPss = max(peakPss, treeMemory(pids).Pss)
	}
	rec.BlockS = math.Round(time.Since(tBlock).Seconds()*10) / 10
	mem := treeMemory(pids)
	rec.PeakRSSMB = float64(mem.HWM) / 1024
	for _, kb := range mem.PerProcessHWM {
		rec.PerProcessRSSMB = append(rec.PerProcessRSSMB, math.Round(float64(kb)/1024*10)/10)
	}
	rec.PeakPSSMB = float64(max(peakPss, mem.Pss)) / 1024

	var sel, all []float64
	useClean := nClean >= min(3, o.iters)
	var fsum, tsum float64
	for _, st := range steps {
		all = append(all, st.T)
		if st.Clean || !useClean {
			sel = append(sel, st.T)
			fsum += st.Foreign * st.T
			tsum += st.T
		}
	}
	rec.Steps, rec.Times, rec.NClean, rec.NSteps = steps, sel, nClean, len(steps)
	rec.StatsFrom = "clean"
	if !useClean {
		rec.StatsFrom = "ALL (too few clean steps)"
	}
	batch := float64(o.workloadDef.batch)
	rec.MedianS = median(sel)
	rec.ImgSMedian = batch / rec.MedianS
	rec.ImgSMin = batch / slices.Max(sel)
	rec.ImgSMax = batch / slices.Min(sel)
	rec.ImgSAllMedian = batch / median(all)
	rec.MeanForeign = fsum / max(tsum, 1e-9)
	return rec, nil
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return math.NaN()
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
