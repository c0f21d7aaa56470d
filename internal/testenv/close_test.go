package testenv

import (
	"math"
	"testing"
)

func TestMismatch(t *testing.T) {
	inf, nan := float32(math.Inf(-1)), float32(math.NaN())
	cases := []struct {
		got, want []float32
		ok        bool
	}{
		{[]float32{1, 2}, []float32{1, 2}, true},
		{[]float32{1.00001}, []float32{1}, true},
		{[]float32{1.01}, []float32{1}, false},
		{[]float32{5}, []float32{inf}, false},
		{[]float32{inf}, []float32{inf}, true},
		{[]float32{5}, []float32{nan}, false},
		{[]float32{nan}, []float32{nan}, true},
		{[]float32{nan}, []float32{1}, false},
		{[]float32{1}, []float32{1, 2}, false},
	}
	for _, c := range cases {
		if m := Mismatch(c.got, c.want, RelTol, AbsTol); (m == "") != c.ok {
			t.Errorf("Mismatch(%v, %v) = %q, want ok=%v", c.got, c.want, m, c.ok)
		}
	}
}
