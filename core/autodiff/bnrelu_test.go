package autodiff

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/sslrun/sslrun/core/tensor"
)

// TestBatchNormReLUMatchesComposite checks that the fused op gives the
// values, gradients and running statistics of ReLU(BatchNorm(x)) bit for
// bit, in both modes, for [N, C] and [N, C, H, W] inputs, with x also
// feeding another op (so that its gradient accumulates).
func TestBatchNormReLUMatchesComposite(t *testing.T) {
	for _, shape := range [][]int{{16, 5}, {3, 4, 5, 6}, {2, 3, 4, 4}} {
		for _, train := range []bool{true, false} {
			t.Run(fmt.Sprintf("%v/train%v", shape, train), func(t *testing.T) {
				type result struct {
					y, dx, dg, db, rm, rv []float32
				}
				run := func(fused bool) result {
					rng := rand.New(rand.NewPCG(21, 22))
					c := shape[1]
					x := randT(rng, shape...)
					gamma, beta := NewParam("g", randT(rng, c)), NewParam("b", randT(rng, c))
					st := NewBNState(c)
					for i := range st.RunningVar.Data {
						st.RunningVar.Data[i] = 0.5 + float32(i)
					}
					r := randT(rng, shape...)
					tp := NewTape()
					xl := tp.Leaf(x)
					var y *Var
					if fused {
						y = tp.BatchNormReLU(xl, gamma, beta, st, train)
					} else {
						y = tp.ReLU(tp.BatchNorm(xl, gamma, beta, st, train))
					}
					loss := tp.Add(tp.Sum(tp.Mul(y, tp.Input(r))), tp.Sum(tp.Square(xl)))
					if err := tp.Backward(loss); err != nil {
						t.Fatal(err)
					}
					cp := func(s []float32) []float32 { return append([]float32(nil), s...) }
					return result{cp(y.Value.Data), cp(xl.Grad.Data), cp(gamma.Grad.Data), cp(beta.Grad.Data),
						cp(st.RunningMean.Data), cp(st.RunningVar.Data)}
				}
				want, got := run(false), run(true)
				zeros := 0
				for _, v := range want.y {
					if v == 0 {
						zeros++
					}
				}
				if zeros == 0 || zeros == len(want.y) {
					t.Fatalf("%d of %d outputs are zero: the ReLU is not exercised", zeros, len(want.y))
				}
				for _, p := range []struct {
					name      string
					got, want []float32
				}{{"y", got.y, want.y}, {"dx", got.dx, want.dx}, {"dgamma", got.dg, want.dg},
					{"dbeta", got.db, want.db}, {"running_mean", got.rm, want.rm}, {"running_var", got.rv, want.rv}} {
					for i := range p.want {
						if math.Float32bits(p.got[i]) != math.Float32bits(p.want[i]) {
							t.Fatalf("%s[%d] = %v, composite ops give %v", p.name, i, p.got[i], p.want[i])
						}
					}
				}
			})
		}
	}
}

// TestBatchNormReLUNoGrad runs the fused op without recording (the BYOL
// target network) and checks the values.
func TestBatchNormReLUNoGrad(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 24))
	x := randT(rng, 4, 3, 2, 2)
	tp := NewTape()
	tp.SetGrad(false)
	y := tp.BatchNormReLU(tp.Input(x), nil, nil, nil, true)
	want := tp.ReLU(tp.BatchNorm(tp.Input(x), nil, nil, nil, true))
	if tp.Len() != 0 {
		t.Fatalf("no-grad mode recorded %d ops", tp.Len())
	}
	if !tensor.EqualShapes(y.Value.Shape, want.Value.Shape) {
		t.Fatalf("shape %v, want %v", y.Value.Shape, want.Value.Shape)
	}
	for i, v := range want.Value.Data {
		if y.Value.Data[i] != v {
			t.Fatalf("y[%d] = %v, want %v", i, y.Value.Data[i], v)
		}
	}
}

// TestAddReLUMatchesComposite checks AddReLU against ReLU(Add(a, b)) bit
// for bit, values and gradients, with and without the AVX2 loops, on
// lengths with a remainder, special values (NaN, ±0, sums that are -0)
// and an operand added to itself.
func TestAddReLUMatchesComposite(t *testing.T) {
	prev := ewAsm
	defer func() { ewAsm = prev }()
	negZero := float32(math.Copysign(0, -1))
	nan := float32(math.NaN())
	for _, asm := range []bool{false, prev} {
		ewAsm = asm
		for _, n := range []int{7, 8, 29, 1 << 16} {
			for _, self := range []bool{false, true} {
				t.Run(fmt.Sprintf("asm%v/n%d/self%v", asm, n, self), func(t *testing.T) {
					type result struct{ y, ga, gb []float32 }
					run := func(fused bool) result {
						rng := rand.New(rand.NewPCG(25, uint64(n)))
						a, b := randT(rng, n), randT(rng, n)
						a.Data[0], b.Data[0] = negZero, negZero
						a.Data[1], b.Data[1] = nan, 1
						a.Data[2], b.Data[2] = 0, negZero
						a.Data[3], b.Data[3] = 2, -2
						r := randT(rng, n)
						tp := NewTape()
						al, bl := tp.Leaf(a), tp.Leaf(b)
						if self {
							bl = al
						}
						var y *Var
						if fused {
							y = tp.AddReLU(al, bl)
						} else {
							y = tp.ReLU(tp.Add(al, bl))
						}
						if err := tp.Backward(tp.Sum(tp.Mul(y, tp.Input(r)))); err != nil {
							t.Fatal(err)
						}
						cp := func(s []float32) []float32 { return append([]float32(nil), s...) }
						return result{cp(y.Value.Data), cp(al.Grad.Data), cp(bl.Grad.Data)}
					}
					want, got := run(false), run(true)
					for _, p := range []struct {
						name      string
						got, want []float32
					}{{"y", got.y, want.y}, {"grad a", got.ga, want.ga}, {"grad b", got.gb, want.gb}} {
						for i := range p.want {
							if math.Float32bits(p.got[i]) != math.Float32bits(p.want[i]) {
								t.Fatalf("%s[%d] = %v, composite ops give %v", p.name, i, p.got[i], p.want[i])
							}
						}
					}
					if !self && (!math.IsNaN(float64(got.y[1])) || math.Float32bits(got.y[0]) != 0 || math.Float32bits(got.y[3]) != 0) {
						t.Fatalf("special values: y[0:4] = %v, want [+0 NaN 0 +0]", got.y[:4])
					}
				})
			}
		}
	}
}
