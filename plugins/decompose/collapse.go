package decompose

import (
	"fmt"
	"math"
)

// Thresholds of the verdicts (paper.md: "m_o > 0.9 or std*sqrt(d) < 0.1 and
// kNN at chance").
const (
	// CollapseMO is the m_o above which the embeddings collapsed to a point.
	CollapseMO = 0.9
	// CollapseStdSqrtD is the std*sqrt(d) below which they collapsed.
	CollapseStdSqrtD = 0.1
	// ChanceMargin is how far above chance a kNN top-1 accuracy (a fraction
	// in [0, 1]) still counts as "at chance".
	ChanceMargin = 0.05
)

// knnGiven reports whether a kNN accuracy and its chance level were given
// (pass NaN or a negative value for "not measured").
func knnGiven(knnTop1, chance float64) bool {
	return !math.IsNaN(knnTop1) && knnTop1 >= 0 && !math.IsNaN(chance) && chance >= 0
}

// Collapsed applies the collapse rule to embedding statistics: m_o >
// CollapseMO or std_sqrt_d < CollapseStdSqrtD and, when knnTop1 and chance
// are given (fractions; NaN or negative means not measured), kNN top-1
// within ChanceMargin of chance. The reason says which numbers decided.
func Collapsed(s Stats, knnTop1, chance float64) (bool, string) {
	var geo string
	switch {
	case s.MO > CollapseMO:
		geo = fmt.Sprintf("m_o %.4g > %g", s.MO, CollapseMO)
	case s.StdSqrtD < CollapseStdSqrtD:
		geo = fmt.Sprintf("std*sqrt(d) %.4g < %g", s.StdSqrtD, CollapseStdSqrtD)
	}
	if geo == "" {
		return false, fmt.Sprintf("no collapse: m_o %.4g <= %g and std*sqrt(d) %.4g >= %g", s.MO, CollapseMO, s.StdSqrtD, CollapseStdSqrtD)
	}
	if !knnGiven(knnTop1, chance) {
		return true, geo + " (kNN not measured)"
	}
	if knnTop1 > chance+ChanceMargin {
		return false, fmt.Sprintf("%s but kNN %.4g is above chance %.4g + %g: partial collapse, not complete", geo, knnTop1, chance, ChanceMargin)
	}
	return true, fmt.Sprintf("%s and kNN %.4g at chance %.4g", geo, knnTop1, chance)
}

// NotConverged reports the failure that is not a collapse: the embeddings
// are spread out (Collapsed's geometric test fails) but the kNN accuracy is
// still within ChanceMargin of chance. Without a kNN accuracy it cannot tell
// and returns false.
func NotConverged(s Stats, knnTop1, chance float64) (bool, string) {
	if s.MO > CollapseMO || s.StdSqrtD < CollapseStdSqrtD {
		return false, "collapsed, see Collapsed"
	}
	if !knnGiven(knnTop1, chance) {
		return false, "kNN not measured"
	}
	if knnTop1 <= chance+ChanceMargin {
		return true, fmt.Sprintf("embeddings spread (m_o %.4g, std*sqrt(d) %.4g) but kNN %.4g at chance %.4g", s.MO, s.StdSqrtD, knnTop1, chance)
	}
	return false, fmt.Sprintf("kNN %.4g above chance %.4g", knnTop1, chance)
}
