package pipeline

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
)

// SyntaxError is returned by Format for a source that does not parse; it
// carries the diagnostics with their ranges.
type SyntaxError struct {
	Diags hcl.Diagnostics
}

func (e *SyntaxError) Error() string { return "pipeline: " + e.Diags.Error() }

// Format returns src in canonical layout, for `sslrun fmt`. Native syntax
// goes through hclwrite.Format (Terraform's `fmt`: aligned `=`, two-space
// indent, comments kept). JSON syntax (a source whose first non-space byte
// is '{') is re-indented with two spaces, keeping the key order. A source
// that does not parse is returned unchanged with a *SyntaxError, so fmt
// never rewrites a broken file.
func Format(src []byte) ([]byte, error) { return FormatSource("<input>", src) }

// FormatSource is Format with the file name that diagnostics of a
// *SyntaxError should carry.
func FormatSource(filename string, src []byte) ([]byte, error) {
	if t := bytes.TrimLeft(src, " \t\r\n"); len(t) > 0 && t[0] == '{' {
		if !json.Valid(src) {
			var v any
			err := json.Unmarshal(src, &v)
			return src, fmt.Errorf("pipeline: format %s: %w", filename, err)
		}
		var buf bytes.Buffer
		if err := json.Indent(&buf, bytes.TrimSpace(src), "", "  "); err != nil {
			return src, fmt.Errorf("pipeline: format %s: %w", filename, err)
		}
		buf.WriteByte('\n')
		return buf.Bytes(), nil
	}
	if _, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos); diags.HasErrors() {
		return src, &SyntaxError{Diags: diags}
	}
	return hclwrite.Format(src), nil
}
