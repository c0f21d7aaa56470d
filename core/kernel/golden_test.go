package kernel

import (
	"encoding/json"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sslrun/sslrun/core/safetensors"
)

// Golden fixtures written by tools/golden/gen_kernel.py with PyTorch 1.13.
// Every case is a JSON metadata entry plus tensors named "<case>.<name>".

func openGolden(t *testing.T, name string) (*safetensors.File, []string) {
	t.Helper()
	f, err := safetensors.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var cases []string
	for k := range f.Metadata {
		if k != "generator" && k != "torch" {
			cases = append(cases, k)
		}
	}
	if len(cases) == 0 {
		t.Fatalf("%s: no cases", name)
	}
	return f, cases
}

func golden(t *testing.T, f *safetensors.File, name string) []float32 {
	t.Helper()
	x, err := f.Tensor(name)
	if err != nil {
		t.Fatal(err)
	}
	return x.Data
}

// checkGolden compares with PyTorch's float32 result: both sides round
// differently (summation order, FMA), so the tolerance is relative to the
// tensor's largest magnitude.
func checkGolden(t *testing.T, what string, got, want []float32, rel float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d elements, want %d", what, len(got), len(want))
	}
	var scale float64
	for _, v := range want {
		scale = max(scale, math.Abs(float64(v)))
	}
	for i := range want {
		if e := math.Abs(float64(got[i]) - float64(want[i])); e > rel*(1+scale) {
			t.Fatalf("%s[%d] = %g, PyTorch %g", what, i, got[i], want[i])
		}
	}
}

func TestGoldenConv(t *testing.T) {
	f, cases := openGolden(t, "kernel_conv.safetensors")
	for _, c := range cases {
		t.Run(c, func(t *testing.T) {
			var m struct{ N, C, H, W, K, R, S, Stride, Pad int }
			if err := json.Unmarshal([]byte(f.Metadata[c]), &m); err != nil {
				t.Fatal(err)
			}
			g := ConvGeom{N: m.N, C: m.C, H: m.H, W: m.W, K: m.K, R: m.R, S: m.S,
				StrideH: m.Stride, StrideW: m.Stride, PadH: m.Pad, PadW: m.Pad}
			x, w, dy := golden(t, f, c+".x"), golden(t, f, c+".w"), golden(t, f, c+".dy")
			y, dx, dw := make([]float32, g.YLen()), make([]float32, g.XLen()), make([]float32, g.WLen())
			ws := new(Workspace)
			Conv2DForward(g, x, w, y, ws)
			Conv2DBackwardData(g, dy, w, dx, ws, false)
			Conv2DBackwardFilter(g, x, dy, dw, ws, false)
			checkGolden(t, "y", y, golden(t, f, c+".y"), 1e-5)
			checkGolden(t, "dx", dx, golden(t, f, c+".dx"), 1e-5)
			checkGolden(t, "dw", dw, golden(t, f, c+".dw"), 1e-5)
		})
	}
}

func TestGoldenBatchNorm(t *testing.T) {
	f, cases := openGolden(t, "kernel_bn.safetensors")
	for _, c := range cases {
		t.Run(c, func(t *testing.T) {
			var m struct {
				Shape         []int
				Affine        bool
				Eps, Momentum float32
			}
			if err := json.Unmarshal([]byte(f.Metadata[c]), &m); err != nil {
				t.Fatal(err)
			}
			n, ch, hw := m.Shape[0], m.Shape[1], 1
			for _, d := range m.Shape[2:] {
				hw *= d
			}
			x, dy := golden(t, f, c+".x"), golden(t, f, c+".dy")
			rm := append([]float32(nil), golden(t, f, c+".rm0")...)
			rv := append([]float32(nil), golden(t, f, c+".rv0")...)
			var gamma, beta, dg, db []float32
			if m.Affine {
				gamma, beta = golden(t, f, c+".gamma"), golden(t, f, c+".beta")
				dg, db = make([]float32, ch), make([]float32, ch)
			}
			y, dx := make([]float32, len(x)), make([]float32, len(x))
			mean, inv := make([]float32, ch), make([]float32, ch)
			BatchNormTrain(n, ch, hw, x, gamma, beta, y, mean, inv, rm, rv, m.Momentum, m.Eps)
			BatchNormBackward(n, ch, hw, x, dy, gamma, mean, inv, dx, dg, db, false)
			checkGolden(t, "y", y, golden(t, f, c+".y"), 1e-5)
			checkGolden(t, "running_mean", rm, golden(t, f, c+".rm1"), 1e-6)
			checkGolden(t, "running_var", rv, golden(t, f, c+".rv1"), 1e-6)
			checkGolden(t, "dx", dx, golden(t, f, c+".dx"), 1e-5)
			if m.Affine {
				checkGolden(t, "dgamma", dg, golden(t, f, c+".dgamma"), 1e-5)
				checkGolden(t, "dbeta", db, golden(t, f, c+".dbeta"), 1e-5)
			}
			BatchNormEval(n, ch, hw, x, gamma, beta, rm, rv, y, m.Eps)
			checkGolden(t, "y_eval", y, golden(t, f, c+".y_eval"), 1e-5)
		})
	}
}

func TestGoldenPool(t *testing.T) {
	f, cases := openGolden(t, "kernel_pool.safetensors")
	for _, c := range cases {
		t.Run(c, func(t *testing.T) {
			var m struct {
				Kind                       string
				N, C, H, W, K, Stride, Pad int
			}
			if err := json.Unmarshal([]byte(f.Metadata[c]), &m); err != nil {
				t.Fatal(err)
			}
			p := PoolGeom{N: m.N, C: m.C, H: m.H, W: m.W, KH: m.K, KW: m.K,
				StrideH: m.Stride, StrideW: m.Stride, PadH: m.Pad, PadW: m.Pad}
			x, dy := golden(t, f, c+".x"), golden(t, f, c+".dy")
			y, dx := make([]float32, p.YLen()), make([]float32, p.XLen())
			if strings.HasPrefix(c, "max") {
				arg := make([]int32, p.YLen())
				MaxPool2DForward(p, x, y, arg)
				want, _, err := f.Int64s(c + ".argmax")
				if err != nil {
					t.Fatal(err)
				}
				for i := range want {
					if int64(arg[i]) != want[i] {
						t.Fatalf("argmax[%d] = %d, PyTorch %d", i, arg[i], want[i])
					}
				}
				MaxPool2DBackward(p, dy, arg, dx, false)
			} else {
				AvgPool2DForward(p, x, y)
				AvgPool2DBackward(p, dy, dx, false)
			}
			checkGolden(t, "y", y, golden(t, f, c+".y"), 1e-6)
			checkGolden(t, "dx", dx, golden(t, f, c+".dx"), 1e-6)
		})
	}
}
