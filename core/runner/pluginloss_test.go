package runner

import (
	"context"
	"math"
	"testing"

	"github.com/sslrun/sslrun/core/autodiff"
	"github.com/sslrun/sslrun/core/plugin"
	"github.com/sslrun/sslrun/core/plugin/lossdk"
)

// TestPluginLossMatchesInProcess trains with the test loss written as a
// core/plugin loss (lossdk, through Host.InProcess: the same client code
// path as a subprocess minus the transport) and checks that the run is the
// in-process run: the surrogate carries the plugin's gradients exactly, so
// the weights are bit-identical and the losses equal to float32 rounding.
func TestPluginLossMatchesInProcess(t *testing.T) {
	ref, err := runTiny(t, context.Background(), map[string]string{"epochs": "1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := plugin.NewHost(plugin.HostOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	f := &lossdk.Func{
		LossSpec: plugin.LossSpec{Predictor: true, Target: plugin.TargetStopGrad, Inputs: []string{"z1", "z2", "p1", "p2"}},
		Forward: func(tp *autodiff.Tape, in map[string]*autodiff.Var, _ plugin.Step) (*autodiff.Var, map[string]float64, error) {
			a := tp.Mean(tp.CosineSimilarity(in["p1"], tp.Detach(in["z2"])))
			b := tp.Mean(tp.CosineSimilarity(in["p2"], tp.Detach(in["z1"])))
			return tp.Scale(tp.Add(a, b), -0.5), nil, nil
		},
	}
	c, err := h.InProcess(f.Plugin("simsiam", "test"))
	if err != nil {
		t.Fatal(err)
	}
	orig, err := lookupLoss("simsiam")
	if err != nil {
		t.Fatal(err)
	}
	RegisterLoss("simsiam", PluginLoss(h, c))
	defer RegisterLoss("simsiam", orig)

	got, err := runTiny(t, context.Background(), map[string]string{"epochs": "1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Losses) != len(ref.Losses) {
		t.Fatalf("%d losses, want %d", len(got.Losses), len(ref.Losses))
	}
	for i := range ref.Losses {
		if d := math.Abs(float64(got.Losses[i] - ref.Losses[i])); d > 1e-6 {
			t.Errorf("step %d: loss %v through the plugin, %v in process", i, got.Losses[i], ref.Losses[i])
		}
	}
	w1, w2 := weights(t, ref.Checkpoint), weights(t, got.Checkpoint)
	for k, v := range w1 {
		if !sameBits(v, w2[k]) {
			t.Errorf("weights %s differ", k)
		}
	}
}
