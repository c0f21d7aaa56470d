package runner

import (
	"fmt"
	"sort"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"

	"github.com/sslrun/sslrun/core/pipeline"
)

// PluginInfo describes one plugin for `sslrun plugins list`.
type PluginInfo struct {
	// Kind is "loss" or "analyzer".
	Kind string
	Name string
	// HasSchema says the schema provider knows it (pipelines can name
	// it); Registered says this binary can run it.
	HasSchema, Registered bool
}

// Plugins lists the plugins known to schemas (nil: pipeline.StaticSchemas)
// or registered in this binary, by kind then name.
//
// Seam for core/plugin: the CLI will pass a pipeline.Chain of the live
// plugins' schemas and the static fallback, and registration will include
// plugin subprocesses.
func Plugins(schemas pipeline.SchemaProvider) []PluginInfo {
	if schemas == nil {
		schemas = pipeline.StaticSchemas()
	}
	var out []PluginInfo
	for _, k := range []struct {
		kind string
		reg  []string
	}{{pipeline.KindLoss, Losses()}, {pipeline.KindAnalyzer, Analyzers()}} {
		byName := map[string]*PluginInfo{}
		for _, n := range schemas.Names(k.kind) {
			byName[n] = &PluginInfo{Kind: k.kind, Name: n, HasSchema: true}
		}
		for _, n := range k.reg {
			if byName[n] == nil {
				byName[n] = &PluginInfo{Kind: k.kind, Name: n}
			}
			byName[n].Registered = true
		}
		names := sortedKeys(byName)
		for _, n := range names {
			out = append(out, *byName[n])
		}
	}
	return out
}

// AttrDoc documents one argument of a plugin block.
type AttrDoc struct {
	Name     string
	Type     string
	Required bool
	// Default is the default value as HCL/JSON text, "" when none.
	Default string
	// Validated says a validation function checks the value further.
	Validated bool
}

// Schema returns the arguments of plugin name: its kind ("loss" or
// "analyzer", searched in that order) and the documented arguments.
func Schema(schemas pipeline.SchemaProvider, name string) (string, []AttrDoc, error) {
	if schemas == nil {
		schemas = pipeline.StaticSchemas()
	}
	for _, kind := range []string{pipeline.KindLoss, pipeline.KindAnalyzer} {
		spec, err := schemas.Schema(kind, name)
		if err != nil {
			continue
		}
		docs, err := describe(spec)
		return kind, docs, err
	}
	var all []string
	for _, p := range Plugins(schemas) {
		all = append(all, p.Name)
	}
	return "", nil, &ConfigError{Err: fmt.Errorf("no plugin %q (available: %v)", name, all)}
}

// describe walks the spec shapes plugin schemas use (ObjectSpec of
// attributes, possibly wrapped in DefaultSpec and ValidateSpec).
func describe(spec hcldec.Spec) ([]AttrDoc, error) {
	obj, ok := spec.(hcldec.ObjectSpec)
	if !ok {
		return nil, fmt.Errorf("schema is a %T, not an object of attributes", spec)
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []AttrDoc
	for _, k := range keys {
		d := AttrDoc{Name: k}
		s := obj[k]
		for s != nil {
			switch x := s.(type) {
			case *hcldec.ValidateSpec:
				d.Validated, s = true, x.Wrapped
				continue
			case *hcldec.DefaultSpec:
				if lit, ok := x.Default.(*hcldec.LiteralSpec); ok {
					d.Default = ctyText(lit.Value)
				}
				s = x.Primary
				continue
			case *hcldec.AttrSpec:
				d.Name, d.Type, d.Required = x.Name, x.Type.FriendlyName(), x.Required
			default:
				d.Type = hcldec.ImpliedType(s).FriendlyName()
			}
			s = nil
		}
		out = append(out, d)
	}
	return out, nil
}

func ctyText(v cty.Value) string {
	b, err := ctyjson.Marshal(v, v.Type())
	if err != nil {
		return v.GoString()
	}
	return string(b)
}
