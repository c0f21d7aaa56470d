// Package testplugin holds test fixtures for the plugin transport: a loss,
// an analyzer and an encoder small enough to check by hand, and a loss that
// misbehaves on request (exit, hang, panic, write to its read-only input).
// They are not product plugins.
package testplugin

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"time"

	"github.com/zclconf/go-cty/cty"

	"github.com/sslrun/sslrun/core/plugin"
	"github.com/sslrun/sslrun/core/tensor"
)

// Plugins returns the fixtures by name, in the form plugin.Bundled takes.
func Plugins() map[string]func() plugin.Plugin {
	return map[string]func() plugin.Plugin{
		"quad":   Quad,
		"mean":   Mean,
		"matmul": MatMul,
		"bench":  Bench,
	}
}

// QuadSchema is the quad loss's configuration schema.
var QuadSchema = plugin.Schema{Attributes: []plugin.Attribute{
	{Name: "scale", Type: cty.Number, Default: cty.NumberIntVal(1), Description: "multiplies the loss"},
	{Name: "fail", Type: cty.String, Default: cty.StringVal(""), Description: "exit, hang, panic, crash, error, write-input; print (on stdout at Configure)"},
	{Name: "fail_step", Type: cty.Number, Default: cty.NumberIntVal(-1), Description: "the step at which to fail"},
}}

// Quad is a loss 0.5*scale*||a-b||^2 with gradients scale*(a-b) and
// scale*(b-a).
func Quad() plugin.Plugin {
	return plugin.Plugin{Name: "quad", Version: "0.1.0", Schema: QuadSchema, Loss: &quad{scale: 1, failStep: -1}}
}

type quad struct {
	scale    float64
	fail     string
	failStep int64
}

func (q *quad) Configure(ctx context.Context, cfg cty.Value) error {
	s, _ := cfg.GetAttr("scale").AsBigFloat().Float64()
	if s <= 0 {
		return plugin.AttrErrorf("scale", "must be positive, got %g", s)
	}
	q.scale = s
	q.fail = cfg.GetAttr("fail").AsString()
	fs, _ := cfg.GetAttr("fail_step").AsBigFloat().Int64()
	q.failStep = fs
	plugin.Logger(ctx).Info().Float64("scale", s).Msg("quad configured")
	if q.fail == "print" {
		fmt.Println("quad says hi on stdout")
	}
	return nil
}

func (q *quad) Spec(context.Context) (plugin.LossSpec, error) {
	return plugin.LossSpec{Target: plugin.TargetStopGrad, Inputs: []string{"a", "b"}, ProjectorDims: []int{8, 4},
		Options: map[string]string{"fixture": "true"}}, nil
}

func (q *quad) Compute(ctx context.Context, in plugin.LossInputs) (plugin.LossResult, error) {
	a, b := in.Tensors["a"], in.Tensors["b"]
	if a == nil || b == nil || a.Len() != b.Len() {
		return plugin.LossResult{}, fmt.Errorf("quad needs inputs a and b of equal size")
	}
	if in.Step.Step == q.failStep {
		switch q.fail {
		case "exit":
			os.Exit(3)
		case "hang":
			time.Sleep(time.Hour)
		case "panic":
			panic("quad: deliberate panic")
		case "crash":
			// A panic off the call's goroutine cannot be recovered: the
			// process dies as a Go program does.
			go panic("quad: background panic")
			time.Sleep(time.Hour)
		case "error":
			return plugin.LossResult{}, fmt.Errorf("quad: deliberate error")
		case "write-input":
			a.Data[0] = 1
		}
	}
	ga, gb := plugin.NewTensor(ctx, a.Shape...), plugin.NewTensor(ctx, b.Shape...)
	var sum float64
	s := float32(q.scale)
	for i, x := range a.Data {
		d := x - b.Data[i]
		sum += float64(d) * float64(d)
		ga.Data[i] = s * d
		gb.Data[i] = -s * d
	}
	return plugin.LossResult{
		Loss:    0.5 * q.scale * sum,
		Grads:   map[string]*tensor.T{"a": ga, "b": gb},
		Metrics: []plugin.Metric{{Name: "sq_dist", Value: sum, Context: map[string]string{"tensor": "a-b"}}},
	}, nil
}

// Mean is an analyzer reporting the mean of every observed tensor and, at
// evaluation, the mean of the embeddings and their column means as an
// array.
func Mean() plugin.Plugin {
	return plugin.Plugin{Name: "mean", Version: "0.1.0", Analyzer: mean{}}
}

type mean struct{}

func (mean) Observe(ctx context.Context, in plugin.StepTensors) ([]plugin.Metric, []plugin.Array, error) {
	var ms []plugin.Metric
	for name, t := range in.Tensors {
		ms = append(ms, plugin.Metric{Name: "mean", Value: avg(t.Data), Context: map[string]string{"tensor": name}})
	}
	// The number of tensors observed, as an array: Observe's arrays
	// cross the wire like Evaluate's.
	n := plugin.NewTensor(ctx, 1)
	n.Data[0] = float32(len(in.Tensors))
	return ms, []plugin.Array{{Name: "count", T: n}}, nil
}

func (mean) Evaluate(ctx context.Context, in plugin.EvalSet) ([]plugin.Metric, []plugin.Array, error) {
	e := in.Tensors["embeddings"]
	if e == nil {
		return nil, nil, fmt.Errorf("mean: no embeddings")
	}
	cols := plugin.NewTensor(ctx, e.Cols())
	cols.Zero()
	for r := 0; r < e.Rows(); r++ {
		for c := range cols.Data {
			cols.Data[c] += e.Data[r*e.Cols()+c] / float32(e.Rows())
		}
	}
	return []plugin.Metric{{Name: "mean", Value: avg(e.Data), Context: map[string]string{"set": in.Name}}},
		[]plugin.Array{{Name: "colmean", T: cols, Context: map[string]string{"set": in.Name}}}, nil
}

func avg(xs []float32) float64 {
	var s float64
	for _, x := range xs {
		s += float64(x)
	}
	return s / float64(max(len(xs), 1))
}

// MatMul is an encoder that is one fixed-initialised matrix W (d_in x
// d_out, from the input shape and the first head's last width): Forward
// maps each view xk to zk = xk W; Backward accumulates dW = sum xk^T gk;
// Step does W -= lr dW.
func MatMul() plugin.Plugin {
	return plugin.Plugin{Name: "matmul", Version: "0.1.0", Encoder: &matmul{}}
}

type matmul struct {
	in, out int
	w, gw   []float32
	xs      map[string][]float32 // forward inputs kept for backward (copied: inputs are only valid during a call)
	rows    map[string]int
}

func (m *matmul) Build(_ context.Context, spec plugin.EncoderSpec) error {
	if len(spec.InputShape) != 1 || len(spec.Heads) == 0 || len(spec.Heads[0].Dims) == 0 {
		return fmt.Errorf("matmul: need a 1-d input shape and one head, got %+v", spec)
	}
	m.in, m.out = spec.InputShape[0], spec.Heads[0].Dims[len(spec.Heads[0].Dims)-1]
	m.w, m.gw = make([]float32, m.in*m.out), make([]float32, m.in*m.out)
	for i := range m.w {
		m.w[i] = float32(i%7) - 3
	}
	return nil
}

func (m *matmul) mul(dst, x []float32, rows int) {
	for r := 0; r < rows; r++ {
		for j := 0; j < m.out; j++ {
			var s float32
			for k := 0; k < m.in; k++ {
				s += x[r*m.in+k] * m.w[k*m.out+j]
			}
			dst[r*m.out+j] = s
		}
	}
}

func (m *matmul) Forward(ctx context.Context, in plugin.Input) (plugin.Output, error) {
	out := plugin.Output{Tensors: map[string]*tensor.T{}}
	m.xs, m.rows = map[string][]float32{}, map[string]int{}
	for name, x := range in.Tensors { // x1 -> z1
		if x.Cols() != m.in {
			return plugin.Output{}, fmt.Errorf("matmul: %s has %d columns, want %d", name, x.Cols(), m.in)
		}
		z := plugin.NewTensor(ctx, x.Rows(), m.out)
		m.mul(z.Data, x.Data, x.Rows())
		zname := "z" + name[1:]
		out.Tensors[zname] = z
		m.xs[zname] = append([]float32(nil), x.Data...)
		m.rows[zname] = x.Rows()
	}
	return out, nil
}

func (m *matmul) Backward(_ context.Context, grads plugin.Input) ([]plugin.Metric, error) {
	for name, g := range grads.Tensors {
		x, ok := m.xs[name]
		if !ok {
			return nil, fmt.Errorf("matmul: gradient for unknown output %q", name)
		}
		for r := 0; r < m.rows[name]; r++ {
			for k := 0; k < m.in; k++ {
				for j := 0; j < m.out; j++ {
					m.gw[k*m.out+j] += x[r*m.in+k] * g.Data[r*m.out+j]
				}
			}
		}
	}
	var n float64
	for _, g := range m.gw {
		n += float64(g) * float64(g)
	}
	return []plugin.Metric{{Name: "grad_norm", Value: math.Sqrt(n)}}, nil
}

func (m *matmul) Step(_ context.Context, o plugin.Optim) ([]plugin.Metric, error) {
	for i := range m.w {
		m.w[i] -= float32(o.LR) * m.gw[i]
		m.gw[i] = 0
	}
	return []plugin.Metric{{Name: "lr", Value: o.LR}}, nil
}

func (m *matmul) Embed(ctx context.Context, in plugin.Input) (*tensor.T, error) {
	x := in.Tensors["x"]
	if x == nil || x.Cols() != m.in {
		return nil, fmt.Errorf("matmul: embed needs x with %d columns", m.in)
	}
	z := plugin.NewTensor(ctx, x.Rows(), m.out)
	m.mul(z.Data, x.Data, x.Rows())
	return z, nil
}

func (m *matmul) Save(_ context.Context, path string) error {
	b := make([]byte, 4*len(m.w))
	for i, v := range m.w {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return os.WriteFile(path, b, 0o644)
}

func (m *matmul) Load(_ context.Context, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("matmul: load: %w", err)
	}
	if len(b) != 4*len(m.w) {
		return fmt.Errorf("matmul: load %s: %d bytes, want %d", path, len(b), 4*len(m.w))
	}
	for i := range m.w {
		m.w[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return nil
}

// Bench is the benchmark's loss: four inputs a, b, c, d in, two gradients
// out (a-b and c-d), so that the work is small and the same in both modes
// and the transport dominates the difference. It reports its own compute
// time as the metric compute_ns.
func Bench() plugin.Plugin {
	return plugin.Plugin{Name: "bench", Version: "0.1.0", Loss: bench{}}
}

type bench struct{}

func (bench) Spec(context.Context) (plugin.LossSpec, error) {
	return plugin.LossSpec{Inputs: []string{"a", "b", "c", "d"}}, nil
}

func (bench) Compute(ctx context.Context, in plugin.LossInputs) (plugin.LossResult, error) {
	start := time.Now()
	a, b, c, d := in.Tensors["a"], in.Tensors["b"], in.Tensors["c"], in.Tensors["d"]
	g1, g2 := plugin.NewTensor(ctx, a.Shape...), plugin.NewTensor(ctx, c.Shape...)
	for i := range g1.Data {
		g1.Data[i] = a.Data[i] - b.Data[i]
	}
	for i := range g2.Data {
		g2.Data[i] = c.Data[i] - d.Data[i]
	}
	return plugin.LossResult{Loss: float64(g1.Data[0]), Grads: map[string]*tensor.T{"a": g1, "c": g2},
		Metrics: []plugin.Metric{{Name: "compute_ns", Value: float64(time.Since(start).Nanoseconds())}}}, nil
}
