package pipeline

import (
	"fmt"
	"io"
	"math/big"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
	"github.com/zclconf/go-cty/cty/gocty"
)

// Options are the inputs of a parse besides the pipeline files.
type Options struct {
	// Vars are `-var name=value` inputs, values as typed on the command
	// line: a string variable takes the text as is, any other type parses
	// it as an HCL expression (`-var epochs=5`, `-var 'seeds=[0,1]'`).
	Vars map[string]string
	// VarFiles are `-var-file` paths (native syntax, or JSON when the name
	// ends in .json), applied in order before Vars.
	VarFiles []string
	// Schemas gives the plugins' configuration schemas (core/runner.Schemas
	// asks the plugins); nil knows no plugin.
	Schemas SchemaProvider
}

// Pipeline is a parsed pipeline: one run, or the runs of a study.
type Pipeline struct {
	// Files are the pipeline files parsed, in order.
	Files []string
	// Study is the study, nil for a single-run pipeline.
	Study *Study
	// Runs are the resolved runs: exactly one without a study, one per
	// variant (named runs x matrix, in file order) with one.
	Runs []*Run
}

// Study describes a `study "name" {}` block.
type Study struct {
	Name        string
	Description string
	// Axes are the matrix axes in file order.
	Axes []string
	// Variants are the named `run "..." {}` blocks, in file order.
	Variants []string
	Range    hcl.Range
}

// Parser parses pipelines and keeps the sources for diagnostics. A Parser
// is not safe for concurrent use.
type Parser struct {
	p    *hclparse.Parser
	opts Options
	ctx  *hcl.EvalContext // the last run's context, for suggestions
}

// defaultSchemas is the provider of a parser whose Options name none: no
// plugins (tests set their own).
var defaultSchemas = func() SchemaProvider { return StaticProvider{} }

// NewParser returns a parser with the given inputs.
func NewParser(opts Options) *Parser {
	if opts.Schemas == nil {
		opts.Schemas = defaultSchemas()
	}
	return &Parser{p: hclparse.NewParser(), opts: opts}
}

// Parse parses the pipeline files with opts; see Parser.ParseFiles.
func Parse(paths []string, opts Options) (*Pipeline, hcl.Diagnostics) {
	return NewParser(opts).ParseFiles(paths...)
}

// Files returns the sources parsed so far, by file name, for
// hcl.NewDiagnosticTextWriter.
func (p *Parser) Files() map[string]*hcl.File { return p.p.Files() }

// WriteDiagnostics prints diags as file:line:column with a source snippet,
// without colour, wrapped at width (0: no wrapping).
func (p *Parser) WriteDiagnostics(w io.Writer, diags hcl.Diagnostics, width uint) error {
	return hcl.NewDiagnosticTextWriter(w, p.Files(), width, false).WriteDiagnostics(diags)
}

// ParseFiles reads and resolves the pipeline files (several files form one
// pipeline, like a Terraform module). Native syntax is expected unless the
// name ends in .json. All errors are returned in one pass; the Pipeline is
// nil when there is any.
func (p *Parser) ParseFiles(paths ...string) (*Pipeline, hcl.Diagnostics) {
	if len(paths) == 0 {
		return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "No pipeline files", Detail: "Give at least one pipeline file."}}
	}
	var files []*hcl.File
	var diags hcl.Diagnostics
	for _, path := range paths {
		var f *hcl.File
		var d hcl.Diagnostics
		if strings.HasSuffix(path, ".json") {
			f, d = p.p.ParseJSONFile(path)
		} else {
			f, d = p.p.ParseHCLFile(path)
		}
		diags = append(diags, d...)
		if f != nil {
			files = append(files, f)
		}
	}
	if diags.HasErrors() {
		return nil, diags
	}
	return p.resolve(paths, files)
}

// ParseSource resolves a pipeline held in memory; filename names it in
// diagnostics and selects JSON syntax when it ends in .json.
func (p *Parser) ParseSource(filename string, src []byte) (*Pipeline, hcl.Diagnostics) {
	var f *hcl.File
	var diags hcl.Diagnostics
	if strings.HasSuffix(filename, ".json") {
		f, diags = p.p.ParseJSON(src, filename)
	} else {
		f, diags = p.p.ParseHCL(src, filename)
	}
	if diags.HasErrors() {
		return nil, diags
	}
	return p.resolve([]string{filename}, []*hcl.File{f})
}

// Block types of a pipeline's top level.
var topSchema = &hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{
	{Type: "variable", LabelNames: []string{"name"}},
	{Type: "locals"},
	{Type: "study", LabelNames: []string{"name"}},
	{Type: "run"},
	{Type: "dataset", LabelNames: []string{"name"}},
	{Type: "augment"},
	{Type: "encoder"},
	{Type: "loss", LabelNames: []string{"plugin"}},
	{Type: "optimizer"},
	{Type: "schedule"},
	{Type: "analyzer", LabelNames: []string{"plugin"}},
	{Type: "evaluate", LabelNames: []string{"kind"}},
	{Type: "checkpoint"},
}}

// runArgNames are the `run {}` arguments a study variant may set directly.
var runArgNames = []string{"seed", "epochs", "batch_size", "database", "threads", "tags"}

// variantSchema is what a study's `run "name" {}` may contain: run
// arguments and blocks overriding the top-level ones.
var variantSchema = func() *hcl.BodySchema {
	s := &hcl.BodySchema{}
	for _, n := range runArgNames {
		s.Attributes = append(s.Attributes, hcl.AttributeSchema{Name: n})
	}
	for _, b := range topSchema.Blocks {
		switch b.Type {
		case "variable", "locals", "study", "run":
		default:
			s.Blocks = append(s.Blocks, b)
		}
	}
	return s
}()

type variable struct {
	name string
	ty   cty.Type
	def  cty.Value
	blk  *hcl.Block
}

type variant struct {
	name   string         // derived run name
	matrix map[string]any // axis values for Run.Matrix
	vars   map[string]cty.Value
	runArg map[string]cty.Value // matrix axes that set run arguments
	blk    *hcl.Block           // the named run block, nil for the base
}

func (p *Parser) resolve(paths []string, files []*hcl.File) (*Pipeline, hcl.Diagnostics) {
	bodies := make([]hcl.Body, len(files))
	for i, f := range files {
		bodies[i] = f.Body
	}
	// Each file reports its own unknown blocks (with "Did you mean"
	// suggestions, which a merged body's Content does not give); the merged
	// body supplies the blocks of all files.
	var diags hcl.Diagnostics
	for _, b := range bodies {
		_, d := b.Content(topSchema)
		diags = append(diags, d...)
	}
	content, _, _ := hcl.MergeBodies(bodies).PartialContent(topSchema)

	vars, vd := p.variables(content.Blocks)
	diags = append(diags, vd...)
	localBlocks := blocksOf(content.Blocks, "locals")

	base, bd := collectTop(content.Blocks)
	studyBlocks := blocksOf(content.Blocks, "study")
	for _, b := range studyBlocks[min(1, len(studyBlocks)):] {
		bd = append(bd, dupDiag(b, studyBlocks[0]))
	}
	diags = append(diags, bd...)
	// Variable errors do not stop the pass (the variable is unknown and
	// what depends on it is skipped); a broken file structure does.
	if bd.HasErrors() {
		return nil, p.polish(diags)
	}

	pl := &Pipeline{Files: paths}
	variants := []variant{{vars: vars}}
	defaultName := strings.TrimSuffix(strings.TrimSuffix(filepath.Base(paths[0]), ".json"), ".hcl")
	if len(studyBlocks) == 1 {
		st, vs, sd := p.study(studyBlocks[0], vars)
		diags = append(diags, sd...)
		if sd.HasErrors() {
			return nil, p.polish(diags)
		}
		pl.Study, variants = st, vs
	}

	seen := map[string]*hcl.Block{}
	for _, v := range variants {
		ctx, cd := evalContext(v.vars, localBlocks, datasetLabels(base, v.blk))
		diags = append(diags, cd...)
		p.ctx = ctx
		tb, od := overrideTop(base, v)
		diags = append(diags, od...)
		if tb == nil || cd.HasErrors() {
			continue
		}
		d := &decoder{ctx: ctx, schemas: p.opts.Schemas}
		cfg, name := d.decodeConfig(tb, defaultName)
		diags = append(diags, d.diags...)
		if d.diags.HasErrors() {
			continue
		}
		r := &Run{Name: name, Config: cfg, Matrix: v.matrix}
		if pl.Study != nil {
			r.Study, r.Name = pl.Study.Name, v.name
			if prev, dup := seen[r.Name]; dup {
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Duplicate run name",
					Detail: fmt.Sprintf("Two variants of the study are both named %q (first at %s).", r.Name, prev.DefRange), Subject: pl.Study.Range.Ptr()})
			}
			seen[r.Name] = studyBlocks[0]
		}
		if err := r.finish(); err != nil {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Cannot encode the resolved configuration", Detail: err.Error()})
			continue
		}
		pl.Runs = append(pl.Runs, r)
	}
	diags = p.polish(diags)
	if diags.HasErrors() {
		return nil, diags
	}
	return pl, diags
}

func blocksOf(blocks hcl.Blocks, typ string) []*hcl.Block {
	var out []*hcl.Block
	for _, b := range blocks {
		if b.Type == typ {
			out = append(out, b)
		}
	}
	return out
}

func dupDiag(b, first *hcl.Block) *hcl.Diagnostic {
	what := b.Type
	if len(b.Labels) > 0 {
		what = fmt.Sprintf("%s %q", b.Type, b.Labels[0])
	}
	return &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Duplicate " + b.Type + " block",
		Detail:  fmt.Sprintf("A %s block was already defined at %s.", what, first.DefRange),
		Subject: b.DefRange.Ptr()}
}

// collectTop sorts the top-level blocks, reporting duplicates and missing
// required blocks.
func collectTop(blocks hcl.Blocks) (*topBlocks, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	tb := &topBlocks{}
	single := map[string]**hcl.Block{"run": &tb.run, "augment": &tb.augment, "encoder": &tb.encoder, "loss": &tb.loss,
		"optimizer": &tb.optimizer, "schedule": &tb.schedule, "checkpoint": &tb.checkpoint}
	multi := map[string]*[]*hcl.Block{"dataset": &tb.datasets, "analyzer": &tb.analyzers, "evaluate": &tb.evaluations}
	for _, b := range blocks {
		if dst, ok := single[b.Type]; ok {
			if *dst != nil {
				diags = append(diags, dupDiag(b, *dst))
				continue
			}
			*dst = b
		}
		if dst, ok := multi[b.Type]; ok {
			for _, prev := range *dst {
				if prev.Labels[0] == b.Labels[0] {
					diags = append(diags, dupDiag(b, prev))
				}
			}
			*dst = append(*dst, b)
		}
	}
	var missing []string
	for _, n := range []string{"run", "augment", "encoder", "loss", "optimizer"} {
		if *single[n] == nil {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		var r hcl.Range
		if len(blocks) > 0 {
			r = blocks[0].DefRange
		}
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Missing required blocks",
			Detail:  fmt.Sprintf("A pipeline needs %s blocks; missing: %s.", quoteList([]string{"run", "augment", "encoder", "loss", "optimizer"}), strings.Join(missing, ", ")),
			Subject: r.Ptr()})
	}
	return tb, diags
}

// datasetLabels lists the dataset labels of the base and of a variant.
func datasetLabels(base *topBlocks, vb *hcl.Block) []string {
	names := datasetNames(base)
	if vb != nil {
		c, _, _ := vb.Body.PartialContent(variantSchema)
		for _, b := range blocksOf(c.Blocks, "dataset") {
			if !slices.Contains(names, b.Labels[0]) {
				names = append(names, b.Labels[0])
			}
		}
	}
	return names
}

// overrideTop applies a study variant to the base blocks: its arguments
// override the run block's, a block with the same type and labels as a
// base block overrides that block argument by argument (nested blocks are
// replaced whole), a loss block with another plugin replaces the loss, and
// other blocks are added.
func overrideTop(base *topBlocks, v variant) (*topBlocks, hcl.Diagnostics) {
	if v.blk == nil && len(v.runArg) == 0 {
		return base, nil
	}
	tb := *base
	tb.datasets = slices.Clone(base.datasets)
	tb.analyzers = slices.Clone(base.analyzers)
	tb.evaluations = slices.Clone(base.evaluations)
	var diags hcl.Diagnostics
	runOver := hcl.Attributes{}
	for n, val := range v.runArg {
		runOver[n] = &hcl.Attribute{Name: n, Expr: hcl.StaticExpr(val, base.run.DefRange), Range: base.run.DefRange, NameRange: base.run.DefRange}
	}
	if v.blk != nil {
		c, d := v.blk.Body.Content(variantSchema)
		diags = append(diags, d...)
		for n, a := range c.Attributes {
			runOver[n] = a
		}
		single := map[string]**hcl.Block{"augment": &tb.augment, "encoder": &tb.encoder, "loss": &tb.loss,
			"optimizer": &tb.optimizer, "schedule": &tb.schedule, "checkpoint": &tb.checkpoint}
		multi := map[string]*[]*hcl.Block{"dataset": &tb.datasets, "analyzer": &tb.analyzers, "evaluate": &tb.evaluations}
		for _, ob := range c.Blocks {
			if dst, ok := single[ob.Type]; ok {
				*dst = mergeBlock(*dst, ob)
				continue
			}
			list := multi[ob.Type]
			i := slices.IndexFunc(*list, func(b *hcl.Block) bool { return b.Labels[0] == ob.Labels[0] })
			if i < 0 {
				*list = append(*list, ob)
			} else {
				(*list)[i] = mergeBlock((*list)[i], ob)
			}
		}
	}
	if len(runOver) > 0 {
		rb := *base.run
		rb.Body = override(base.run.Body, attrsBody{attrs: runOver, rng: base.run.Body.MissingItemRange()})
		tb.run = &rb
	}
	return &tb, diags
}

// mergeBlock overrides base by over when both have the same labels, and
// replaces it otherwise (or when base is nil).
func mergeBlock(base, over *hcl.Block) *hcl.Block {
	if base == nil || !slices.Equal(base.Labels, over.Labels) {
		return over
	}
	b := *base
	b.Body = override(base.Body, over.Body)
	return &b
}

// attrsBody is a body made of given attributes only.
type attrsBody struct {
	attrs hcl.Attributes
	rng   hcl.Range
}

func (b attrsBody) Content(s *hcl.BodySchema) (*hcl.BodyContent, hcl.Diagnostics) {
	c, _, d := b.PartialContent(s)
	return c, d
}

func (b attrsBody) PartialContent(s *hcl.BodySchema) (*hcl.BodyContent, hcl.Body, hcl.Diagnostics) {
	c := &hcl.BodyContent{Attributes: hcl.Attributes{}, MissingItemRange: b.rng}
	rest := hcl.Attributes{}
	for n, a := range b.attrs {
		rest[n] = a
	}
	for _, as := range s.Attributes {
		if a, ok := b.attrs[as.Name]; ok {
			c.Attributes[as.Name] = a
			delete(rest, as.Name)
		}
	}
	return c, attrsBody{attrs: rest, rng: b.rng}, nil
}

func (b attrsBody) JustAttributes() (hcl.Attributes, hcl.Diagnostics) { return b.attrs, nil }
func (b attrsBody) MissingItemRange() hcl.Range                       { return b.rng }

// variables decodes the variable blocks and applies var files and -var
// inputs.
func (p *Parser) variables(blocks hcl.Blocks) (map[string]cty.Value, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	decl := map[string]*variable{}
	var order []string
	for _, b := range blocksOf(blocks, "variable") {
		name := b.Labels[0]
		if prev, ok := decl[name]; ok {
			diags = append(diags, dupDiag(b, prev.blk))
			continue
		}
		if !hclsyntax.ValidIdentifier(name) {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid variable name",
				Detail: "A variable name must be a valid identifier.", Subject: b.LabelRanges[0].Ptr()})
			continue
		}
		c, d := b.Body.Content(&hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "type"}, {Name: "default"}, {Name: "description"}}})
		diags = append(diags, d...)
		v := &variable{name: name, ty: cty.DynamicPseudoType, def: cty.NilVal, blk: b}
		if a := c.Attributes["type"]; a != nil {
			ty, d := typeexpr.TypeConstraint(a.Expr)
			diags = append(diags, d...)
			if !d.HasErrors() {
				v.ty = ty
			}
		}
		if a := c.Attributes["default"]; a != nil {
			val, d := a.Expr.Value(nil)
			diags = append(diags, d...)
			if !d.HasErrors() {
				cv, err := convert.Convert(val, v.ty)
				if err != nil {
					diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid default value",
						Detail: fmt.Sprintf("The default of variable %q does not match its type: %s.", name, err), Subject: a.Expr.Range().Ptr()})
				} else {
					v.def = cv
				}
			}
		}
		decl[name] = v
		order = append(order, name)
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range decl {
			if !yield(n) {
				return
			}
		}
	})
	vals := map[string]cty.Value{}
	for n, v := range decl {
		if v.def != cty.NilVal {
			vals[n] = v.def
		}
	}
	set := func(name string, val cty.Value, rng *hcl.Range, src string) {
		v, ok := decl[name]
		if !ok {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Value for undeclared variable",
				Detail: fmt.Sprintf("%s sets variable %q, which the pipeline does not declare.%s", src, name, didYouMean(name, names)), Subject: rng})
			return
		}
		cv, err := convert.Convert(val, v.ty)
		if err != nil {
			vals[name] = cty.UnknownVal(v.ty)
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid value for variable",
				Detail: fmt.Sprintf("%s: variable %q: %s.", src, name, err), Subject: rng})
			return
		}
		vals[name] = cv
	}
	for _, path := range p.opts.VarFiles {
		var f *hcl.File
		var d hcl.Diagnostics
		if strings.HasSuffix(path, ".json") {
			f, d = p.p.ParseJSONFile(path)
		} else {
			f, d = p.p.ParseHCLFile(path)
		}
		diags = append(diags, d...)
		if f == nil {
			continue
		}
		attrs, d := f.Body.JustAttributes()
		diags = append(diags, d...)
		for _, a := range sortedAttrs(attrs) {
			val, d := a.Expr.Value(nil)
			diags = append(diags, d...)
			if !d.HasErrors() {
				set(a.Name, val, a.NameRange.Ptr(), "The variable file")
			}
		}
	}
	for _, name := range slices.Sorted(mapKeys(p.opts.Vars)) {
		raw := p.opts.Vars[name]
		v, ok := decl[name]
		if ok && v.ty == cty.String {
			set(name, cty.StringVal(raw), nil, "-var")
			continue
		}
		expr, d := hclsyntax.ParseExpression([]byte(raw), fmt.Sprintf("<value for var.%s>", name), hcl.InitialPos)
		if d.HasErrors() {
			// An unquoted word is a string, as in Terraform.
			set(name, cty.StringVal(raw), nil, "-var")
			continue
		}
		val, d := expr.Value(nil)
		if d.HasErrors() {
			val = cty.StringVal(raw)
		}
		set(name, val, nil, "-var")
	}
	for _, n := range order {
		if _, ok := vals[n]; !ok {
			vals[n] = cty.UnknownVal(decl[n].ty)
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "No value for required variable",
				Detail:  fmt.Sprintf("Variable %q has no default; set it with -var %s=... or a -var-file.", n, n),
				Subject: decl[n].blk.DefRange.Ptr()})
		}
	}
	return vals, diags
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// sortedAttrs returns attributes in source order.
func sortedAttrs(attrs hcl.Attributes) []*hcl.Attribute {
	out := make([]*hcl.Attribute, 0, len(attrs))
	for _, a := range attrs {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool {
		ri, rj := out[i].Range, out[j].Range
		if ri.Filename != rj.Filename {
			return ri.Filename < rj.Filename
		}
		return ri.Start.Byte < rj.Start.Byte
	})
	return out
}

// Functions are the functions a pipeline may call: go-cty's stdlib under
// Terraform's names.
func Functions() map[string]function.Function {
	return map[string]function.Function{
		"abs": stdlib.AbsoluteFunc, "ceil": stdlib.CeilFunc, "floor": stdlib.FloorFunc,
		"max": stdlib.MaxFunc, "min": stdlib.MinFunc, "pow": stdlib.PowFunc, "log": stdlib.LogFunc,
		"signum": stdlib.SignumFunc, "parseint": stdlib.ParseIntFunc,
		"format": stdlib.FormatFunc, "formatlist": stdlib.FormatListFunc, "join": stdlib.JoinFunc,
		"split": stdlib.SplitFunc, "lower": stdlib.LowerFunc, "upper": stdlib.UpperFunc,
		"replace": stdlib.ReplaceFunc, "substr": stdlib.SubstrFunc, "trimspace": stdlib.TrimSpaceFunc,
		"strlen": stdlib.StrlenFunc, "concat": stdlib.ConcatFunc, "length": stdlib.LengthFunc,
		"element": stdlib.ElementFunc, "contains": stdlib.ContainsFunc, "range": stdlib.RangeFunc,
		"merge": stdlib.MergeFunc, "lookup": stdlib.LookupFunc, "keys": stdlib.KeysFunc,
		"values": stdlib.ValuesFunc, "coalesce": stdlib.CoalesceFunc, "flatten": stdlib.FlattenFunc,
		"distinct": stdlib.DistinctFunc, "reverse": stdlib.ReverseListFunc, "sort": stdlib.SortFunc,
		"slice": stdlib.SliceFunc, "zipmap": stdlib.ZipmapFunc, "jsonencode": stdlib.JSONEncodeFunc,
		"tostring": stdlib.MakeToFunc(cty.String), "tonumber": stdlib.MakeToFunc(cty.Number),
		"tobool": stdlib.MakeToFunc(cty.Bool),
	}
}

// evalContext builds the context expressions see: var.*, local.*,
// dataset.* (each dataset's label, so `train = dataset.test` is checked)
// and the functions. Locals may refer to each other in any order.
func evalContext(vars map[string]cty.Value, localBlocks []*hcl.Block, datasets []string) (*hcl.EvalContext, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	ds := map[string]cty.Value{}
	for _, n := range datasets {
		ds[n] = cty.StringVal(n)
	}
	ctx := &hcl.EvalContext{Functions: Functions(), Variables: map[string]cty.Value{
		"var": cty.ObjectVal(vars), "dataset": cty.ObjectVal(ds), "local": cty.EmptyObjectVal,
	}}
	pending := map[string]*hcl.Attribute{}
	for _, b := range localBlocks {
		attrs, d := b.Body.JustAttributes()
		diags = append(diags, d...)
		for n, a := range attrs {
			if prev, ok := pending[n]; ok {
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Duplicate local value",
					Detail: fmt.Sprintf("local.%s was already defined at %s.", n, prev.NameRange), Subject: a.NameRange.Ptr()})
				continue
			}
			pending[n] = a
		}
	}
	locals := map[string]cty.Value{}
	for len(pending) > 0 {
		progress := false
		for _, a := range sortedAttrs(attrMap(pending)) {
			ready := true
			for _, t := range a.Expr.Variables() {
				if t.RootName() != "local" || len(t) < 2 {
					continue
				}
				if ta, ok := t[1].(hcl.TraverseAttr); ok {
					if _, waiting := pending[ta.Name]; waiting && ta.Name != a.Name {
						ready = false
					}
				}
			}
			if !ready {
				continue
			}
			ctx.Variables["local"] = cty.ObjectVal(locals)
			val, d := a.Expr.Value(ctx)
			diags = append(diags, d...)
			if d.HasErrors() {
				val = cty.DynamicVal
			}
			locals[a.Name] = val
			delete(pending, a.Name)
			progress = true
		}
		if !progress {
			for _, a := range sortedAttrs(attrMap(pending)) {
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Cyclic local value",
					Detail: fmt.Sprintf("local.%s depends on itself through other locals.", a.Name), Subject: a.Expr.Range().Ptr()})
			}
			break
		}
	}
	ctx.Variables["local"] = cty.ObjectVal(locals)
	return ctx, diags
}

func attrMap(m map[string]*hcl.Attribute) hcl.Attributes { return hcl.Attributes(m) }

type studyMatrix struct {
	axis string
	vals []cty.Value
	attr *hcl.Attribute
}

// study decodes the study block into its variants: the named runs (or the
// base alone) crossed with the matrix, in file order.
func (p *Parser) study(b *hcl.Block, vars map[string]cty.Value) (*Study, []variant, hcl.Diagnostics) {
	st := &Study{Name: b.Labels[0], Range: b.DefRange}
	c, diags := b.Body.Content(&hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{{Name: "description"}},
		Blocks:     []hcl.BlockHeaderSchema{{Type: "matrix"}, {Type: "run", LabelNames: []string{"name"}}},
	})
	ctx := &hcl.EvalContext{Functions: Functions(), Variables: map[string]cty.Value{"var": cty.ObjectVal(vars)}}
	if a := c.Attributes["description"]; a != nil {
		var s cty.Value
		s, d := a.Expr.Value(ctx)
		diags = append(diags, d...)
		if !d.HasErrors() {
			if err := gocty.FromCtyValue(s, &st.Description); err != nil {
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid description", Detail: err.Error(), Subject: a.Expr.Range().Ptr()})
			}
		}
	}
	var axes []studyMatrix
	matrices := blocksOf(c.Blocks, "matrix")
	for _, m := range matrices[min(1, len(matrices)):] {
		diags = append(diags, dupDiag(m, matrices[0]))
	}
	if len(matrices) > 0 {
		attrs, d := matrices[0].Body.JustAttributes()
		diags = append(diags, d...)
		declared := slices.Sorted(mapKeys(vars))
		for _, a := range sortedAttrs(attrs) {
			if _, isVar := vars[a.Name]; !isVar && !slices.Contains(runArgNames, a.Name) {
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Unknown matrix axis",
					Detail:  fmt.Sprintf("A matrix axis must name a declared variable or a run argument (%s); %q is neither.%s", strings.Join(runArgNames, ", "), a.Name, didYouMean(a.Name, append(declared, runArgNames...))),
					Subject: a.NameRange.Ptr()})
				continue
			}
			val, d := a.Expr.Value(ctx)
			diags = append(diags, d...)
			if d.HasErrors() {
				continue
			}
			if !(val.Type().IsListType() || val.Type().IsTupleType()) || val.LengthInt() == 0 {
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid matrix axis",
					Detail: fmt.Sprintf("Axis %q must be a non-empty list of values.", a.Name), Subject: a.Expr.Range().Ptr()})
				continue
			}
			ax := studyMatrix{axis: a.Name, attr: a}
			for it := val.ElementIterator(); it.Next(); {
				_, ev := it.Element()
				if !ev.Type().IsPrimitiveType() || ev.IsNull() {
					diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid matrix axis",
						Detail: fmt.Sprintf("Axis %q must hold strings, numbers or bools.", a.Name), Subject: a.Expr.Range().Ptr()})
					break
				}
				ax.vals = append(ax.vals, ev)
			}
			axes = append(axes, ax)
			st.Axes = append(st.Axes, a.Name)
		}
	}
	runs := blocksOf(c.Blocks, "run")
	for i, r := range runs {
		st.Variants = append(st.Variants, r.Labels[0])
		for _, prev := range runs[:i] {
			if prev.Labels[0] == r.Labels[0] {
				diags = append(diags, dupDiag(r, prev))
			}
		}
	}
	if len(runs) == 0 && len(axes) == 0 {
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Empty study",
			Detail: "A study needs a matrix { ... } block, run \"name\" { ... } blocks, or both.", Subject: b.DefRange.Ptr()})
	}
	if diags.HasErrors() {
		return nil, nil, diags
	}
	bases := []*hcl.Block{nil}
	if len(runs) > 0 {
		bases = runs
	}
	if d := checkVariantCount(b, matrices, len(bases), axes); d != nil {
		return nil, nil, append(diags, d)
	}
	var out []variant
	for _, rb := range bases {
		combos := [][]cty.Value{{}}
		for _, ax := range axes {
			var next [][]cty.Value
			for _, cmb := range combos {
				for _, v := range ax.vals {
					next = append(next, append(slices.Clone(cmb), v))
				}
			}
			combos = next
		}
		for _, cmb := range combos {
			v := variant{blk: rb, vars: map[string]cty.Value{}, runArg: map[string]cty.Value{}, matrix: map[string]any{}}
			for k, val := range vars {
				v.vars[k] = val
			}
			var parts []string
			if rb != nil {
				parts = append(parts, rb.Labels[0])
			}
			for i, ax := range axes {
				val := cmb[i]
				if _, isVar := vars[ax.axis]; isVar {
					v.vars[ax.axis] = val
				} else {
					v.runArg[ax.axis] = val
				}
				v.matrix[ax.axis] = ctyScalar(val)
				parts = append(parts, axisPart(ax.axis, val))
			}
			v.name = strings.Join(parts, "-")
			out = append(out, v)
		}
	}
	return st, out, nil
}

// checkVariantCount reports a study that expands to more than maxVariants
// runs, before the expansion allocates them: range() axes make a product
// of billions easy to write. It points at the matrix block, or the study
// when there is none.
func checkVariantCount(study *hcl.Block, matrices []*hcl.Block, bases int, axes []studyMatrix) *hcl.Diagnostic {
	// A big.Int, because the product of a few range() axes overflows int.
	n := big.NewInt(int64(bases))
	parts := []string{fmt.Sprintf("%d run", bases)}
	if bases != 1 {
		parts[0] += "s"
	}
	for _, ax := range axes {
		n.Mul(n, big.NewInt(int64(len(ax.vals))))
		parts = append(parts, fmt.Sprintf("%d %s", len(ax.vals), ax.axis))
	}
	if n.Cmp(big.NewInt(maxVariants)) <= 0 {
		return nil
	}
	subject := study.DefRange
	if len(matrices) > 0 {
		subject = matrices[0].DefRange
	}
	return &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Too many study variants",
		Detail:  fmt.Sprintf("The study expands to %s variants (%s); at most %d are allowed. Split it into several studies.", n, strings.Join(parts, " x "), maxVariants),
		Subject: subject.Ptr()}
}

// ctyScalar converts a primitive cty value to int64, float64, bool or string.
func ctyScalar(v cty.Value) any {
	switch v.Type() {
	case cty.Bool:
		return v.True()
	case cty.Number:
		bf := v.AsBigFloat()
		if i, acc := bf.Int64(); acc == 0 && bf.IsInt() {
			return i
		}
		f, _ := bf.Float64()
		return f
	}
	return v.AsString()
}

// axisPart names one matrix value in a run name: strings as themselves,
// other values prefixed by the axis ("seed1", "quicktrue").
func axisPart(axis string, v cty.Value) string {
	s := fmt.Sprint(ctyScalar(v))
	if v.Type() == cty.String {
		return s
	}
	return axis + s
}

var unsupportedAttr = regexp.MustCompile(`^This object does not have an attribute named "([^"]+)"\.$`)

// polish removes the duplicates that decoding every study variant produces
// and adds "Did you mean" to bad var./local./dataset. references, which
// HCL reports without a suggestion.
func (p *Parser) polish(diags hcl.Diagnostics) hcl.Diagnostics {
	seen := map[string]bool{}
	var out hcl.Diagnostics
	for _, d := range diags {
		key := d.Summary + "\x00" + d.Detail
		if d.Subject != nil {
			key += "\x00" + d.Subject.String()
		}
		if seen[key] || p.followOn(d, diags) {
			continue
		}
		seen[key] = true
		ctx := d.EvalContext
		if ctx == nil {
			ctx = p.ctx
		}
		if m := unsupportedAttr.FindStringSubmatch(d.Detail); m != nil && d.Subject != nil && ctx != nil {
			if root := p.rootBefore(*d.Subject); root != "" {
				if obj, ok := ctx.Variables[root]; ok && obj.Type().IsObjectType() {
					var names []string
					for n := range obj.Type().AttributeTypes() {
						names = append(names, n)
					}
					sort.Strings(names)
					dd := *d
					dd.Detail = fmt.Sprintf("There is no %s.%s.%s", root, m[1], didYouMean(m[1], names))
					if len(names) > 0 && didYouMean(m[1], names) == "" {
						dd.Detail += fmt.Sprintf(" Defined: %s.", strings.Join(names, ", "))
					}
					d = &dd
				}
			}
		}
		out = append(out, d)
	}
	return out
}

// rootBefore returns the traversal root ("var", "local", "dataset") just
// before a ".name" attribute step at r, read from the source.
func (p *Parser) rootBefore(r hcl.Range) string {
	f := p.Files()[r.Filename]
	if f == nil || r.Start.Byte > len(f.Bytes) {
		return ""
	}
	before := string(f.Bytes[:r.Start.Byte])
	for _, root := range []string{"var", "local", "dataset"} {
		if strings.HasSuffix(before, root) {
			i := len(before) - len(root)
			if i == 0 || !isIdentByte(before[i-1]) {
				return root
			}
		}
	}
	return ""
}

func isIdentByte(c byte) bool {
	return c == '_' || c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// followOn reports a diagnostic that only repeats an earlier error: a
// value is unknown only because a reference or a variable input was
// already reported as wrong (gohcl then says "value must be known").
func (p *Parser) followOn(d *hcl.Diagnostic, all hcl.Diagnostics) bool {
	if !strings.Contains(d.Detail, "value must be known") {
		return false
	}
	for _, o := range all {
		if o != d && o.Severity == hcl.DiagError && !strings.Contains(o.Detail, "value must be known") {
			return true
		}
	}
	return false
}
