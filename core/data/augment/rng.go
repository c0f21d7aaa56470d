package augment

import "math"

// RNG is a small SplitMix64 generator. It is a value type that costs nothing
// to create, so every (sample, view) gets its own stream derived from
// (seed, epoch, index, view) and results do not depend on which worker
// goroutine handles a sample.
type RNG struct{ s uint64 }

const golden = 0x9e3779b97f4a7c15

func mix64(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// NewRNG returns a generator seeded from seed.
func NewRNG(seed uint64) RNG { return RNG{s: mix64(seed + golden)} }

// Derive returns an independent generator for the tuple (seed, keys...), for
// example (seed, epoch, sample index, view). Each key is folded in with a
// full avalanche so nearby tuples give unrelated streams.
func Derive(seed uint64, keys ...uint64) RNG {
	h := mix64(seed ^ 0x5851f42d4c957f2d)
	for i, k := range keys {
		h = mix64(h ^ mix64(k+uint64(i+1)*golden))
	}
	return RNG{s: h}
}

// Uint64 returns the next 64 random bits.
func (r *RNG) Uint64() uint64 {
	r.s += golden
	return mix64(r.s)
}

// Float64 returns a uniform value in [0,1) with 53 random bits.
func (r *RNG) Float64() float64 { return float64(r.Uint64()>>11) * (1.0 / (1 << 53)) }

// Uniform returns a uniform value in [lo,hi), like torch's uniform_(lo, hi).
func (r *RNG) Uniform(lo, hi float64) float64 { return lo + (hi-lo)*r.Float64() }

// Intn returns a uniform integer in [0,n) without modulo bias (Lemire's
// method). It panics if n <= 0 (programmer error).
func (r *RNG) Intn(n int) int {
	if n <= 0 {
		panic("augment: Intn with n <= 0")
	}
	un := uint64(n)
	hi, lo := mulhilo(r.Uint64(), un)
	if lo < un {
		thresh := -un % un
		for lo < thresh {
			hi, lo = mulhilo(r.Uint64(), un)
		}
	}
	return int(hi)
}

func mulhilo(a, b uint64) (hi, lo uint64) {
	const mask32 = 1<<32 - 1
	a0, a1 := a&mask32, a>>32
	b0, b1 := b&mask32, b>>32
	w0 := a0 * b0
	t := a1*b0 + w0>>32
	w1 := t&mask32 + a0*b1
	hi = a1*b1 + t>>32 + w1>>32
	lo = a * b
	return
}

// Bernoulli reports true with probability p, as torchvision's
// `torch.rand(1) < p`.
func (r *RNG) Bernoulli(p float64) bool { return r.Float64() < p }

// Shuffle permutes idx in place (Fisher-Yates).
func (r *RNG) Shuffle(idx []int) {
	for i := len(idx) - 1; i > 0; i-- {
		j := r.Intn(i + 1)
		idx[i], idx[j] = idx[j], idx[i]
	}
}

// roundHalfEven matches Python 3's round(), used by torchvision's
// RandomResizedCrop.get_params.
func roundHalfEven(x float64) int { return int(math.RoundToEven(x)) }
