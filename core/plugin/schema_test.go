package plugin

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// testSchema has every feature the wire carries: types, defaults, required
// attributes and nested single, list and map blocks.
var testSchema = Schema{
	Attributes: []Attribute{
		{Name: "tau", Type: cty.Number, Default: cty.NumberFloatVal(0.99), Description: "EMA rate"},
		{Name: "mode", Type: cty.String, Required: true, OneOf: []cty.Value{cty.StringVal("x"), cty.StringVal("p+center")}},
		{Name: "rate", Type: cty.Number, Default: cty.NumberIntVal(1), Min: ptr(0.0), Max: ptr(1.0)},
		{Name: "dims", Type: cty.List(cty.Number), Default: cty.ListVal([]cty.Value{cty.NumberIntVal(8)})},
	},
	Blocks: []Block{
		{TypeName: "schedule", Nesting: NestingSingle, Attributes: []Attribute{{Name: "kind", Type: cty.String, Required: true}}},
		{TypeName: "head", Nesting: NestingList, MaxItems: 2, Attributes: []Attribute{{Name: "width", Type: cty.Number, Required: true}}},
		{TypeName: "group", Nesting: NestingMap, Labels: []string{"name"}, Attributes: []Attribute{{Name: "lr", Type: cty.Number}}},
	},
}

func TestSchemaWireRoundTrip(t *testing.T) {
	w, err := schemaToPB(testSchema)
	if err != nil {
		t.Fatal(err)
	}
	got, err := schemaFromPB(w)
	if err != nil {
		t.Fatal(err)
	}
	src := `mode = "x"
schedule { kind = "cosine" }
head { width = 1 }
head { width = 2 }
group "predictor" { lr = 0.1 }
`
	want := decode(t, testSchema, src)
	if v := decode(t, got, src); !v.RawEquals(want) {
		t.Fatalf("decoded through the wire schema:\n%#v\nwant\n%#v", v, want)
	}
	if tau := want.GetAttr("tau"); !tau.RawEquals(cty.NumberFloatVal(0.99)) {
		t.Errorf("default tau = %#v", tau)
	}
	if w := want.GetAttr("group").Index(cty.StringVal("predictor")).GetAttr("lr"); !w.RawEquals(cty.NumberFloatVal(0.1)) {
		t.Errorf("group lr = %#v", w)
	}
	b, ty, err := marshalConfig(want)
	if err != nil {
		t.Fatal(err)
	}
	back, err := unmarshalConfig(b, ty)
	if err != nil {
		t.Fatal(err)
	}
	if !back.RawEquals(want) {
		t.Errorf("config JSON round trip:\n%#v\nwant\n%#v", back, want)
	}
}

func decode(t *testing.T, s Schema, src string) cty.Value {
	t.Helper()
	f, diags := hclsyntax.ParseConfig([]byte(src), "p.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	v, diags := DecodeConfig(f.Body, s, nil)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	return v
}

func ptr[T any](v T) *T { return &v }

func TestSchemaErrors(t *testing.T) {
	tests := []struct{ name, src, want string }{
		{"not one of", `mode = "p+centre"`, `"p+centre" is not one of "x", "p+center". Did you mean "p+center"?`},
		{"above max", "mode = \"x\"\nrate = 2", `The value must be at most 1, got 2.`},
		{"below min", "mode = \"x\"\nrate = -1", `The value must be at least 0, got -1.`},
		{"missing required", ``, `The argument "mode" is required`},
		{"too many blocks", "mode = \"x\"\nhead { width = 1 }\nhead { width = 2 }\nhead { width = 3 }", `No more than 2 "head" blocks`},
		{"missing block attr", "mode = \"x\"\nschedule {}", `"kind" is required`},
	}
	// Through the wire too: the constraints must survive the schema's trip.
	w, err := schemaToPB(testSchema)
	if err != nil {
		t.Fatal(err)
	}
	wired, err := schemaFromPB(w)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []Schema{testSchema, wired} {
		for _, tc := range tests {
			f, _ := hclsyntax.ParseConfig([]byte(tc.src), "p.hcl", hcl.InitialPos)
			_, diags := DecodeConfig(f.Body, s, nil)
			if !diags.HasErrors() || !strings.Contains(diags.Error(), tc.want) {
				t.Errorf("%s: diags %v, want %q", tc.name, diags, tc.want)
			}
			if diags.HasErrors() && diags[0].Subject == nil {
				t.Errorf("%s: diagnostic without a source range", tc.name)
			}
		}
	}
}

func TestServeBundledUnknown(t *testing.T) {
	Bundled["known"] = func() Plugin { return Plugin{} }
	defer delete(Bundled, "known")
	err := ServeBundled("nope")
	if err == nil || !strings.Contains(err.Error(), `no bundled plugin "nope" (have `) || !strings.Contains(err.Error(), "known") {
		t.Fatalf("err = %v", err)
	}
}

func TestDiscover(t *testing.T) {
	dir := t.TempDir()
	files := []struct {
		name string
		mode os.FileMode
	}{
		{"sslrun-plugin-vicreg", 0o755},
		{"sslrun-plugin-notexec", 0o644},
		{"other-tool", 0o755},
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.name), []byte("#!/bin/sh\n"), f.mode); err != nil {
			t.Fatal(err)
		}
	}
	found, err := Discover(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 || found["vicreg"] != filepath.Join(dir, "sslrun-plugin-vicreg") {
		t.Fatalf("found %v", found)
	}
	if p, err := Resolve("vicreg", filepath.Join(dir, "missing"), dir); err != nil || p != found["vicreg"] {
		t.Fatalf("resolve: %q %v", p, err)
	}
	if _, err := Resolve("notexec", dir); err == nil {
		t.Error("resolved a non-executable file")
	}
	if p, err := Resolve(found["vicreg"]); err != nil || p != found["vicreg"] {
		t.Fatalf("resolve by path: %q %v", p, err)
	}
}
