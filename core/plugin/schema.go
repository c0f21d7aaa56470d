package plugin

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/agext/levenshtein"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"

	pb "github.com/sslrun/sslrun/core/plugin/proto"
)

// Schema is a plugin's configuration schema: the attributes and nested
// blocks of its HCL block in the pipeline. The host turns it into an
// hcldec.Spec, so validation errors carry source ranges and "Did you
// mean" suggestions.
type Schema struct {
	Attributes []Attribute
	Blocks     []Block
}

// Attribute is one configuration attribute.
type Attribute struct {
	Name     string
	Type     cty.Type
	Required bool
	// Default is used when the attribute is absent; cty.NilVal for none.
	Default     cty.Value
	Description string
	// OneOf lists the allowed values (e.g. the variants of a string
	// option); empty allows any value of Type.
	OneOf []cty.Value
	// Min and Max bound a number attribute, inclusive; nil for none.
	Min, Max *float64
}

// Nesting is how a nested block may repeat.
type Nesting string

// Block nestings.
const (
	NestingSingle Nesting = "single"
	NestingList   Nesting = "list"
	NestingMap    Nesting = "map" // one label, the map key
)

// Block is a nested configuration block.
type Block struct {
	TypeName    string
	Nesting     Nesting
	Labels      []string // label names for NestingMap
	Attributes  []Attribute
	Blocks      []Block
	Required    bool // NestingSingle: the block must be present
	MinItems    int  // NestingList
	MaxItems    int  // NestingList; 0 means unlimited
	Description string
}

// Spec converts the schema to an hcldec.Spec whose decoded value is an
// object with one attribute per schema attribute and block.
func (s Schema) Spec() hcldec.Spec {
	obj := hcldec.ObjectSpec{}
	for _, a := range s.Attributes {
		obj[a.Name] = attrSpec(a)
	}
	for _, b := range s.Blocks {
		obj[b.TypeName] = blockSpec(b)
	}
	return obj
}

func attrSpec(a Attribute) hcldec.Spec {
	var spec hcldec.Spec = &hcldec.AttrSpec{Name: a.Name, Type: a.Type, Required: a.Required}
	if a.Default != cty.NilVal && !a.Required {
		spec = &hcldec.DefaultSpec{Primary: spec, Default: &hcldec.LiteralSpec{Value: a.Default}}
	}
	if len(a.OneOf) > 0 || a.Min != nil || a.Max != nil {
		spec = &hcldec.ValidateSpec{Wrapped: spec, Func: a.validate}
	}
	return spec
}

// validate checks OneOf, Min and Max; the diagnostic lands on the
// attribute's expression (hcldec.ValidateSpec supplies the range).
func (a Attribute) validate(v cty.Value) hcl.Diagnostics {
	if v.IsNull() || !v.IsWhollyKnown() {
		return nil
	}
	invalid := func(detail string) hcl.Diagnostics {
		return hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Invalid value for " + a.Name, Detail: detail}}
	}
	if len(a.OneOf) > 0 {
		ok := false
		var names []string
		for _, w := range a.OneOf {
			if w.Equals(v).True() {
				ok = true
			}
			names = append(names, ctyString(w))
		}
		if !ok {
			detail := fmt.Sprintf("%s is not one of %s.", ctyString(v), strings.Join(names, ", "))
			if v.Type() == cty.String {
				if s := suggest(v.AsString(), a.OneOf); s != "" {
					detail += fmt.Sprintf(" Did you mean %q?", s)
				}
			}
			return invalid(detail)
		}
	}
	if v.Type() == cty.Number {
		f, _ := v.AsBigFloat().Float64()
		if a.Min != nil && f < *a.Min {
			return invalid(fmt.Sprintf("The value must be at least %g, got %g.", *a.Min, f))
		}
		if a.Max != nil && f > *a.Max {
			return invalid(fmt.Sprintf("The value must be at most %g, got %g.", *a.Max, f))
		}
	}
	return nil
}

func ctyString(v cty.Value) string {
	switch v.Type() {
	case cty.String:
		return strconv.Quote(v.AsString())
	case cty.Number:
		return v.AsBigFloat().Text('g', -1)
	case cty.Bool:
		return strconv.FormatBool(v.True())
	}
	b, err := ctyjson.Marshal(v, v.Type())
	if err != nil {
		return v.GoString()
	}
	return string(b)
}

// suggest returns the allowed string closest to s when it is close enough
// to be a typo.
func suggest(s string, allowed []cty.Value) string {
	best, bestD := "", 3
	for _, w := range allowed {
		if w.Type() != cty.String {
			continue
		}
		if d := levenshtein.Distance(s, w.AsString(), nil); d < bestD {
			best, bestD = w.AsString(), d
		}
	}
	return best
}

func blockSpec(b Block) hcldec.Spec {
	nested := Schema{Attributes: b.Attributes, Blocks: b.Blocks}.Spec()
	switch b.Nesting {
	case NestingList:
		return &hcldec.BlockListSpec{TypeName: b.TypeName, Nested: nested, MinItems: b.MinItems, MaxItems: b.MaxItems}
	case NestingMap:
		return &hcldec.BlockMapSpec{TypeName: b.TypeName, LabelNames: b.Labels, Nested: nested}
	default:
		return &hcldec.BlockSpec{TypeName: b.TypeName, Nested: nested, Required: b.Required}
	}
}

// DecodeConfig validates and decodes a plugin's HCL block body against its
// schema. A nil body decodes as an empty block (all defaults).
func DecodeConfig(body hcl.Body, s Schema, ectx *hcl.EvalContext) (cty.Value, hcl.Diagnostics) {
	if body == nil {
		body = hcl.EmptyBody()
	}
	return hcldec.Decode(body, s.Spec(), ectx)
}

// AttrError is a configuration error about one attribute; the host reports
// it at that attribute's source range.
type AttrError struct {
	Attr string
	Msg  string
}

// Error is "attr: message".
func (e *AttrError) Error() string { return fmt.Sprintf("%s: %s", e.Attr, e.Msg) }

// AttrErrorf returns an *AttrError about attribute attr.
func AttrErrorf(attr, format string, args ...any) error {
	return &AttrError{Attr: attr, Msg: fmt.Sprintf(format, args...)}
}

// ConfigError is a plugin's rejection of its configuration.
type ConfigError struct {
	Plugin string
	Diags  []ConfigDiag
}

// ConfigDiag is one problem a plugin found in its configuration.
type ConfigDiag struct {
	Attr    string // empty when not about one attribute
	Summary string
	Detail  string
}

// Error summarises the first diagnostic and counts the rest.
func (e *ConfigError) Error() string {
	if len(e.Diags) == 0 {
		return fmt.Sprintf("plugin %q rejected its configuration", e.Plugin)
	}
	d := e.Diags[0]
	msg := fmt.Sprintf("plugin %q: invalid configuration: %s", e.Plugin, d.Summary)
	if d.Attr != "" {
		msg = fmt.Sprintf("plugin %q: invalid configuration: %s: %s", e.Plugin, d.Attr, d.Summary)
	}
	if len(e.Diags) > 1 {
		msg += fmt.Sprintf(" (and %d more)", len(e.Diags)-1)
	}
	return msg
}

// Diagnostics turns the error into HCL diagnostics located in body: at the
// attribute's expression when the plugin named one, else at the block.
func (e *ConfigError) Diagnostics(body hcl.Body) hcl.Diagnostics {
	var diags hcl.Diagnostics
	for _, d := range e.Diags {
		diag := &hcl.Diagnostic{Severity: hcl.DiagError, Summary: d.Summary, Detail: d.Detail}
		if body != nil {
			rng := body.MissingItemRange()
			if d.Attr != "" {
				content, _, _ := body.PartialContent(&hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: d.Attr}}})
				if a := content.Attributes[d.Attr]; a != nil {
					rng = a.Expr.Range()
				}
			}
			diag.Subject = &rng
		}
		if diag.Detail == "" {
			diag.Detail = fmt.Sprintf("Plugin %q rejected this value.", e.Plugin)
		}
		diags = append(diags, diag)
	}
	return diags
}

// configDiags converts a Configure error into wire diagnostics.
func configDiags(err error) []*pb.Diagnostic {
	var ae *AttrError
	if errors.As(err, &ae) {
		return []*pb.Diagnostic{{Severity: "error", Summary: ae.Msg, Attribute: []string{ae.Attr}}}
	}
	return []*pb.Diagnostic{{Severity: "error", Summary: err.Error()}}
}

func configErrorFromPB(name string, ds []*pb.Diagnostic) error {
	var ce ConfigError
	ce.Plugin = name
	for _, d := range ds {
		if d.Severity != "error" {
			continue
		}
		cd := ConfigDiag{Summary: d.Summary, Detail: d.Detail}
		if len(d.Attribute) > 0 {
			cd.Attr = d.Attribute[0]
		}
		ce.Diags = append(ce.Diags, cd)
	}
	if len(ce.Diags) == 0 {
		return nil
	}
	return &ce
}

// marshalConfig encodes a configuration value and its type separately:
// cty's JSON value encoding alone would turn lists into tuples and maps
// into objects.
func marshalConfig(v cty.Value) (val, ty []byte, err error) {
	if v == cty.NilVal {
		v = cty.EmptyObjectVal
	}
	if ty, err = ctyjson.MarshalType(v.Type()); err != nil {
		return nil, nil, fmt.Errorf("encode configuration type: %w", err)
	}
	if val, err = ctyjson.Marshal(v, v.Type()); err != nil {
		return nil, nil, fmt.Errorf("encode configuration: %w", err)
	}
	return val, ty, nil
}

func unmarshalConfig(val, ty []byte) (cty.Value, error) {
	if len(val) == 0 {
		return cty.EmptyObjectVal, nil
	}
	t, err := ctyjson.UnmarshalType(ty)
	if err != nil {
		return cty.NilVal, fmt.Errorf("decode configuration type: %w", err)
	}
	v, err := ctyjson.Unmarshal(val, t)
	if err != nil {
		return cty.NilVal, fmt.Errorf("decode configuration: %w", err)
	}
	return v, nil
}

func schemaToPB(s Schema) (*pb.SchemaResponse, error) {
	attrs, err := attrsToPB(s.Attributes)
	if err != nil {
		return nil, err
	}
	blocks, err := blocksToPB(s.Blocks)
	if err != nil {
		return nil, err
	}
	return &pb.SchemaResponse{Attributes: attrs, Blocks: blocks}, nil
}

func attrsToPB(as []Attribute) ([]*pb.Attribute, error) {
	var out []*pb.Attribute
	for _, a := range as {
		ty, err := ctyjson.MarshalType(a.Type)
		if err != nil {
			return nil, fmt.Errorf("schema attribute %s: %w", a.Name, err)
		}
		pa := &pb.Attribute{Name: a.Name, Type: ty, Required: a.Required, Description: a.Description, Min: a.Min, Max: a.Max}
		if a.Default != cty.NilVal {
			if pa.DefaultValue, err = ctyjson.Marshal(a.Default, a.Type); err != nil {
				return nil, fmt.Errorf("schema attribute %s default: %w", a.Name, err)
			}
		}
		for _, v := range a.OneOf {
			b, err := ctyjson.Marshal(v, a.Type)
			if err != nil {
				return nil, fmt.Errorf("schema attribute %s one_of: %w", a.Name, err)
			}
			pa.OneOf = append(pa.OneOf, b)
		}
		out = append(out, pa)
	}
	return out, nil
}

func blocksToPB(bs []Block) ([]*pb.Block, error) {
	var out []*pb.Block
	for _, b := range bs {
		attrs, err := attrsToPB(b.Attributes)
		if err != nil {
			return nil, fmt.Errorf("block %s: %w", b.TypeName, err)
		}
		nested, err := blocksToPB(b.Blocks)
		if err != nil {
			return nil, fmt.Errorf("block %s: %w", b.TypeName, err)
		}
		out = append(out, &pb.Block{TypeName: b.TypeName, Nesting: string(b.Nesting), Labels: b.Labels,
			Attributes: attrs, Blocks: nested, MinItems: int32(b.MinItems), MaxItems: int32(b.MaxItems),
			Required: b.Required, Description: b.Description})
	}
	return out, nil
}

func schemaFromPB(r *pb.SchemaResponse) (Schema, error) {
	attrs, err := attrsFromPB(r.GetAttributes())
	if err != nil {
		return Schema{}, err
	}
	blocks, err := blocksFromPB(r.GetBlocks())
	if err != nil {
		return Schema{}, err
	}
	return Schema{Attributes: attrs, Blocks: blocks}, nil
}

func attrsFromPB(as []*pb.Attribute) ([]Attribute, error) {
	var out []Attribute
	for _, pa := range as {
		ty, err := ctyjson.UnmarshalType(pa.Type)
		if err != nil {
			return nil, fmt.Errorf("schema attribute %s type: %w", pa.Name, err)
		}
		a := Attribute{Name: pa.Name, Type: ty, Required: pa.Required, Description: pa.Description, Min: pa.Min, Max: pa.Max}
		if len(pa.DefaultValue) > 0 {
			if a.Default, err = ctyjson.Unmarshal(pa.DefaultValue, ty); err != nil {
				return nil, fmt.Errorf("schema attribute %s default: %w", pa.Name, err)
			}
		}
		for _, b := range pa.OneOf {
			v, err := ctyjson.Unmarshal(b, ty)
			if err != nil {
				return nil, fmt.Errorf("schema attribute %s one_of: %w", pa.Name, err)
			}
			a.OneOf = append(a.OneOf, v)
		}
		out = append(out, a)
	}
	return out, nil
}

func blocksFromPB(bs []*pb.Block) ([]Block, error) {
	var out []Block
	for _, pbk := range bs {
		attrs, err := attrsFromPB(pbk.Attributes)
		if err != nil {
			return nil, fmt.Errorf("block %s: %w", pbk.TypeName, err)
		}
		nested, err := blocksFromPB(pbk.Blocks)
		if err != nil {
			return nil, fmt.Errorf("block %s: %w", pbk.TypeName, err)
		}
		out = append(out, Block{TypeName: pbk.TypeName, Nesting: Nesting(pbk.Nesting), Labels: pbk.Labels,
			Attributes: attrs, Blocks: nested, MinItems: int(pbk.MinItems), MaxItems: int(pbk.MaxItems),
			Required: pbk.Required, Description: pbk.Description})
	}
	return out, nil
}
