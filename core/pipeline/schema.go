package pipeline

import (
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/hashicorp/hcl/v2/hcldec"
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
// core/runner.Schemas is the one sslrun uses: it starts each plugin a
// pipeline names and asks it for its schema (core/plugin's Schema.Spec).
// This package knows no plugin's schema itself.
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

// Chain is a SchemaProvider that asks each provider in turn.
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
