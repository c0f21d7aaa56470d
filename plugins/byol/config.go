package byol

import (
	"fmt"

	"github.com/zclconf/go-cty/cty"
)

// DefaultTauBase is the EMA momentum at the start of training when the
// block sets none (solo-learn's CIFAR recipe: 0.99).
const DefaultTauBase = 0.99

// Config is the `loss "byol" {}` block.
type Config struct {
	// TauBase is the target network's EMA momentum at step 0; it follows a
	// cosine schedule to 1 over the run (optim.Tau).
	TauBase float64
}

// ParseConfig converts the block's decoded configuration (an object with an
// optional number tau_base; null means the defaults).
func ParseConfig(v cty.Value) (Config, error) {
	c := Config{TauBase: DefaultTauBase}
	if v.IsNull() {
		return c, nil
	}
	if !v.IsKnown() || !v.Type().IsObjectType() {
		return c, fmt.Errorf("byol: configuration must be an object, got %s", v.Type().FriendlyName())
	}
	if v.Type().HasAttribute("tau_base") {
		a := v.GetAttr("tau_base")
		if !a.IsNull() && a.IsKnown() {
			if a.Type() != cty.Number {
				return c, fmt.Errorf("byol: tau_base must be a number, got %s", a.Type().FriendlyName())
			}
			c.TauBase, _ = a.AsBigFloat().Float64()
		}
	}
	if !(c.TauBase > 0 && c.TauBase <= 1) {
		return c, fmt.Errorf("byol: tau_base %g must be in (0, 1]", c.TauBase)
	}
	return c, nil
}
