package main

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/sslrun/sslrun/core/plugin"
	"github.com/sslrun/sslrun/core/tensor"
)

// TestBundledPluginsSubprocessMatchesInProcess starts every bundled loss as
// a real subprocess (this test binary re-executed, serving the plugin from
// TestMain exactly as sslrun's main does) and requires the loss and the
// gradients that the same plugin computes in process, bit for bit.
func TestBundledPluginsSubprocessMatchesInProcess(t *testing.T) {
	ctx := context.Background()
	cases := []struct{ name, config string }{
		{"simsiam", ""},
		{"simsiam", "target = \"p+residual\"\n"},
		{"simclr", "temperature = 0.1\n"},
		{"triplet", "negative = \"center\"\n"},
		{"byol", ""},
	}
	for _, c := range cases {
		t.Run(c.name+"/"+c.config, func(t *testing.T) {
			h, err := plugin.NewHost(plugin.HostOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			sub, err := h.Launch(ctx, plugin.LaunchSpec{Bundled: c.name})
			if err != nil {
				t.Fatal(err)
			}
			if sub.Pid() == 0 {
				t.Fatal("subprocess plugin has no pid")
			}
			local, err := h.InProcess(plugin.Bundled[c.name]())
			if err != nil {
				t.Fatal(err)
			}
			f, diags := hclsyntax.ParseConfig([]byte(c.config), "loss.hcl", hcl.InitialPos)
			if diags.HasErrors() {
				t.Fatal(diags)
			}
			for _, cl := range []*plugin.Client{sub, local} {
				if diags := cl.ConfigureBody(ctx, f.Body, nil); diags.HasErrors() {
					t.Fatalf("configure: %v", diags)
				}
			}
			spec, err := sub.Loss().Spec(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := h.Reset(); err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(1, 2))
			in := map[string]*tensor.T{}
			for _, n := range spec.Inputs {
				x, err := h.NewTensor(16, 8)
				if err != nil {
					t.Fatal(err)
				}
				for i := range x.Data {
					x.Data[i] = float32(rng.NormFloat64())
				}
				in[n] = x
			}
			step := plugin.LossInputs{Step: plugin.Step{Step: 1, Train: true}, Tensors: in}
			want, err := local.Loss().Compute(ctx, step)
			if err != nil {
				t.Fatal(err)
			}
			wantGrads := map[string][]float32{}
			for n, g := range want.Grads {
				wantGrads[n] = append([]float32(nil), g.Data...)
			}
			got, err := sub.Loss().Compute(ctx, step)
			if err != nil {
				t.Fatal(err)
			}
			if got.Loss != want.Loss || math.IsNaN(got.Loss) {
				t.Fatalf("loss %v over the subprocess, %v in process", got.Loss, want.Loss)
			}
			if len(got.Grads) != len(wantGrads) {
				t.Fatalf("gradients on %d inputs, want %d", len(got.Grads), len(wantGrads))
			}
			for n, w := range wantGrads {
				g := got.Grads[n]
				for i := range w {
					if math.Float32bits(g.Data[i]) != math.Float32bits(w[i]) {
						t.Fatalf("grad %s[%d] = %v, in process %v", n, i, g.Data[i], w[i])
					}
				}
			}
		})
	}
}
