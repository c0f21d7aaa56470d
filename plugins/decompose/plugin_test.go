package decompose

import (
	"context"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/zclconf/go-cty/cty"

	"github.com/sslrun/sslrun/core/plugin"
	"github.com/sslrun/sslrun/core/tensor"
	"github.com/sslrun/sslrun/internal/tensortest"
)

// features returns [n, d] post-ReLU features such as a randomly
// initialized backbone gives: max(x + 3, 0) for standard normal x, so
// non-negative with a large mean in every channel (m_o about 0.95, as
// measured on a ConvNet's Fashion-MNIST features at step 0).
func features(rng *rand.Rand, n, d int) *tensor.T {
	x := tensortest.Randn(rng, n, d)
	for i, v := range x.Data {
		x.Data[i] = max(v+3, 0)
	}
	return x
}

// pointCloud returns n rows close to one direction: collapsed embeddings.
func pointCloud(rng *rand.Rand, n, d int) *tensor.T {
	x := tensor.New(n, d)
	for i := range x.Data {
		x.Data[i] = 1 + 0.01*float32(rng.NormFloat64())
	}
	return x
}

// verdictOf returns the plugin.MetricCollapsed metric of ms, if any, and
// the value of decompose's m_o for tensor (NaN when absent).
func verdictOf(ms []plugin.Metric, tensor string) (collapsed bool, reason string, mo float64) {
	mo = math.NaN()
	for _, m := range ms {
		switch {
		case m.Name == plugin.MetricCollapsed && m.Value > 0:
			collapsed, reason = true, m.Context["reason"]
		case m.Name == "m_o" && m.Context["tensor"] == tensor:
			mo = m.Value
		}
	}
	return collapsed, reason, mo
}

// TestCollapseVerdictNotOnFeatures: an evaluation set's embeddings (by
// default the backbone's non-negative post-ReLU features, m_o > 0.9 at
// random initialization) are measured but never judged, so that
// --stop-on-collapse does not stop every run at step 0.
func TestCollapseVerdictNotOnFeatures(t *testing.T) {
	ctx := context.Background()
	a := Plugin().Analyzer
	rng := rand.New(rand.NewPCG(3, 4))
	x := features(rng, 512, 64)
	ms, arrays, err := a.Evaluate(ctx, plugin.EvalSet{Step: plugin.Step{Step: 0}, Name: "test",
		Tensors: map[string]*tensor.T{"embeddings": x}})
	if err != nil {
		t.Fatal(err)
	}
	c, why, mo := verdictOf(ms, "feature")
	if !(mo > CollapseMO) {
		t.Fatalf("m_o of post-ReLU features = %v, want > %g (the case this test is about)", mo, CollapseMO)
	}
	if c {
		t.Errorf("Evaluate reported collapse on backbone features: %s", why)
	}
	if len(arrays) == 0 {
		t.Errorf("Evaluate returned no spectra")
	}
}

// TestCollapseVerdictOnZ: Observe judges z (its reason names it), ignores
// whatever else the step carries, and judges p only when z is not
// measured.
func TestCollapseVerdictOnZ(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(5, 6))
	const n, d = 256, 32
	healthy, collapsed := tensortest.Randn(rng, n, d), pointCloud(rng, n, d)
	feature := features(rng, n, 128)
	observe := func(tensors []string, z, p *tensor.T) (bool, string) {
		t.Helper()
		pl := Plugin()
		vals := make([]cty.Value, len(tensors))
		for i, s := range tensors {
			vals[i] = cty.StringVal(s)
		}
		cfg := cty.ObjectVal(map[string]cty.Value{"tensors": cty.ListVal(vals)})
		if err := pl.Analyzer.(plugin.Configurer).Configure(ctx, cfg); err != nil {
			t.Fatal(err)
		}
		ms, _, err := pl.Analyzer.Observe(ctx, plugin.StepTensors{Step: plugin.Step{Step: 0, Train: true},
			Tensors: map[string]*tensor.T{"z1": z, "z2": z, "p1": p, "p2": p, "feature": feature, "h1": feature}})
		if err != nil {
			t.Fatal(err)
		}
		c, why, _ := verdictOf(ms, "z")
		return c, why
	}
	for _, tc := range []struct {
		name    string
		tensors []string
		z, p    *tensor.T
		want    bool
		prefix  string // of the reason
	}{
		{"healthy z", []string{"z"}, healthy, healthy, false, ""},
		{"collapsed z", []string{"z"}, collapsed, healthy, true, "z: m_o "},
		{"z judged, not p", []string{"z", "p"}, healthy, collapsed, false, ""},
		{"z judged, p healthy", []string{"p", "z"}, collapsed, healthy, true, "z: m_o "},
		{"p alone, collapsed", []string{"p"}, healthy, collapsed, true, "p: m_o "},
		{"p alone, healthy", []string{"p"}, collapsed, healthy, false, ""},
	} {
		c, why := observe(tc.tensors, tc.z, tc.p)
		if c != tc.want || !strings.HasPrefix(why, tc.prefix) {
			t.Errorf("%s: collapsed %v (reason %q), want %v with a reason starting %q", tc.name, c, why, tc.want, tc.prefix)
		}
	}
}
