package nn

import (
	"math"
	"math/rand/v2"
)

// DefaultBound is PyTorch 1.13's default initialisation bound for the
// weight and bias of a Linear or Conv2d layer with the given fan-in:
// weight ~ kaiming_uniform_(a=sqrt(5)), i.e. U(-b, b) with
// b = gain*sqrt(3/fan_in), gain = sqrt(2/(1+a^2)) = sqrt(1/3), so
// b = 1/sqrt(fan_in); bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
func DefaultBound(fanIn int) float64 {
	if fanIn <= 0 {
		return 0
	}
	return 1 / math.Sqrt(float64(fanIn))
}

// Init re-initialises every parameter and buffer of m as PyTorch 1.13
// does when it constructs the layers: Linear/Conv2d weights and biases
// U(-1/sqrt(fan_in), 1/sqrt(fan_in)), BatchNorm weight 1 and bias 0,
// running_mean 0, running_var 1, num_batches_tracked 0; the bias-only
// predictor's bias 0. The distribution matches PyTorch; the values come
// from rng and so cannot. A nil rng leaves Linear/Conv weights and biases
// zero: constructors take it to skip the work for a model about to Load.
func Init(m Module, rng *rand.Rand) {
	m.Visit("", func(e Entry) { initEntry(e, rng) })
}

func initEntry(e Entry, rng *rand.Rand) {
	switch e.Kind {
	case KindWeight, KindBias:
		b := DefaultBound(e.FanIn)
		d := e.Param.Value.Data
		if b == 0 || rng == nil {
			clear(d)
			return
		}
		for i := range d {
			d[i] = float32((2*rng.Float64() - 1) * b)
		}
	case KindNormWeight, KindRunningVar:
		e.Tensor().Fill(1)
	case KindNormBias, KindRunningMean:
		e.Tensor().Zero()
	case KindNumBatches:
		*e.Count = 0
	}
}

// The hash initialisation below is a deterministic data source shared with
// tools/golden/gen_nn.py, which implements the same formula in NumPy: the
// golden tests of the W1/W2 models generate their megabytes of weights and
// inputs on both sides instead of storing them. It is not what a training
// run uses.

// Hash32 is the 32-bit hash of (name, i): FNV-1a of the name, XOR i times
// the golden-ratio constant, then murmur3's fmix32 finaliser.
func Hash32(name string, i int) uint32 {
	h := uint32(0x811C9DC5)
	for j := 0; j < len(name); j++ {
		h ^= uint32(name[j])
		h *= 0x01000193
	}
	x := h ^ uint32(i)*0x9E3779B9
	x ^= x >> 16
	x *= 0x85EBCA6B
	x ^= x >> 13
	x *= 0xC2B2AE35
	x ^= x >> 16
	return x
}

// HashUniform fills dst with float32(center + (2u-1)*bound), u the top 24
// bits of Hash32(name, i) over 2^24, computed in float64 and rounded once.
func HashUniform(dst []float32, name string, center, bound float64) {
	for i := range dst {
		u := float64(Hash32(name, i)>>8) / (1 << 24)
		// The float64 conversion forbids fusing into an FMA, which would
		// round differently from NumPy.
		dst[i] = float32(center + float64((2*u-1)*bound))
	}
}

// HashInit sets every parameter of m from HashUniform with the entry's
// prefixed state_dict name: Linear/Conv weights and biases with
// (center, bound) = (0, 1/sqrt(fan_in)), BN weight (1, 0.25), BN bias and
// the bias-only predictor's bias (0, 0.25). With buffers, running_mean and
// running_var get (0, 0.5) and (1, 0.5); otherwise buffers are untouched.
func HashInit(m Module, prefix string, buffers bool) {
	m.Visit(prefix, func(e Entry) {
		switch e.Kind {
		case KindWeight, KindBias:
			b := DefaultBound(e.FanIn)
			if e.FanIn == 0 {
				b = 0.25
			}
			HashUniform(e.Param.Value.Data, e.Name, 0, b)
		case KindNormWeight:
			HashUniform(e.Param.Value.Data, e.Name, 1, 0.25)
		case KindNormBias:
			HashUniform(e.Param.Value.Data, e.Name, 0, 0.25)
		case KindRunningMean:
			if buffers {
				HashUniform(e.Buffer.Data, e.Name, 0, 0.5)
			}
		case KindRunningVar:
			if buffers {
				HashUniform(e.Buffer.Data, e.Name, 1, 0.5)
			}
		}
	})
}

// SampleIndices returns the indices at which the golden fixtures sample a
// tensor of n elements: all of them if n <= k, else
// i_j = j*step + Hash32("sample."+name, j) mod step with step = n/k.
func SampleIndices(name string, n, k int) []int {
	if n <= k {
		idx := make([]int, n)
		for i := range idx {
			idx[i] = i
		}
		return idx
	}
	step := n / k
	idx := make([]int, k)
	for j := range idx {
		idx[j] = j*step + int(Hash32("sample."+name, j)%uint32(step))
	}
	return idx
}
