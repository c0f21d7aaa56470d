package simsiam

import (
	"path/filepath"
	"testing"

	"github.com/sslrun/sslrun/core/autodiff"
	"github.com/sslrun/sslrun/internal/golden"
)

// TestGolden compares the loss and its input gradients with PyTorch for every
// variant (fixtures from tools/golden/gen_losses.py).
func TestGolden(t *testing.T) {
	cases := []struct {
		file string
		opts Options
		noP  bool
	}{
		{"simsiam", Default(), false},
		{"no_stop_gradient", Options{StopGradient: false, Target: TargetZ}, false},
		{"symmetric_predictor", Options{StopGradient: true, Target: TargetP}, false},
		{"extra_center", Options{StopGradient: true, Target: TargetCenter}, false},
		{"extra_residual", Options{StopGradient: true, Target: TargetResidual}, false},
		{"naive_siamese", Default(), true},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			f := golden.Open(t, filepath.Join("testdata", c.file+".safetensors"))
			names := []string{"z1", "z2", "p1", "p2"}
			if c.noP {
				names = names[:2]
			}
			v := golden.Params(t, f, names...)
			tp := autodiff.NewTape()
			loss, err := Loss(tp, v["z1"], v["z2"], v["p1"], v["p2"], c.opts)
			if err != nil {
				t.Fatal(err)
			}
			golden.CheckLoss(t, f, tp, loss, v)
		})
	}
}

func TestOptionsValidate(t *testing.T) {
	if err := (Options{StopGradient: false, Target: TargetCenter}).Validate(); err == nil {
		t.Error("extra-gradient variant without stop-gradient accepted")
	}
	if err := (Options{StopGradient: true, Target: "bogus"}).Validate(); err == nil {
		t.Error("unknown target accepted")
	}
	if err := Default().Validate(); err != nil {
		t.Error(err)
	}
}
