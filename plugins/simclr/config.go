package simclr

import (
	"fmt"

	"github.com/zclconf/go-cty/cty"
)

// DefaultTemperature is NT-Xent's temperature when the block sets none.
const DefaultTemperature = 0.5

// ParseNTXentConfig returns the temperature of a decoded `loss "simclr" {}`
// block (an object with an optional number temperature; null means the
// default).
func ParseNTXentConfig(v cty.Value) (float64, error) {
	t := DefaultTemperature
	a, ok, err := attr(v, "temperature", cty.Number)
	if err != nil || !ok {
		return t, err
	}
	t, _ = a.AsBigFloat().Float64()
	if !(t > 0) {
		return t, fmt.Errorf("simclr: temperature %g must be positive", t)
	}
	return t, nil
}

// ParseTripletConfig returns the negative of a decoded `loss "triplet" {}`
// block (an object with an optional string negative; default "full").
func ParseTripletConfig(v cty.Value) (Negative, error) {
	n := NegativeFull
	a, ok, err := attr(v, "negative", cty.String)
	if err != nil || !ok {
		return n, err
	}
	switch n = Negative(a.AsString()); n {
	case NegativeFull, NegativeCenter, NegativeResidual:
		return n, nil
	}
	return n, fmt.Errorf("simclr: unknown triplet negative %q (want %q, %q or %q)", n, NegativeFull, NegativeCenter, NegativeResidual)
}

// attr returns v's attribute name if it is set, checking its type.
func attr(v cty.Value, name string, ty cty.Type) (cty.Value, bool, error) {
	if v.IsNull() {
		return cty.NilVal, false, nil
	}
	if !v.IsKnown() || !v.Type().IsObjectType() {
		return cty.NilVal, false, fmt.Errorf("simclr: configuration must be an object, got %s", v.Type().FriendlyName())
	}
	if !v.Type().HasAttribute(name) {
		return cty.NilVal, false, nil
	}
	a := v.GetAttr(name)
	if a.IsNull() || !a.IsKnown() {
		return cty.NilVal, false, nil
	}
	if !a.Type().Equals(ty) {
		return cty.NilVal, false, fmt.Errorf("simclr: %s must be a %s, got %s", name, ty.FriendlyName(), a.Type().FriendlyName())
	}
	return a, true, nil
}
