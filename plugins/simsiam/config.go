package simsiam

import (
	"fmt"

	"github.com/zclconf/go-cty/cty"
)

// Config is the `loss "simsiam" {}` block: the loss Options plus the
// predictor the variant expects ("mlp", "bias" or "none", which must agree
// with the encoder's predictor; the pipeline checks that).
type Config struct {
	Options
	Predictor string
}

// ParseConfig converts the block's decoded configuration (an object with
// stop_gradient, target and predictor, defaults filled in by the schema)
// into a Config. Missing or null attributes keep Default's values, so a
// null value (no block body) is SimSiam itself.
func ParseConfig(v cty.Value) (Config, error) {
	c := Config{Options: Default(), Predictor: "mlp"}
	if v.IsNull() {
		return c, nil
	}
	if !v.IsKnown() || !v.Type().IsObjectType() {
		return c, fmt.Errorf("simsiam: configuration must be an object, got %s", v.Type().FriendlyName())
	}
	if a, ok := attr(v, "stop_gradient"); ok {
		if a.Type() != cty.Bool {
			return c, fmt.Errorf("simsiam: stop_gradient must be a bool, got %s", a.Type().FriendlyName())
		}
		c.StopGradient = a.True()
	}
	if a, ok := attr(v, "target"); ok {
		if a.Type() != cty.String {
			return c, fmt.Errorf("simsiam: target must be a string, got %s", a.Type().FriendlyName())
		}
		c.Target = Target(a.AsString())
	}
	if a, ok := attr(v, "predictor"); ok {
		if a.Type() != cty.String {
			return c, fmt.Errorf("simsiam: predictor must be a string, got %s", a.Type().FriendlyName())
		}
		c.Predictor = a.AsString()
	}
	switch c.Predictor {
	case "mlp", "bias", "none":
	default:
		return c, fmt.Errorf("simsiam: predictor %q: want mlp, bias or none", c.Predictor)
	}
	return c, c.Validate()
}

// attr returns v's known, non-null attribute name.
func attr(v cty.Value, name string) (cty.Value, bool) {
	if !v.Type().HasAttribute(name) {
		return cty.NilVal, false
	}
	a := v.GetAttr(name)
	if a.IsNull() || !a.IsKnown() {
		return cty.NilVal, false
	}
	return a, true
}
