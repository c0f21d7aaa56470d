// Command mse is an example external loss plugin: the whole of a plugin is
// one file with a main. Build it as sslrun-plugin-mse into a plugins
// directory and pin its sha256 in the pipeline's lock file.
//
// The loss is 0.5*||p1 - z2||^2 with a stop-gradient on z2 (a toy, not a
// method).
package main

import (
	"context"
	"fmt"

	"github.com/zclconf/go-cty/cty"

	"github.com/sslrun/sslrun/core/plugin"
	"github.com/sslrun/sslrun/core/tensor"
)

type mse struct{ weight float64 }

// Configure reads the block `loss "mse" { weight = 0.5 }`.
func (m *mse) Configure(_ context.Context, cfg cty.Value) error {
	m.weight, _ = cfg.GetAttr("weight").AsBigFloat().Float64()
	return nil
}

func (m *mse) Spec(context.Context) (plugin.LossSpec, error) {
	return plugin.LossSpec{Predictor: true, Target: plugin.TargetStopGrad, Inputs: []string{"p1", "z2"}}, nil
}

func (m *mse) Compute(ctx context.Context, in plugin.LossInputs) (plugin.LossResult, error) {
	p, z := in.Tensors["p1"], in.Tensors["z2"]
	if p == nil || z == nil || p.Len() != z.Len() {
		return plugin.LossResult{}, fmt.Errorf("mse: need p1 and z2 of equal size")
	}
	g := plugin.NewTensor(ctx, p.Shape...) // in the output arena: returned without a copy
	var loss float64
	w := float32(m.weight)
	for i := range p.Data {
		d := p.Data[i] - z.Data[i]
		loss += 0.5 * m.weight * float64(d*d)
		g.Data[i] = w * d
	}
	return plugin.LossResult{Loss: loss, Grads: map[string]*tensor.T{"p1": g}}, nil
}

func main() {
	plugin.Serve(plugin.Plugin{
		Name:    "mse",
		Version: "0.1.0",
		Schema: plugin.Schema{Attributes: []plugin.Attribute{
			{Name: "weight", Type: cty.Number, Default: cty.NumberIntVal(1), Min: ptr(0.0), Description: "scales the loss"},
		}},
		Loss: &mse{weight: 1},
	})
}

func ptr(f float64) *float64 { return &f }
