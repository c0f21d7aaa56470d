package pipeline

import (
	"fmt"
	"strings"

	"github.com/agext/levenshtein"
	"github.com/hashicorp/hcl/v2"
)

// overrideBody is a body whose attributes come from over when it sets them
// and from base otherwise, and whose nested blocks of a type come from over
// when over has any block of that type (blocks are replaced whole, like
// Terraform's override files). Each side validates its own content, so
// errors keep the range in the file that has them.
type overrideBody struct {
	base, over hcl.Body
}

// override returns base overridden by over; a nil over returns base.
func override(base, over hcl.Body) hcl.Body {
	switch {
	case over == nil:
		return base
	case base == nil:
		return over
	}
	return &overrideBody{base: base, over: over}
}

func (b *overrideBody) merge(cb, co *hcl.BodyContent) *hcl.BodyContent {
	out := &hcl.BodyContent{Attributes: hcl.Attributes{}, MissingItemRange: cb.MissingItemRange}
	for n, a := range cb.Attributes {
		out.Attributes[n] = a
	}
	for n, a := range co.Attributes {
		out.Attributes[n] = a
	}
	overTypes := map[string]bool{}
	for _, blk := range co.Blocks {
		overTypes[blk.Type] = true
	}
	for _, blk := range cb.Blocks {
		if !overTypes[blk.Type] {
			out.Blocks = append(out.Blocks, blk)
		}
	}
	out.Blocks = append(out.Blocks, co.Blocks...)
	return out
}

// Content implements hcl.Body.
func (b *overrideBody) Content(s *hcl.BodySchema) (*hcl.BodyContent, hcl.Diagnostics) {
	cb, d1 := b.base.Content(relaxed(s))
	co, d2 := b.over.Content(relaxed(s))
	c := b.merge(cb, co)
	diags := append(d1, d2...)
	for _, a := range s.Attributes {
		if a.Required && c.Attributes[a.Name] == nil {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Missing required argument",
				Detail: fmt.Sprintf("The argument %q is required, but no definition was found.", a.Name), Subject: c.MissingItemRange.Ptr()})
		}
	}
	return c, diags
}

// PartialContent implements hcl.Body.
func (b *overrideBody) PartialContent(s *hcl.BodySchema) (*hcl.BodyContent, hcl.Body, hcl.Diagnostics) {
	cb, rb, d1 := b.base.PartialContent(relaxed(s))
	co, ro, d2 := b.over.PartialContent(relaxed(s))
	return b.merge(cb, co), &overrideBody{base: rb, over: ro}, append(d1, d2...)
}

// JustAttributes implements hcl.Body.
func (b *overrideBody) JustAttributes() (hcl.Attributes, hcl.Diagnostics) {
	ab, d1 := b.base.JustAttributes()
	ao, d2 := b.over.JustAttributes()
	for n, a := range ao {
		ab[n] = a
	}
	return ab, append(d1, d2...)
}

// MissingItemRange implements hcl.Body.
func (b *overrideBody) MissingItemRange() hcl.Range { return b.base.MissingItemRange() }

// relaxed drops Required flags: a required argument may be set on either
// side, so it is checked on the merged content instead.
func relaxed(s *hcl.BodySchema) *hcl.BodySchema {
	r := &hcl.BodySchema{Blocks: s.Blocks}
	for _, a := range s.Attributes {
		a.Required = false
		r.Attributes = append(r.Attributes, a)
	}
	return r
}

// didYouMean returns ` Did you mean "x"?` for the closest candidate within
// edit distance 2 (as HCL's own suggestions), or "".
func didYouMean(given string, candidates []string) string {
	best, bestD := "", 3
	for _, c := range candidates {
		if d := levenshtein.Distance(given, c, nil); d < bestD {
			best, bestD = c, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" Did you mean %q?", best)
}

func quoteList(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = fmt.Sprintf("%q", x)
	}
	if len(q) <= 1 {
		return strings.Join(q, "")
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}
