package rundb

import (
	"encoding/json"
	"math"
)

// jsonFloat encodes a float64 for JSON, which has no NaN or infinities:
// NaN becomes null, infinities the strings "+Inf" and "-Inf" (the same
// convention as Format's JSON output).
type jsonFloat float64

func (f jsonFloat) MarshalJSON() ([]byte, error) {
	x := float64(f)
	switch {
	case math.IsNaN(x):
		return []byte("null"), nil
	case math.IsInf(x, 1):
		return []byte(`"+Inf"`), nil
	case math.IsInf(x, -1):
		return []byte(`"-Inf"`), nil
	}
	return json.Marshal(x)
}

func jsonFloatPtr(p *float64) *jsonFloat {
	if p == nil {
		return nil
	}
	f := jsonFloat(*p)
	return &f
}

// MarshalJSON encodes NaN (not measured) as null.
func (e Evaluation) MarshalJSON() ([]byte, error) {
	type plain Evaluation
	return json.Marshal(struct {
		plain
		Temperature jsonFloat `json:"temperature,omitempty"`
		Epoch       jsonFloat `json:"epoch"`
		Top1        jsonFloat `json:"top1"`
		Top5        jsonFloat `json:"top5"`
	}{plain(e), jsonFloat(e.Temperature), jsonFloat(e.Epoch), jsonFloat(e.Top1), jsonFloat(e.Top5)})
}

// MarshalJSON encodes infinities (a diverged loss) as "+Inf"/"-Inf".
func (s Summary) MarshalJSON() ([]byte, error) {
	type plain Summary
	return json.Marshal(struct {
		plain
		Last      *jsonFloat `json:"last"`
		LastEpoch jsonFloat  `json:"last_epoch"`
		Min       *jsonFloat `json:"min"`
		Max       *jsonFloat `json:"max"`
		Best      *jsonFloat `json:"best,omitempty"`
	}{plain(s), jsonFloatPtr(s.Last), jsonFloat(s.LastEpoch), jsonFloatPtr(s.Min), jsonFloatPtr(s.Max), jsonFloatPtr(s.Best)})
}

// MarshalJSON encodes a missing mean or std (NaN) as null.
func (s Stat) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Mean jsonFloat `json:"mean"`
		Std  jsonFloat `json:"std"`
		N    int       `json:"n"`
	}{jsonFloat(s.Mean), jsonFloat(s.Std), s.N})
}
