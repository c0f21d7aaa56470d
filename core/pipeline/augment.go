package pipeline

import (
	"encoding/json"
	"fmt"

	"github.com/hashicorp/hcl/v2"

	"github.com/sslrun/sslrun/core/data/augment"
)

// Augment is the resolved `augment {}` block: one pipeline per view.
type Augment struct {
	Views []View    `json:"views"`
	Range hcl.Range `json:"-"`
}

// View is one view's steps, in file order.
type View struct {
	Steps []Step `json:"steps"`
}

// Step is one augmentation step: the block type (Op), its resolved
// arguments (Params, for the JSON) and the configured augment.Step.
type Step struct {
	Op     string
	Params map[string]any
	// Step is the validated core/data/augment step. Steps hold
	// configuration only and are safe to share between loaders.
	Step  augment.Step
	Range hcl.Range
}

// MarshalJSON writes {"op": ..., "params": {...}} with sorted keys.
func (s Step) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Op     string         `json:"op"`
		Params map[string]any `json:"params"`
	}{s.Op, s.Params})
}

// Pipeline returns the view's augment.Pipeline.
func (v View) Pipeline() augment.Pipeline {
	p := make(augment.Pipeline, len(v.Steps))
	for i, s := range v.Steps {
		p[i] = s.Step
	}
	return p
}

// Pipelines returns one augment.Pipeline per view, for data.Config.Views.
func (a Augment) Pipelines() []augment.Pipeline {
	ps := make([]augment.Pipeline, len(a.Views))
	for i, v := range a.Views {
		ps[i] = v.Pipeline()
	}
	return ps
}

// Step block types inside `view {}`, in the order documented.
var stepBlocks = []hcl.BlockHeaderSchema{
	{Type: "random_resized_crop"}, {Type: "resize"}, {Type: "hflip"}, {Type: "color_jitter"},
	{Type: "grayscale"}, {Type: "gaussian_blur"}, {Type: "solarize"}, {Type: "normalize"},
}

func (d *decoder) decodeAugment(blk *hcl.Block) Augment {
	out := Augment{Range: blk.DefRange}
	content, diags := blk.Body.Content(&hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{{Name: "views"}},
		Blocks:     []hcl.BlockHeaderSchema{{Type: "view"}},
	})
	d.add(diags)
	views := 2
	var viewsAttr *hcl.Attribute
	if a := content.Attributes["views"]; a != nil {
		viewsAttr = a
		d.decodeExpr(a.Expr, &views)
		switch {
		case views < 1:
			d.errAt(a.Expr.Range(), "Invalid value", fmt.Sprintf("views must be at least 1, got %d.", views))
			views = 1
		case views > maxViews:
			// Views are materialised below: an unbounded count allocates
			// until the process runs out of memory.
			d.errAt(a.Expr.Range(), "Invalid value", fmt.Sprintf("views must be at most %d, got %d.", maxViews, views))
			views = 1
		}
	}
	if len(content.Blocks) == 0 {
		d.errAt(blk.Body.MissingItemRange(), "Missing view block", "The augment block needs at least one view block.")
		return out
	}
	if len(content.Blocks) > maxViews {
		d.errAt(content.Blocks[maxViews].DefRange, "Too many view blocks", fmt.Sprintf("At most %d views are allowed, got %d view blocks.", maxViews, len(content.Blocks)))
		return out
	}
	if len(content.Blocks) > 1 {
		if viewsAttr != nil && views != len(content.Blocks) {
			d.errAt(viewsAttr.Expr.Range(), "Inconsistent views",
				fmt.Sprintf("views = %d, but %d view blocks are given (one block is shared by all views; otherwise give one per view).", views, len(content.Blocks)))
		}
		views = len(content.Blocks)
	}
	parsed := make([]View, len(content.Blocks))
	for i, vb := range content.Blocks {
		parsed[i] = d.decodeView(vb)
	}
	for i := range views {
		out.Views = append(out.Views, parsed[min(i, len(parsed)-1)])
	}
	return out
}

func (d *decoder) decodeView(vb *hcl.Block) View {
	var v View
	content, diags := vb.Body.Content(&hcl.BodySchema{Blocks: stepBlocks})
	d.add(diags)
	for _, sb := range content.Blocks {
		if st, ok := d.decodeStep(sb); ok {
			v.Steps = append(v.Steps, st)
		}
	}
	return v
}

type rrcArgs struct {
	Size  []int     `hcl:"size"`
	Scale []float64 `hcl:"scale,optional"`
	Ratio []float64 `hcl:"ratio,optional"`
}

type sizeArgs struct {
	Size []int `hcl:"size"`
}

type pArgs struct {
	P *float64 `hcl:"p,optional"`
}

type jitterArgs struct {
	Brightness float64  `hcl:"brightness,optional"`
	Contrast   float64  `hcl:"contrast,optional"`
	Saturation float64  `hcl:"saturation,optional"`
	Hue        float64  `hcl:"hue,optional"`
	P          *float64 `hcl:"p,optional"`
}

type blurArgs struct {
	Kernel int       `hcl:"kernel"`
	Sigma  []float64 `hcl:"sigma,optional"`
	P      *float64  `hcl:"p,optional"`
}

type solarizeArgs struct {
	Threshold *float64 `hcl:"threshold,optional"`
	P         *float64 `hcl:"p,optional"`
}

type normalizeArgs struct {
	Mean []float64 `hcl:"mean"`
	Std  []float64 `hcl:"std"`
}

// orP returns *p or def.
func orP(p *float64, def float64) float64 {
	if p == nil {
		return def
	}
	return *p
}

// decodeStep decodes one step block; values are checked here, each at the
// argument that is wrong, and the built step's own Validate runs as a
// backstop at the block.
func (d *decoder) decodeStep(sb *hcl.Block) (Step, bool) {
	st := Step{Op: sb.Type, Range: sb.DefRange}
	n := len(d.diags.Errs())
	body := sb.Body
	checkP := func(p float64) {
		if !(p >= 0 && p <= 1) {
			d.errAt(attrRange(body, "p"), "Invalid probability", fmt.Sprintf("p must be in [0, 1], got %g.", p))
		}
	}
	pair := func(name string, v []float64, def [2]float64) [2]float64 {
		if v == nil {
			return def
		}
		if len(v) != 2 {
			d.errAt(attrRange(body, name), "Invalid range", fmt.Sprintf("%s must be a [min, max] pair, got %d values.", name, len(v)))
			return def
		}
		if v[0] > v[1] {
			d.errAt(attrRange(body, name), "Invalid range", fmt.Sprintf("%s min %g is greater than max %g.", name, v[0], v[1]))
		}
		return [2]float64{v[0], v[1]}
	}
	size := func(v []int) (int, int) {
		switch {
		case len(v) == 1 && v[0] > 0:
			return v[0], v[0]
		case len(v) == 2 && v[0] > 0 && v[1] > 0:
			return v[0], v[1]
		}
		d.errAt(attrRange(body, "size"), "Invalid size", fmt.Sprintf("size must be [s] or [h, w] with positive values, got %v.", v))
		return 1, 1
	}
	switch sb.Type {
	case "random_resized_crop":
		var a rrcArgs
		if !d.decodeBody(body, &a) {
			return st, false
		}
		h, w := size(a.Size)
		scale := pair("scale", a.Scale, [2]float64{0.08, 1})
		if scale[0] <= 0 || scale[1] > 1 {
			d.errAt(attrRange(body, "scale"), "Invalid range", fmt.Sprintf("scale (%g, %g) must lie in (0, 1].", scale[0], scale[1]))
		}
		ratio := pair("ratio", a.Ratio, [2]float64{3.0 / 4, 4.0 / 3})
		if ratio[0] <= 0 {
			d.errAt(attrRange(body, "ratio"), "Invalid range", fmt.Sprintf("ratio (%g, %g) must be positive.", ratio[0], ratio[1]))
		}
		st.Step = &augment.RandomResizedCrop{H: h, W: w, Scale: scale, Ratio: ratio}
		st.Params = map[string]any{"size": []int{h, w}, "scale": scale[:], "ratio": ratio[:]}
	case "resize":
		var a sizeArgs
		if !d.decodeBody(body, &a) {
			return st, false
		}
		h, w := size(a.Size)
		st.Step = &augment.Resize{H: h, W: w}
		st.Params = map[string]any{"size": []int{h, w}}
	case "hflip", "grayscale":
		var a pArgs
		if !d.decodeBody(body, &a) {
			return st, false
		}
		p := orP(a.P, 0.5)
		if sb.Type == "grayscale" {
			p = orP(a.P, 0.2)
			st.Step = &augment.RandomGrayscale{P: p}
		} else {
			st.Step = &augment.RandomHorizontalFlip{P: p}
		}
		checkP(p)
		st.Params = map[string]any{"p": p}
	case "color_jitter":
		var a jitterArgs
		if !d.decodeBody(body, &a) {
			return st, false
		}
		p := orP(a.P, 0.8)
		checkP(p)
		for name, v := range map[string]float64{"brightness": a.Brightness, "contrast": a.Contrast, "saturation": a.Saturation} {
			if v < 0 {
				d.errAt(attrRange(body, name), "Invalid value", fmt.Sprintf("%s must be non-negative, got %g.", name, v))
			}
		}
		if a.Hue < 0 || a.Hue > 0.5 {
			d.errAt(attrRange(body, "hue"), "Invalid value", fmt.Sprintf("hue must be in [0, 0.5], got %g.", a.Hue))
		}
		st.Step = &augment.ColorJitter{Brightness: a.Brightness, Contrast: a.Contrast, Saturation: a.Saturation, Hue: a.Hue, P: p}
		st.Params = map[string]any{"brightness": a.Brightness, "contrast": a.Contrast, "saturation": a.Saturation, "hue": a.Hue, "p": p}
	case "gaussian_blur":
		var a blurArgs
		if !d.decodeBody(body, &a) {
			return st, false
		}
		if a.Kernel <= 0 || a.Kernel%2 == 0 {
			d.errAt(attrRange(body, "kernel"), "Invalid value", fmt.Sprintf("kernel must be odd and positive, got %d.", a.Kernel))
		}
		sigma := pair("sigma", a.Sigma, [2]float64{0.1, 2})
		if sigma[0] <= 0 {
			d.errAt(attrRange(body, "sigma"), "Invalid range", fmt.Sprintf("sigma min must be positive, got %g.", sigma[0]))
		}
		p := orP(a.P, 0.5)
		checkP(p)
		st.Step = &augment.GaussianBlur{Kernel: a.Kernel, SigmaMin: sigma[0], SigmaMax: sigma[1], P: p}
		st.Params = map[string]any{"kernel": a.Kernel, "sigma": sigma[:], "p": p}
	case "solarize":
		var a solarizeArgs
		if !d.decodeBody(body, &a) {
			return st, false
		}
		th, p := orP(a.Threshold, 0.5), orP(a.P, 0.2)
		if th < 0 || th > 1 {
			d.errAt(attrRange(body, "threshold"), "Invalid value", fmt.Sprintf("threshold must be in [0, 1], got %g.", th))
		}
		checkP(p)
		st.Step = &augment.RandomSolarize{Threshold: float32(th), P: p}
		st.Params = map[string]any{"threshold": th, "p": p}
	case "normalize":
		var a normalizeArgs
		if !d.decodeBody(body, &a) {
			return st, false
		}
		if len(a.Mean) == 0 || len(a.Mean) != len(a.Std) {
			d.errAt(attrRange(body, "std"), "Invalid value", fmt.Sprintf("mean and std must be non-empty and of equal length, got %d and %d values.", len(a.Mean), len(a.Std)))
		}
		for _, s := range a.Std {
			if !(s > 0) {
				d.errAt(attrRange(body, "std"), "Invalid value", fmt.Sprintf("every std must be positive, got %v.", a.Std))
				break
			}
		}
		st.Step = &augment.Normalize{Mean: f32s(a.Mean), Std: f32s(a.Std)}
		st.Params = map[string]any{"mean": a.Mean, "std": a.Std}
	}
	if len(d.diags.Errs()) > n {
		return st, false
	}
	if err := st.Step.Validate(); err != nil {
		d.errAt(sb.DefRange, "Invalid "+sb.Type, err.Error())
		return st, false
	}
	return st, true
}

func f32s(x []float64) []float32 {
	out := make([]float32, len(x))
	for i, v := range x {
		out[i] = float32(v)
	}
	return out
}
