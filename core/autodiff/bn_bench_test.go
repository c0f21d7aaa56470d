package autodiff

import (
	"math/rand/v2"
	"testing"

	"github.com/sslrun/sslrun/core/kernel"
	"github.com/sslrun/sslrun/core/tensor"
)

// BenchmarkBatchNorm1d measures the tape's overhead over core/kernel: the
// tape's BatchNorm forward + backward (training mode, [512, 1024], plus the
// Mul and Sum that make a scalar loss) against calling the kernel's
// batch-norm functions directly on the same data.
func BenchmarkBatchNorm1d(b *testing.B) {
	const n, c = 512, 1024
	rng := rand.New(rand.NewPCG(1, 2))
	x := randT(rng, n, c)
	g := randT(rng, n, c)
	gamma := NewParam("g", randT(rng, c))
	beta := NewParam("b", randT(rng, c))
	st := NewBNState(c)
	b.Run("tape", func(b *testing.B) {
		tp := NewTape()
		xv := tensor.New(n, c)
		copy(xv.Data, x.Data)
		step := func() {
			tp.Reset()
			xl := tp.Leaf(xv)
			y := tp.BatchNorm(xl, gamma, beta, st, true)
			if err := tp.Backward(tp.Sum(tp.Mul(y, tp.Input(g)))); err != nil {
				b.Fatal(err)
			}
		}
		step() // warm the arena
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			step()
		}
	})
	b.Run("kernel", func(b *testing.B) {
		y, dx := make([]float32, n*c), make([]float32, n*c)
		mean, inv := make([]float32, c), make([]float32, c)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			kernel.BatchNormTrain(n, c, 1, x.Data, gamma.Value.Data, beta.Value.Data, y, mean, inv, st.RunningMean.Data, st.RunningVar.Data, 0.1, 1e-5)
			kernel.BatchNormBackward(n, c, 1, x.Data, g.Data, gamma.Value.Data, mean, inv, dx, gamma.Grad.Data, beta.Grad.Data, true)
		}
	})
}
