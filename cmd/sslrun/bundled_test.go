package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zclconf/go-cty/cty"

	"github.com/sslrun/sslrun/core/runner"
	"github.com/sslrun/sslrun/plugins/byol"
	"github.com/sslrun/sslrun/plugins/decompose"
	"github.com/sslrun/sslrun/plugins/simclr"
	"github.com/sslrun/sslrun/plugins/simsiam"
)

// TestConfigAdapters checks the plugins' HCL-config adapters on the values
// their static schemas decode to.
func TestConfigAdapters(t *testing.T) {
	str, num, boolean := cty.StringVal, cty.NumberFloatVal, cty.BoolVal
	obj := func(m map[string]cty.Value) cty.Value { return cty.ObjectVal(m) }
	for _, tc := range []struct {
		name    string
		parse   func() (any, error)
		want    any
		wantErr string
	}{
		{"simsiam default", func() (any, error) { return simsiam.ParseConfig(cty.NullVal(cty.DynamicPseudoType)) },
			simsiam.Config{Options: simsiam.Default(), Predictor: "mlp"}, ""},
		{"simsiam no sg", func() (any, error) {
			return simsiam.ParseConfig(obj(map[string]cty.Value{"stop_gradient": boolean(false), "target": str("p"), "predictor": str("mlp")}))
		}, simsiam.Config{Options: simsiam.Options{StopGradient: false, Target: simsiam.TargetP}, Predictor: "mlp"}, ""},
		{"simsiam naive", func() (any, error) {
			return simsiam.ParseConfig(obj(map[string]cty.Value{"stop_gradient": boolean(true), "target": str("z"), "predictor": str("none")}))
		}, simsiam.Config{Options: simsiam.Default(), Predictor: "none"}, ""},
		{"simsiam center without sg", func() (any, error) {
			return simsiam.ParseConfig(obj(map[string]cty.Value{"stop_gradient": boolean(false), "target": str("p+center")}))
		}, nil, "stop-gradient only"},
		{"simsiam bad target", func() (any, error) { return simsiam.ParseConfig(obj(map[string]cty.Value{"target": str("q")})) }, nil, "unknown target"},
		{"simclr", func() (any, error) {
			return simclr.ParseNTXentConfig(obj(map[string]cty.Value{"temperature": num(0.2)}))
		}, 0.2, ""},
		{"simclr default", func() (any, error) { return simclr.ParseNTXentConfig(cty.NullVal(cty.DynamicPseudoType)) }, 0.5, ""},
		{"simclr negative t", func() (any, error) {
			return simclr.ParseNTXentConfig(obj(map[string]cty.Value{"temperature": num(-1)}))
		}, nil, "positive"},
		{"simclr wrong type", func() (any, error) {
			return simclr.ParseNTXentConfig(obj(map[string]cty.Value{"temperature": str("hot")}))
		}, nil, "must be a number"},
		{"triplet", func() (any, error) {
			return simclr.ParseTripletConfig(obj(map[string]cty.Value{"negative": str("center")}))
		}, simclr.NegativeCenter, ""},
		{"triplet bad", func() (any, error) {
			return simclr.ParseTripletConfig(obj(map[string]cty.Value{"negative": str("all")}))
		}, nil, "unknown triplet negative"},
		{"byol", func() (any, error) { return byol.ParseConfig(obj(map[string]cty.Value{"tau_base": num(0.996)})) }, byol.Config{TauBase: 0.996}, ""},
		{"byol default", func() (any, error) { return byol.ParseConfig(cty.NullVal(cty.DynamicPseudoType)) }, byol.Config{TauBase: 0.99}, ""},
		{"byol bad", func() (any, error) { return byol.ParseConfig(obj(map[string]cty.Value{"tau_base": num(1.5)})) }, nil, "(0, 1]"},
		{"decompose", func() (any, error) {
			return decompose.ParseStepConfig(obj(map[string]cty.Value{"tensors": cty.ListVal([]cty.Value{str("z"), str("p")})}))
		}, "[z p]", ""},
		{"decompose feature", func() (any, error) {
			return decompose.ParseStepConfig(obj(map[string]cty.Value{"tensors": cty.ListVal([]cty.Value{str("feature")})}))
		}, nil, "cannot be measured"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.parse()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c, ok := got.(decompose.StepConfig); ok {
				got = strings.Join([]string{"[", strings.Join(c.Tensors, " "), "]"}, "")
			}
			if got != tc.want {
				t.Errorf("got %#v, want %#v", got, tc.want)
			}
		})
	}
}

// TestEveryBundledLossTrains runs one epoch of each bundled loss through
// the command.
func TestEveryBundledLossTrains(t *testing.T) {
	for _, loss := range []string{`loss "simclr" {
  temperature = 0.2
}`, `loss "triplet" {
  negative = "center"
}`, `loss "byol" {
  tau_base = 0.99
}`} {
		name := strings.Fields(loss)[1]
		t.Run(strings.Trim(name, `"`), func(t *testing.T) {
			dir, path := tiny(t)
			src, _ := os.ReadFile(path)
			text := strings.Replace(string(src), `loss "simsiam" {}`, loss, 1)
			p := filepath.Join(dir, "loss.hcl")
			if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			var steps int
			r := sslrun(t, context.Background(), dir, func(o *runner.Options) {
				o.OnStep = func(runner.StepEvent) { steps++ }
			}, "run", "-var", "epochs=1", p)
			if r.code != exitOK || !strings.Contains(r.stdout, "FINISHED") {
				t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
			}
			if steps != 8 {
				t.Errorf("%d steps, want 8", steps)
			}
			if name == `"byol"` && !strings.Contains(r.stderr, "p.extra_eta") {
				t.Errorf("no extra-gradient metrics for BYOL:\n%s", r.stderr)
			}
		})
	}
}
