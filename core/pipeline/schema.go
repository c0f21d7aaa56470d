package pipeline

import (
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
)

// Plugin kinds a pipeline names in block types (`loss "simsiam" {}`,
// `analyzer "decompose" {}`).
const (
	KindLoss     = "loss"
	KindAnalyzer = "analyzer"
)

// ErrUnknownPlugin is wrapped by SchemaProvider.Schema when no plugin of
// that kind and name exists.
var ErrUnknownPlugin = errors.New("unknown plugin")

// SchemaProvider gives the configuration schema of each plugin. The parser
// decodes the host's own blocks itself and hands the body of every plugin
// block (`loss "name" { ... }`, `analyzer "name" { ... }`) to hcldec with
// the spec returned here, so the plugin's schema validates its block with
// source ranges and "Did you mean" suggestions.
//
// The CLI builds one from the live plugins (core/plugin's Schema.Spec);
// StaticSchemas is the built-in fallback.
type SchemaProvider interface {
	// Schema returns the spec of plugin name of the given kind, or an
	// error wrapping ErrUnknownPlugin.
	Schema(kind, name string) (hcldec.Spec, error)
	// Names lists the plugins of a kind, for "Did you mean" suggestions.
	Names(kind string) []string
}

// StaticProvider is a SchemaProvider backed by a fixed table of specs.
type StaticProvider map[string]map[string]hcldec.Spec

// Schema implements SchemaProvider.
func (p StaticProvider) Schema(kind, name string) (hcldec.Spec, error) {
	if s, ok := p[kind][name]; ok {
		return s, nil
	}
	return nil, fmt.Errorf("%s plugin %q: %w", kind, name, ErrUnknownPlugin)
}

// Names implements SchemaProvider.
func (p StaticProvider) Names(kind string) []string {
	names := make([]string, 0, len(p[kind]))
	for n := range p[kind] {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// StaticSchemas returns the schemas of the bundled plugins as this package
// knows them: the STATIC FALLBACK used when no live plugin schemas are
// available (tests, `sslrun validate` without plugins). The CLI should
// replace it with a provider built from the schemas the plugins declare;
// the options here mirror plugins/simsiam, plugins/simclr, plugins/byol and
// the decompose analyzer:
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

// Chain is a SchemaProvider that asks each provider in turn: the CLI puts
// the live plugins first and StaticSchemas last.
type Chain []SchemaProvider

// Schema implements SchemaProvider: the first provider that knows the
// plugin answers; an error other than ErrUnknownPlugin stops the search.
func (c Chain) Schema(kind, name string) (hcldec.Spec, error) {
	for _, p := range c {
		s, err := p.Schema(kind, name)
		if err == nil || !errors.Is(err, ErrUnknownPlugin) {
			return s, err
		}
	}
	return nil, fmt.Errorf("%s plugin %q: %w", kind, name, ErrUnknownPlugin)
}

// Names implements SchemaProvider: the union of all providers' names.
func (c Chain) Names(kind string) []string {
	var names []string
	for _, p := range c {
		for _, n := range p.Names(kind) {
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	}
	sort.Strings(names)
	return names
}
