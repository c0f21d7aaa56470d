package pipeline

import (
	"fmt"
	"slices"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
)

// The parser's tests decode plugin blocks with these schemas when their
// Options name none.
func init() { defaultSchemas = func() SchemaProvider { return StaticSchemas() } }

// StaticSchemas returns, for this package's tests only, copies of the
// bundled plugins' schemas (sslrun asks the plugins themselves: see
// core/runner.Schemas; cmd/sslrun's tests validate the shipped pipelines
// with the live ones):
//
//	loss "simsiam"  { stop_gradient = true, target = "z" (z|p|p+center|p+residual), predictor = "mlp" (mlp|bias|none) }
//	loss "simclr"   { temperature = 0.5 }
//	loss "triplet"  { negative = "full" (full|center|residual) }   (simclr's triplet loss)
//	loss "byol"     { tau_base = 0.99 }
//	analyzer "decompose" { every = 1, tensors = ["z"] }
func StaticSchemas() StaticProvider {
	return StaticProvider{
		KindLoss: {
			"simsiam": hcldec.ObjectSpec{
				"stop_gradient": optAttr("stop_gradient", cty.Bool, cty.True),
				"target":        oneOf(optAttr("target", cty.String, cty.StringVal("z")), "z", "p", "p+center", "p+residual"),
				"predictor":     oneOf(optAttr("predictor", cty.String, cty.StringVal("mlp")), "mlp", "bias", "none"),
			},
			"simclr": hcldec.ObjectSpec{
				"temperature": positive(optAttr("temperature", cty.Number, cty.NumberFloatVal(0.5))),
			},
			"triplet": hcldec.ObjectSpec{
				"negative": oneOf(optAttr("negative", cty.String, cty.StringVal("full")), "full", "center", "residual"),
			},
			"byol": hcldec.ObjectSpec{
				"tau_base": positive(optAttr("tau_base", cty.Number, cty.NumberFloatVal(0.99))),
			},
		},
		KindAnalyzer: {
			"decompose": hcldec.ObjectSpec{
				"tensors": optAttr("tensors", cty.List(cty.String), cty.ListVal([]cty.Value{cty.StringVal("z")})),
			},
		},
	}
}

func optAttr(name string, ty cty.Type, def cty.Value) hcldec.Spec {
	return &hcldec.DefaultSpec{
		Primary: &hcldec.AttrSpec{Name: name, Type: ty},
		Default: &hcldec.LiteralSpec{Value: def},
	}
}

// oneOf wraps an attribute spec with a check that its string value is one
// of allowed; the diagnostic lands on the attribute.
func oneOf(s hcldec.Spec, allowed ...string) hcldec.Spec {
	return &hcldec.ValidateSpec{Wrapped: s, Func: func(v cty.Value) hcl.Diagnostics {
		if v.IsNull() || !v.IsKnown() || slices.Contains(allowed, v.AsString()) {
			return nil
		}
		return hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Invalid value",
			Detail:   fmt.Sprintf("%q is not one of %s.%s", v.AsString(), quoteList(allowed), didYouMean(v.AsString(), allowed)),
		}}
	}}
}

// positive wraps a number spec with a check that the value is > 0.
func positive(s hcldec.Spec) hcldec.Spec {
	return &hcldec.ValidateSpec{Wrapped: s, Func: func(v cty.Value) hcl.Diagnostics {
		if v.IsNull() || !v.IsKnown() {
			return nil
		}
		if f, _ := v.AsBigFloat().Float64(); !(f > 0) {
			return hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Invalid value", Detail: fmt.Sprintf("The value must be positive, got %g.", f)}}
		}
		return nil
	}}
}
