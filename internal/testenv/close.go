package testenv

import (
	"fmt"
	"math"
)

// Golden tolerances against PyTorch: float32 results computed in another
// order differ by a few ulps per accumulation, so the relative bound has an
// absolute floor for values near zero.
const (
	RelTol = 1e-4
	AbsTol = 1e-6
)

// Mismatch compares got with want elementwise, |got-want| <= atol +
// rtol*|want|, and describes the worst offender, or returns "" when all are
// close. Non-finite expected values (±Inf, NaN) must be matched exactly, and
// a non-finite got is a mismatch unless want is the same.
func Mismatch(got, want []float32, rtol, atol float64) string {
	if len(got) != len(want) {
		return fmt.Sprintf("length %d, want %d", len(got), len(want))
	}
	worst, at := 0.0, -1
	for i := range got {
		g, w := float64(got[i]), float64(want[i])
		if nonFinite(g) || nonFinite(w) {
			if g == w || (math.IsNaN(g) && math.IsNaN(w)) {
				continue
			}
			return fmt.Sprintf("[%d] = %v, want %v", i, g, w)
		}
		excess := math.Abs(g-w) / (atol + rtol*math.Abs(w))
		if excess > worst {
			worst, at = excess, i
		}
	}
	if worst > 1 {
		return fmt.Sprintf("[%d] = %.7g, want %.7g (%.1fx the tolerance rtol=%g atol=%g)", at, got[at], want[at], worst, rtol, atol)
	}
	return ""
}

func nonFinite(v float64) bool { return math.IsNaN(v) || math.IsInf(v, 0) }
