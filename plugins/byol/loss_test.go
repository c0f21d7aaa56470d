package byol

import (
	"path/filepath"
	"testing"

	"github.com/sslrun/sslrun/core/autodiff"
	"github.com/sslrun/sslrun/internal/golden"
)

// TestGolden checks the loss and the gradients on all four inputs (zero on
// the targets: they are detached) against tools/golden/gen_losses.py.
func TestGolden(t *testing.T) {
	f := golden.Open(t, filepath.Join("testdata", "byol.safetensors"))
	v := golden.Params(t, f, "p1", "p2", "t1", "t2")
	tp := autodiff.NewTape()
	golden.CheckLoss(t, f, tp, Loss(tp, v["p1"], v["p2"], v["t1"], v["t2"]), v)
}
