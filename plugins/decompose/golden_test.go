package decompose

import (
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sslrun/sslrun/core/safetensors"
	"github.com/sslrun/sslrun/internal/golden"
)

// Tolerances of the comparison with NumPy (tools/golden/gen_decompose.py).
const (
	relTol      = 1e-5 // scalar metrics
	relTolRank  = 1e-4 // eff_rank and spectra
	identityAbs = 1e-12
)

// wantMetrics returns the expected metrics of a fixture, from its metadata.
func wantMetrics(t *testing.T, f *safetensors.File) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for k, v := range f.Metadata {
		if key, ok := strings.CutPrefix(k, "metric."); ok {
			x, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metadata %s: %v", k, err)
			}
			out[key] = x
		}
	}
	if len(out) == 0 {
		t.Fatal("fixture has no metric.* metadata")
	}
	return out
}

func wantArray(t *testing.T, f *safetensors.File, key string) []float64 {
	t.Helper()
	raw, ok := f.Metadata["array."+key]
	if !ok {
		t.Fatalf("fixture has no array.%s", key)
	}
	var out []float64
	for _, s := range strings.Split(raw, ",") {
		x, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatalf("array.%s: %v", key, err)
		}
		out = append(out, x)
	}
	return out
}

// compare checks every expected metric against the computed rows, and that
// nothing expected is missing.
func compare(t *testing.T, want map[string]float64, got []Metric) {
	t.Helper()
	have := map[string]float64{}
	for _, m := range got {
		have[m.Key] = m.Value
	}
	for k, w := range want {
		g, ok := have[k]
		if !ok {
			t.Errorf("%s: missing", k)
			continue
		}
		tol := relTol
		switch k {
		case "identity_err":
			if math.Abs(g) > identityAbs || math.Abs(w) > identityAbs {
				t.Errorf("%s = %g, numpy %g: want both < %g", k, g, w, identityAbs)
			}
			continue
		case "eff_rank", "eff_rank_residual":
			tol = relTolRank
		}
		if !near(g, w, tol, 0) {
			t.Errorf("%s = %.10g, numpy %.10g (rel err %.2g)", k, g, w, math.Abs(g-w)/math.Abs(w))
		}
	}
}

func near(got, want, rel, abs float64) bool {
	return math.Abs(got-want) <= abs+rel*math.Abs(want)
}

func TestGoldenEmbeddings(t *testing.T) {
	for _, name := range []string{"emb_random", "emb_random_wide", "emb_collapsed", "emb_lowrank"} {
		t.Run(name, func(t *testing.T) {
			f := golden.Open(t, filepath.Join("testdata", name+".safetensors"))
			x := golden.Tensor(t, f, "x")
			st, err := Embeddings(x, Options{})
			if err != nil {
				t.Fatal(err)
			}
			compare(t, wantMetrics(t, f), st.Metrics())
			for _, arr := range st.Arrays() {
				want := wantArray(t, f, arr.Key)
				if len(arr.Data) != len(want) || arr.Shape[0] != len(want) {
					t.Fatalf("%s: length %d (shape %v), numpy %d", arr.Key, len(arr.Data), arr.Shape, len(want))
				}
				// Singular values far below the largest are float32
				// round-off of the input; compare them on the scale of the
				// largest.
				for i, w := range want {
					if !near(arr.Data[i], w, relTolRank, 1e-6*want[0]) {
						t.Errorf("%s[%d] = %.10g, numpy %.10g", arr.Key, i, arr.Data[i], w)
					}
				}
			}
		})
	}
}

func TestGoldenGradient(t *testing.T) {
	for _, c := range []struct {
		name string
		opts Options
	}{
		{"grad", Options{}},
		{"grad_normalized", Options{GradNormalized: true}},
		{"grad_tangential", Options{GradNormalized: true, GradTangential: true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := golden.Open(t, filepath.Join("testdata", c.name+".safetensors"))
			st, err := Gradient(golden.Tensor(t, f, "z"), golden.Tensor(t, f, "g"), c.opts)
			if err != nil {
				t.Fatal(err)
			}
			compare(t, wantMetrics(t, f), st.Metrics())
		})
	}
}

func TestGoldenExtra(t *testing.T) {
	f := golden.Open(t, filepath.Join("testdata", "extra.safetensors"))
	st, err := ExtraGradient(golden.Tensor(t, f, "zb"), golden.Tensor(t, f, "pb"), Options{Tensor: "p"})
	if err != nil {
		t.Fatal(err)
	}
	compare(t, wantMetrics(t, f), st.Metrics())
}
