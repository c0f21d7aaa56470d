// Package tensortest holds tensor helpers shared by sslrun's tests. It is
// apart from internal/testenv, which core/gemm's tests use and so cannot
// import core/tensor (which imports core/gemm).
package tensortest

import (
	"math/rand/v2"

	"github.com/sslrun/sslrun/core/tensor"
)

// Randn returns a tensor of the given shape filled with standard normal
// values from rng.
func Randn(rng *rand.Rand, shape ...int) *tensor.T {
	t := tensor.New(shape...)
	for i := range t.Data {
		t.Data[i] = float32(rng.NormFloat64())
	}
	return t
}
