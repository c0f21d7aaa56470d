package pipeline

import (
	"errors"
	"fmt"
	"slices"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"

	"github.com/sslrun/sslrun/core/nn"
	"github.com/sslrun/sslrun/core/optim"
)

// Size limits checked at parse time, so that a typo or a hostile file is a
// diagnostic at the value instead of an allocation that exhausts memory.
const (
	maxViews    = 64      // augmented views per sample
	maxDim      = 1 << 16 // a width, stride, block count, channel count or head dim
	maxInDim    = 1 << 24 // an mlp backbone's flattened input (3x224x224 is 150528)
	maxEntries  = 64      // entries of widths, strides, blocks and head dims
	maxVariants = 10000   // runs a study expands to
)

// decoder accumulates diagnostics while decoding one run's blocks, so a
// single pass reports every error.
type decoder struct {
	ctx     *hcl.EvalContext
	schemas SchemaProvider
	diags   hcl.Diagnostics
}

func (d *decoder) add(diags hcl.Diagnostics) { d.diags = append(d.diags, diags...) }

func (d *decoder) errAt(r hcl.Range, summary, detail string) {
	d.diags = append(d.diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: detail, Subject: r.Ptr()})
}

// decodeBody decodes body into the gohcl-tagged struct dst and reports
// whether that worked without errors.
func (d *decoder) decodeBody(body hcl.Body, dst any) bool {
	diags := gohcl.DecodeBody(body, d.ctx, dst)
	d.add(diags)
	return !diags.HasErrors()
}

func (d *decoder) decodeExpr(expr hcl.Expression, dst any) bool {
	diags := gohcl.DecodeExpression(expr, d.ctx, dst)
	d.add(diags)
	return !diags.HasErrors()
}

// attrRange returns the range of argument name's value in body, or the
// body's missing-item range when the argument is absent (a default).
func attrRange(body hcl.Body, name string) hcl.Range {
	c, _, _ := body.PartialContent(&hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: name}}})
	if a := c.Attributes[name]; a != nil {
		return a.Expr.Range()
	}
	return body.MissingItemRange()
}

// elemRange returns the range of element i of argument name's list value in
// body, or the whole value's range when it is not a list literal (e.g. a
// function call), or the body's missing-item range when it is absent.
func elemRange(body hcl.Body, name string, i int) hcl.Range {
	c, _, _ := body.PartialContent(&hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: name}}})
	a := c.Attributes[name]
	if a == nil {
		return body.MissingItemRange()
	}
	if exprs, diags := hcl.ExprList(a.Expr); !diags.HasErrors() && i < len(exprs) {
		return exprs[i].Range()
	}
	return a.Expr.Range()
}

// hasAttr reports whether body sets argument name.
func hasAttr(body hcl.Body, name string) bool {
	return attrRange(body, name) != body.MissingItemRange()
}

// checkSizes reports an explicitly empty list (rather than silently using
// the default, as for an absent one), too many entries, or an entry outside
// [1, maxDim], at argument name of body. summary names the diagnostic.
func (d *decoder) checkSizes(body hcl.Body, summary, name string, v []int) bool {
	switch {
	case len(v) == 0:
		if hasAttr(body, name) {
			d.errAt(attrRange(body, name), summary, fmt.Sprintf("%s must not be empty; leave it out for the default.", name))
			return false
		}
		return true
	case len(v) > maxEntries:
		d.errAt(attrRange(body, name), summary, fmt.Sprintf("%s must have at most %d entries, got %d.", name, maxEntries, len(v)))
		return false
	}
	for i, x := range v {
		if x < 1 || x > maxDim {
			d.errAt(elemRange(body, name, i), summary, fmt.Sprintf("%s must be between 1 and %d, got %d.", name, maxDim, x))
			return false
		}
	}
	return true
}

// checkOneOf reports v not being one of allowed, at argument name of body.
func (d *decoder) checkOneOf(body hcl.Body, name, v string, allowed ...string) bool {
	if slices.Contains(allowed, v) {
		return true
	}
	d.errAt(attrRange(body, name), "Invalid value", fmt.Sprintf("%s = %q is not one of %s.%s", name, v, quoteList(allowed), didYouMean(v, allowed)))
	return false
}

// topBlocks is the decoded structure of one run: the top-level blocks
// after a study variant's overrides.
type topBlocks struct {
	run, augment, encoder, loss, optimizer, schedule, checkpoint *hcl.Block
	datasets, analyzers, evaluations                             []*hcl.Block
}

type runArgs struct {
	Name      *string           `hcl:"name,optional"`
	Seed      int64             `hcl:"seed,optional"`
	Epochs    int               `hcl:"epochs"`
	BatchSize int               `hcl:"batch_size"`
	Database  *string           `hcl:"database,optional"`
	Threads   int               `hcl:"threads,optional"`
	Tags      map[string]string `hcl:"tags,optional"`
}

type datasetArgs struct {
	Source   string  `hcl:"source"`
	Split    *string `hcl:"split,optional"`
	Dir      string  `hcl:"dir,optional"`
	Coarse   bool    `hcl:"coarse,optional"`
	Channels int     `hcl:"channels,optional"`
	Height   int     `hcl:"height,optional"`
	Width    int     `hcl:"width,optional"`
	Limit    int     `hcl:"limit,optional"`
}

type headArgs struct {
	Kind     *string  `hcl:"kind,optional"`
	Dims     []int    `hcl:"dims,optional"`
	LastBN   *string  `hcl:"last_bn,optional"`
	LastBias *bool    `hcl:"last_bias,optional"`
	Body     hcl.Body `hcl:",body"`
}

type encoderArgs struct {
	Backbone   string    `hcl:"backbone"`
	InDim      int       `hcl:"in_dim,optional"`
	InChannels int       `hcl:"in_channels,optional"`
	Widths     []int     `hcl:"widths,optional"`
	Strides    []int     `hcl:"strides,optional"`
	Blocks     []int     `hcl:"blocks,optional"`
	StemWidth  int       `hcl:"stem_width,optional"`
	Projector  *headArgs `hcl:"projector,block"`
	Predictor  *headArgs `hcl:"predictor,block"`
}

type optimizerArgs struct {
	Name             string   `hcl:"name"`
	LR               float64  `hcl:"lr"`
	LRScaling        string   `hcl:"lr_scaling"`
	ReferenceBatch   *int     `hcl:"reference_batch,optional"`
	Momentum         *float64 `hcl:"momentum,optional"`
	Nesterov         bool     `hcl:"nesterov,optional"`
	WeightDecay      *float64 `hcl:"weight_decay,optional"`
	NoDecayBiasNorm  bool     `hcl:"no_decay_bias_norm,optional"`
	PredictorFixedLR bool     `hcl:"predictor_fixed_lr,optional"`
	Eta              *float64 `hcl:"eta,optional"`
	ClipLR           *bool    `hcl:"clip_lr,optional"`
	ExcludeBiasNorm  *bool    `hcl:"exclude_bias_norm,optional"`
	Beta1            *float64 `hcl:"beta1,optional"`
	Beta2            *float64 `hcl:"beta2,optional"`
	Eps              *float64 `hcl:"eps,optional"`
}

type scheduleArgs struct {
	Name          *string `hcl:"name,optional"`
	WarmupEpochs  float64 `hcl:"warmup_epochs,optional"`
	WarmupStartLR float64 `hcl:"warmup_start_lr,optional"`
	MinLR         float64 `hcl:"min_lr,optional"`
	PerStep       *bool   `hcl:"per_step,optional"`
}

type evalArgs struct {
	Train       *string  `hcl:"train,optional"`
	Test        *string  `hcl:"test,optional"`
	Feature     *string  `hcl:"feature,optional"`
	EveryEpochs *int     `hcl:"every_epochs,optional"`
	AtStart     *bool    `hcl:"at_start,optional"`
	AtEnd       *bool    `hcl:"at_end,optional"`
	K           *int     `hcl:"k,optional"`
	Temperature *float64 `hcl:"temperature,optional"`
	Epochs      *int     `hcl:"epochs,optional"`
	BatchSize   *int     `hcl:"batch_size,optional"`
	LR          *float64 `hcl:"lr,optional"`
	Momentum    *float64 `hcl:"momentum,optional"`
	WeightDecay *float64 `hcl:"weight_decay,optional"`
}

type checkpointArgs struct {
	EveryEpochs int     `hcl:"every_epochs,optional"`
	Keep        *int    `hcl:"keep,optional"`
	Dir         *string `hcl:"dir,optional"`
}

func orDefault[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

// datasetShape is the (c, h, w) a source delivers; ok is false when it is
// unknown (a folder with no shape given).
func datasetShape(ds Dataset) (c, h, w int, ok bool) {
	switch ds.Source {
	case SourceMNIST, SourceFashionMNIST:
		return 1, 28, 28, true
	case SourceCIFAR10, SourceCIFAR100:
		return 3, 32, 32, true
	case SourceFolder:
		return ds.Channels, ds.Height, ds.Width, ds.Channels > 0 && ds.Height > 0 && ds.Width > 0
	}
	return 0, 0, 0, false
}

// decodeConfig decodes one run's blocks into a Config. defaultName is the
// run name when the run block sets none.
func (d *decoder) decodeConfig(tb *topBlocks, defaultName string) (Config, string) {
	var cfg Config
	name := defaultName
	var ra runArgs
	if d.decodeBody(tb.run.Body, &ra) {
		name = orDefault(ra.Name, defaultName)
		if ra.Epochs < 1 {
			d.errAt(attrRange(tb.run.Body, "epochs"), "Invalid value", fmt.Sprintf("epochs must be at least 1, got %d.", ra.Epochs))
		}
		if ra.BatchSize < 1 {
			d.errAt(attrRange(tb.run.Body, "batch_size"), "Invalid value", fmt.Sprintf("batch_size must be at least 1, got %d.", ra.BatchSize))
		}
		if ra.Threads < 0 {
			d.errAt(attrRange(tb.run.Body, "threads"), "Invalid value", "threads must be 0 (all cores) or positive.")
		}
	}
	cfg.Seed, cfg.Epochs, cfg.BatchSize, cfg.Threads = ra.Seed, ra.Epochs, ra.BatchSize, ra.Threads
	cfg.Database = orDefault(ra.Database, "sslrun.db")
	cfg.Tags = ra.Tags
	if cfg.Tags == nil {
		cfg.Tags = map[string]string{}
	}

	cfg.Datasets = map[string]Dataset{}
	for _, b := range tb.datasets {
		if ds, ok := d.decodeDataset(b); ok {
			cfg.Datasets[ds.Name] = ds
		}
	}
	names := datasetNames(tb)
	trainOK := false
	if ds, ok := cfg.Datasets["train"]; ok {
		cfg.Train, trainOK = ds, true
	} else if !slices.Contains(names, "train") {
		d.errAt(tb.run.DefRange, "Missing training dataset", `A pipeline needs a dataset "train" { ... } block: the self-supervised training set.`)
	}

	cfg.Augment = d.decodeAugment(tb.augment)
	c, h, w := 0, 0, 0
	shapeOK := false
	if trainOK {
		if c0, h0, w0, ok := datasetShape(cfg.Train); ok && len(cfg.Augment.Views) > 0 {
			c, h, w = cfg.Augment.Views[0].Pipeline().OutShape(c0, h0, w0)
			shapeOK = true
			for i, v := range cfg.Augment.Views[1:] {
				if c1, h1, w1 := v.Pipeline().OutShape(c0, h0, w0); c1 != c || h1 != h || w1 != w {
					d.errAt(tb.augment.DefRange, "Inconsistent views", fmt.Sprintf("view %d produces %dx%dx%d images but view 0 produces %dx%dx%d.", i+1, c1, h1, w1, c, h, w))
				}
			}
		}
	}
	cfg.Encoder = d.decodeEncoder(tb.encoder, c, h, w, shapeOK)
	cfg.Loss = d.decodePlugin(KindLoss, tb.loss, nil)
	d.checkLossPredictor(tb.loss, cfg.Loss, cfg.Encoder)
	cfg.Optimizer = d.decodeOptimizer(tb.optimizer, cfg.BatchSize)
	cfg.Schedule = d.decodeSchedule(tb.schedule, cfg.Epochs)
	cfg.Analyzers = []Analyzer{}
	for _, b := range tb.analyzers {
		var a Analyzer
		every := 1
		a.Plugin = d.decodePlugin(KindAnalyzer, b, func(body hcl.Body) hcl.Body {
			content, remain, diags := body.PartialContent(&hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "every"}}})
			d.add(diags)
			if at := content.Attributes["every"]; at != nil && d.decodeExpr(at.Expr, &every) && every < 1 {
				d.errAt(at.Expr.Range(), "Invalid value", fmt.Sprintf("every must be at least 1 step, got %d.", every))
			}
			return remain
		})
		a.Every = every
		cfg.Analyzers = append(cfg.Analyzers, a)
	}
	cfg.Evaluations = []Evaluation{}
	for _, b := range tb.evaluations {
		if ev, ok := d.decodeEvaluation(b, names); ok {
			cfg.Evaluations = append(cfg.Evaluations, ev)
		}
	}
	cfg.Checkpoint = d.decodeCheckpoint(tb.checkpoint)
	return cfg, name
}

func datasetNames(tb *topBlocks) []string {
	var names []string
	for _, b := range tb.datasets {
		names = append(names, b.Labels[0])
	}
	return names
}

var sources = []string{SourceMNIST, SourceFashionMNIST, SourceCIFAR10, SourceCIFAR100, SourceFolder}

func (d *decoder) decodeDataset(b *hcl.Block) (Dataset, bool) {
	var a datasetArgs
	ds := Dataset{Name: b.Labels[0], Range: b.DefRange}
	if !d.decodeBody(b.Body, &a) {
		return ds, false
	}
	n := len(d.diags.Errs())
	ds.Source, ds.Split, ds.Dir, ds.Coarse, ds.Limit = a.Source, orDefault(a.Split, "train"), a.Dir, a.Coarse, a.Limit
	ds.Channels, ds.Height, ds.Width = a.Channels, a.Height, a.Width
	d.checkOneOf(b.Body, "source", ds.Source, sources...)
	d.checkOneOf(b.Body, "split", ds.Split, "train", "test")
	if ds.Source == SourceFolder {
		if a.Channels != 1 && a.Channels != 3 || a.Height < 1 || a.Width < 1 {
			d.errAt(b.DefRange, "Missing image shape", "A folder dataset needs channels (1 or 3), height and width (images are resized to them).")
		}
		if a.Dir == "" {
			d.errAt(b.DefRange, "Missing directory", "A folder dataset needs dir: the image folder (one subfolder per class, or images directly for unlabelled data).")
		}
	} else {
		for _, n := range []string{"channels", "height", "width"} {
			if r := attrRange(b.Body, n); r != b.Body.MissingItemRange() {
				d.errAt(r, "Unexpected argument", fmt.Sprintf("%s applies to folder datasets only; %s has a fixed shape.", n, ds.Source))
			}
		}
	}
	if a.Coarse && ds.Source != SourceCIFAR100 {
		d.errAt(attrRange(b.Body, "coarse"), "Unexpected argument", "coarse applies to cifar100 only.")
	}
	if a.Limit < 0 {
		d.errAt(attrRange(b.Body, "limit"), "Invalid value", "limit must be 0 (all samples) or positive.")
	}
	return ds, len(d.diags.Errs()) == n
}

var backbones = []string{"mlp", "convnet", "resnet18", "resnet34"}

func (d *decoder) decodeEncoder(b *hcl.Block, c, h, w int, shapeOK bool) Encoder {
	enc := Encoder{Range: b.DefRange}
	var a encoderArgs
	if !d.decodeBody(b.Body, &a) {
		return enc
	}
	if !d.checkOneOf(b.Body, "backbone", a.Backbone, backbones...) {
		return enc
	}
	// Check explicit sizes before defaults fill the gaps: the defaults are
	// valid, and an explicit [] is a mistake, not a request for them.
	ok := true
	for _, l := range []struct {
		name string
		v    []int
	}{{"widths", a.Widths}, {"strides", a.Strides}, {"blocks", a.Blocks}} {
		ok = d.checkSizes(b.Body, "Invalid value", l.name, l.v) && ok
	}
	for _, s := range []struct {
		name   string
		v, max int
	}{{"in_dim", a.InDim, maxInDim}, {"in_channels", a.InChannels, maxDim}, {"stem_width", a.StemWidth, maxDim}} {
		// 0 is the default (from the data, or the first width).
		if s.v < 0 || s.v > s.max {
			d.errAt(attrRange(b.Body, s.name), "Invalid value", fmt.Sprintf("%s must be between 1 and %d, got %d.", s.name, s.max, s.v))
			ok = false
		}
	}
	if !ok {
		return enc
	}
	bb := nn.BackboneSpec{Arch: a.Backbone, InDim: a.InDim, InChannels: a.InChannels, Widths: a.Widths,
		Strides: a.Strides, Blocks: a.Blocks, StemWidth: a.StemWidth}
	// Fill the input size from the training data and check explicit values
	// against it: a mismatch would otherwise only fail at the first step.
	if a.Backbone == "mlp" {
		if shapeOK {
			if bb.InDim == 0 {
				bb.InDim = c * h * w
			} else if bb.InDim != c*h*w {
				d.errAt(attrRange(b.Body, "in_dim"), "Input size mismatch", fmt.Sprintf("in_dim = %d, but the augmented training images are %dx%dx%d = %d values.", bb.InDim, c, h, w, c*h*w))
			}
		}
		bb.InDim = orInt(bb.InDim, 784)
	} else {
		if shapeOK {
			if bb.InChannels == 0 {
				bb.InChannels = c
			} else if bb.InChannels != c {
				d.errAt(attrRange(b.Body, "in_channels"), "Input size mismatch", fmt.Sprintf("in_channels = %d, but the training images have %d channels.", bb.InChannels, c))
			}
		}
		bb.InChannels = orInt(bb.InChannels, 3)
	}
	// Resolve the architecture defaults so the stored config is explicit.
	feat := 0
	switch a.Backbone {
	case "mlp":
		bb.Widths = orInts(bb.Widths, []int{1024, 1024})
		feat = bb.Widths[len(bb.Widths)-1]
	case "convnet":
		bb.Widths = orInts(bb.Widths, []int{64, 128, 256, 512})
		bb.Strides = orInts(bb.Strides, []int{1, 2, 2, 2})
	default:
		def := []int{2, 2, 2, 2}
		if a.Backbone == "resnet34" {
			def = []int{3, 4, 6, 3}
		}
		bb.Blocks = orInts(bb.Blocks, def)
		bb.Widths = orInts(bb.Widths, []int{64, 128, 256, 512})
		bb.Strides = orInts(bb.Strides, []int{1, 2, 2, 2})
		bb.StemWidth = orInt(bb.StemWidth, bb.Widths[0])
	}
	if a.Backbone != "mlp" {
		if len(bb.Strides) != len(bb.Widths) || (len(bb.Blocks) > 0 && len(bb.Blocks) != len(bb.Widths)) {
			d.errAt(b.DefRange, "Inconsistent backbone", fmt.Sprintf("widths %v, strides %v and blocks %v must have one entry per stage.", bb.Widths, bb.Strides, bb.Blocks))
		}
		feat = bb.Widths[len(bb.Widths)-1]
	}
	enc.Backbone, enc.FeatureDim = bb, feat

	if a.Projector == nil {
		d.errAt(b.Body.MissingItemRange(), "Missing projector block", "The encoder needs a projector { dims = [...] } block (kind = \"none\" for no projector).")
		return enc
	}
	var out int
	enc.Projector, out = d.decodeHead("projector", a.Projector, feat, []string{"mlp", "none"})
	enc.Predictor = nn.HeadSpec{Kind: "identity"}
	if a.Predictor != nil {
		var pout int
		enc.Predictor, pout = d.decodeHead("predictor", a.Predictor, out, []string{"mlp", "bias", "none"})
		if pout != out && pout > 0 && out > 0 {
			d.errAt(attrRange(a.Predictor.Body, "dims"), "Invalid predictor", fmt.Sprintf("the predictor must end at the projector's size %d, got %d.", out, pout))
		}
	}
	return enc
}

func orInt(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

func orInts(v, def []int) []int {
	if len(v) == 0 {
		return def
	}
	return v
}

// decodeHead resolves a projector or predictor on an input of size in;
// it returns the spec and its output size. dims lists layer output sizes
// without the input, which is prepended here.
func (d *decoder) decodeHead(what string, a *headArgs, in int, kinds []string) (nn.HeadSpec, int) {
	kind := orDefault(a.Kind, "mlp")
	if !d.checkOneOf(a.Body, "kind", kind, kinds...) {
		return nn.HeadSpec{}, 0
	}
	switch kind {
	case "none":
		for _, n := range []string{"dims", "last_bn", "last_bias"} {
			if r := attrRange(a.Body, n); r != a.Body.MissingItemRange() {
				d.errAt(r, "Unexpected argument", fmt.Sprintf("%s does not apply to a %s of kind \"none\".", n, what))
			}
		}
		return nn.HeadSpec{Kind: "identity"}, in
	case "bias":
		if a.Dims != nil || a.LastBN != nil || a.LastBias != nil {
			d.errAt(a.Body.MissingItemRange(), "Unexpected argument", "a bias-only predictor h(z) = z/||z|| + b takes no dims, last_bn or last_bias.")
		}
		return nn.HeadSpec{Kind: "bias", Dims: []int{in}}, in
	}
	if len(a.Dims) == 0 {
		d.errAt(attrRange(a.Body, "dims"), "Missing dims", fmt.Sprintf("an mlp %s needs dims: the output size of each layer, e.g. [2048, 2048].", what))
		return nn.HeadSpec{}, 0
	}
	if !d.checkSizes(a.Body, "Invalid dims", "dims", a.Dims) {
		return nn.HeadSpec{}, 0
	}
	lastBN := orDefault(a.LastBN, nn.LastBNNone)
	d.checkOneOf(a.Body, "last_bn", lastBN, nn.LastBNNone, nn.LastBNPlain, nn.LastBNAffine)
	// The predictor's output Linear has a bias in SimSiam/BYOL; the
	// projector's ends in a BN, which makes a bias pointless.
	lastBias := orDefault(a.LastBias, what == "predictor")
	dims := append([]int{in}, a.Dims...)
	return nn.HeadSpec{Kind: "mlp", Dims: dims, LastBN: lastBN, LastBias: lastBias}, dims[len(dims)-1]
}

// decodePlugin resolves a plugin block: the label names the plugin, whose
// schema decodes the body (after host reduces it, when not nil).
func (d *decoder) decodePlugin(kind string, b *hcl.Block, host func(hcl.Body) hcl.Body) Plugin {
	p := Plugin{Name: b.Labels[0], Range: b.DefRange}
	body := b.Body
	if host != nil {
		body = host(body)
	}
	spec, err := d.schemas.Schema(kind, p.Name)
	if err != nil && !errors.Is(err, ErrUnknownPlugin) {
		d.errAt(b.LabelRanges[0], fmt.Sprintf("Cannot get the %s plugin's schema", kind), err.Error())
		return p
	}
	if err != nil {
		d.errAt(b.LabelRanges[0], fmt.Sprintf("Unknown %s plugin", kind),
			fmt.Sprintf("There is no %s plugin named %q; available: %s.%s", kind, p.Name, quoteList(d.schemas.Names(kind)), didYouMean(p.Name, d.schemas.Names(kind))))
		return p
	}
	val, diags := hcldec.Decode(body, spec, d.ctx)
	d.add(diags)
	if diags.HasErrors() || !val.IsWhollyKnown() {
		return p
	}
	p.Config = val
	js, err := ctyjson.Marshal(val, val.Type())
	if err != nil {
		d.errAt(b.DefRange, "Invalid plugin configuration", err.Error())
		return p
	}
	p.ConfigJSON = js
	return p
}

// checkLossPredictor reports a loss whose "predictor" option disagrees
// with the encoder's predictor block.
func (d *decoder) checkLossPredictor(b *hcl.Block, loss Plugin, enc Encoder) {
	if loss.Config == cty.NilVal || !loss.Config.Type().IsObjectType() || !loss.Config.Type().HasAttribute("predictor") {
		return
	}
	v := loss.Config.GetAttr("predictor")
	if v.IsNull() || !v.Type().Equals(cty.String) || enc.Predictor.Kind == "" {
		return
	}
	want := map[string]string{"mlp": "mlp", "bias": "bias", "none": "identity"}[v.AsString()]
	if want != "" && want != enc.Predictor.Kind {
		got := enc.Predictor.Kind
		if got == "identity" {
			got = "none"
		}
		d.errAt(attrRange(b.Body, "predictor"), "Predictor mismatch",
			fmt.Sprintf("the loss expects predictor = %q but the encoder's predictor is %q; set encoder { predictor { kind = %q ... } } or change the loss option.", v.AsString(), got, v.AsString()))
	}
}

func (d *decoder) decodeOptimizer(b *hcl.Block, batch int) Optimizer {
	o := Optimizer{Range: b.DefRange}
	var a optimizerArgs
	if !d.decodeBody(b.Body, &a) {
		return o
	}
	alg, err := optim.ParseAlgorithm(a.Name)
	if err != nil {
		d.checkOneOf(b.Body, "name", a.Name, "sgd", "lars", "adamw")
		return o
	}
	def := optim.Defaults(alg)
	o.Name, o.BaseLR, o.LRScaling = a.Name, a.LR, a.LRScaling
	o.ReferenceBatch = orDefault(a.ReferenceBatch, 256)
	if !(a.LR > 0) {
		d.errAt(attrRange(b.Body, "lr"), "Invalid value", fmt.Sprintf("lr must be positive, got %g.", a.LR))
	}
	if o.ReferenceBatch < 1 {
		d.errAt(attrRange(b.Body, "reference_batch"), "Invalid value", "reference_batch must be positive.")
		o.ReferenceBatch = 256
	}
	if d.checkOneOf(b.Body, "lr_scaling", a.LRScaling, "linear", "none") {
		o.LR = a.LR
		if a.LRScaling == "linear" {
			o.LR = a.LR * float64(batch) / float64(o.ReferenceBatch)
		}
	}
	o.Nesterov, o.NoDecayBiasNorm, o.PredictorFixedLR = a.Nesterov, a.NoDecayBiasNorm, a.PredictorFixedLR
	o.WeightDecay = orDefault(a.WeightDecay, def.WeightDecay)
	if o.WeightDecay < 0 {
		d.errAt(attrRange(b.Body, "weight_decay"), "Invalid value", "weight_decay must be non-negative.")
	}
	only := func(algName string, names ...string) {
		for _, n := range names {
			if r := attrRange(b.Body, n); r != b.Body.MissingItemRange() {
				d.errAt(r, "Unexpected argument", fmt.Sprintf("%s applies to %s only, not %s.", n, algName, a.Name))
			}
		}
	}
	switch alg {
	case optim.SGD, optim.LARS:
		o.Momentum = orDefault(a.Momentum, 0.9)
		if o.Momentum < 0 || o.Momentum >= 1 {
			d.errAt(attrRange(b.Body, "momentum"), "Invalid value", fmt.Sprintf("momentum must be in [0, 1), got %g.", o.Momentum))
		}
		only("adamw", "beta1", "beta2")
		if alg == optim.LARS {
			o.Eta, o.ClipLR, o.ExcludeBiasNorm = orDefault(a.Eta, def.Eta), orDefault(a.ClipLR, false), orDefault(a.ExcludeBiasNorm, false)
			o.Eps = orDefault(a.Eps, def.Eps)
		} else {
			only("lars", "eta", "clip_lr", "exclude_bias_norm", "eps")
		}
	case optim.AdamW:
		only("sgd and lars", "momentum", "nesterov")
		only("lars", "eta", "clip_lr", "exclude_bias_norm")
		o.Beta1, o.Beta2, o.Eps = orDefault(a.Beta1, def.Beta1), orDefault(a.Beta2, def.Beta2), orDefault(a.Eps, def.Eps)
	}
	return o
}

// Algorithm returns the optim.Algorithm the optimizer names.
func (o Optimizer) Algorithm() optim.Algorithm {
	a, _ := optim.ParseAlgorithm(o.Name)
	return a
}

// Group returns the parameter-group settings (without Params) of the
// backbone and projector; the runner fills Params and passes LR through
// the schedule.
func (o Optimizer) Group(name string) optim.Group {
	g := optim.Defaults(o.Algorithm())
	g.Name = name
	g.WeightDecay, g.NoDecayBiasNorm = o.WeightDecay, o.NoDecayBiasNorm
	g.Momentum, g.Nesterov = o.Momentum, o.Nesterov
	if o.Name == "lars" {
		g.Eta, g.ClipLR, g.ExcludeBiasNorm, g.Eps = o.Eta, o.ClipLR, o.ExcludeBiasNorm, o.Eps
	}
	if o.Name == "adamw" {
		g.Beta1, g.Beta2, g.Eps = o.Beta1, o.Beta2, o.Eps
	}
	return g
}

// PredictorGroup returns the predictor's group: Group with, when
// PredictorFixedLR is set, a static lr equal to the scaled LR (SimSiam).
func (o Optimizer) PredictorGroup() optim.Group {
	g := o.Group("predictor")
	if o.PredictorFixedLR {
		g.Static, g.FixedLR = true, o.LR
	}
	return g
}

func (d *decoder) decodeSchedule(b *hcl.Block, epochs int) Schedule {
	s := Schedule{Name: "warmup_cosine", PerStep: true}
	if b == nil {
		return s
	}
	s.Range = b.DefRange
	var a scheduleArgs
	if !d.decodeBody(b.Body, &a) {
		return s
	}
	s.Name = orDefault(a.Name, "warmup_cosine")
	s.WarmupEpochs, s.WarmupStartLR, s.MinLR, s.PerStep = a.WarmupEpochs, a.WarmupStartLR, a.MinLR, orDefault(a.PerStep, true)
	if !d.checkOneOf(b.Body, "name", s.Name, "warmup_cosine", "constant") {
		return s
	}
	if s.Name == "constant" {
		for _, n := range []string{"warmup_epochs", "warmup_start_lr", "min_lr"} {
			if r := attrRange(b.Body, n); r != b.Body.MissingItemRange() {
				d.errAt(r, "Unexpected argument", fmt.Sprintf("%s does not apply to a constant schedule.", n))
			}
		}
	}
	if s.WarmupEpochs < 0 || (epochs > 0 && s.WarmupEpochs >= float64(epochs)) {
		d.errAt(attrRange(b.Body, "warmup_epochs"), "Invalid value", fmt.Sprintf("warmup_epochs must be in [0, epochs = %d), got %g.", epochs, s.WarmupEpochs))
	}
	if s.MinLR < 0 || s.WarmupStartLR < 0 {
		d.errAt(b.DefRange, "Invalid value", "min_lr and warmup_start_lr must be non-negative.")
	}
	return s
}

// Build returns the lr schedule for the optimizer's LR (already scaled)
// given the steps per epoch the loader yields.
func (s Schedule) Build(lr float64, epochs, stepsPerEpoch int) (optim.Schedule, error) {
	if s.Name == "constant" {
		return optim.Constant(lr), nil
	}
	ws, err := optim.NewWarmupCosine(lr, s.WarmupStartLR, s.MinLR, s.WarmupEpochs, epochs, stepsPerEpoch, s.PerStep)
	if err != nil {
		return nil, fmt.Errorf("schedule %s: %w", s.Name, err)
	}
	return ws, nil
}

func (d *decoder) decodeEvaluation(b *hcl.Block, datasets []string) (Evaluation, bool) {
	ev := Evaluation{Kind: b.Labels[0], Range: b.DefRange}
	if !slices.Contains([]string{"knn", "linear"}, ev.Kind) {
		d.errAt(b.LabelRanges[0], "Unknown evaluation", fmt.Sprintf("There is no evaluation %q; available: \"knn\" or \"linear\".%s", ev.Kind, didYouMean(ev.Kind, []string{"knn", "linear"})))
		return ev, false
	}
	var a evalArgs
	if !d.decodeBody(b.Body, &a) {
		return ev, false
	}
	n := len(d.diags.Errs())
	ds := func(name string, p *string, def string) string {
		v := orDefault(p, def)
		if !slices.Contains(datasets, v) {
			r := attrRange(b.Body, name)
			d.errAt(r, "Unknown dataset", fmt.Sprintf("There is no dataset %q for %s; declared: %s.%s", v, name, quoteList(datasets), didYouMean(v, datasets)))
		}
		return v
	}
	ev.Train, ev.Test = ds("train", a.Train, "train"), ds("test", a.Test, "test")
	ev.Feature = orDefault(a.Feature, "backbone")
	d.checkOneOf(b.Body, "feature", ev.Feature, "backbone", "z")
	only := func(kind string, names ...string) {
		for _, n := range names {
			if r := attrRange(b.Body, n); r != b.Body.MissingItemRange() {
				d.errAt(r, "Unexpected argument", fmt.Sprintf("%s applies to evaluate %q only.", n, kind))
			}
		}
	}
	if ev.Kind == "knn" {
		only("linear", "epochs", "batch_size", "lr", "momentum", "weight_decay")
		ev.EveryEpochs, ev.AtStart, ev.AtEnd = orDefault(a.EveryEpochs, 1), orDefault(a.AtStart, true), orDefault(a.AtEnd, true)
		ev.K, ev.Temperature = orDefault(a.K, 200), orDefault(a.Temperature, 0.1)
		if ev.K < 1 {
			d.errAt(attrRange(b.Body, "k"), "Invalid value", "k must be at least 1.")
		}
		if !(ev.Temperature > 0) {
			d.errAt(attrRange(b.Body, "temperature"), "Invalid value", "temperature must be positive.")
		}
	} else {
		only("knn", "k", "temperature")
		ev.EveryEpochs, ev.AtStart, ev.AtEnd = orDefault(a.EveryEpochs, 0), orDefault(a.AtStart, false), orDefault(a.AtEnd, true)
		ev.Epochs, ev.BatchSize = orDefault(a.Epochs, 100), orDefault(a.BatchSize, 256)
		ev.LR, ev.Momentum, ev.WeightDecay = orDefault(a.LR, 0.1), orDefault(a.Momentum, 0.9), orDefault(a.WeightDecay, 0)
		if ev.Epochs < 1 || ev.BatchSize < 1 || !(ev.LR > 0) {
			d.errAt(b.DefRange, "Invalid value", "a linear probe needs epochs >= 1, batch_size >= 1 and lr > 0.")
		}
	}
	if ev.EveryEpochs < 0 {
		d.errAt(attrRange(b.Body, "every_epochs"), "Invalid value", "every_epochs must be 0 (not periodically) or positive.")
	}
	return ev, len(d.diags.Errs()) == n
}

func (d *decoder) decodeCheckpoint(b *hcl.Block) Checkpoint {
	c := Checkpoint{Keep: 1, Dir: "checkpoints"}
	if b == nil {
		return c
	}
	c.Range = b.DefRange
	var a checkpointArgs
	if !d.decodeBody(b.Body, &a) {
		return c
	}
	c.EveryEpochs, c.Keep, c.Dir = a.EveryEpochs, orDefault(a.Keep, 1), orDefault(a.Dir, "checkpoints")
	if c.EveryEpochs < 0 {
		d.errAt(attrRange(b.Body, "every_epochs"), "Invalid value", "every_epochs must be 0 (only at the end) or positive.")
	}
	if c.Keep < 0 {
		d.errAt(attrRange(b.Body, "keep"), "Invalid value", "keep must be 0 (all) or positive.")
	}
	return c
}
