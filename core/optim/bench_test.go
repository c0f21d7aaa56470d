package optim

import (
	"fmt"
	"testing"

	"github.com/sslrun/sslrun/core/parallel"
)

// w1Params is a W1-sized parameter set: the convolutions and BatchNorms of
// a CIFAR ResNet-18 up to layer3 (2.77M floats in 39 tensors), so the mix of
// large weights and tiny norm vectors is realistic.
func w1Params() []*Param {
	type conv struct{ out, in, k int }
	convs := []conv{{64, 3, 3}}
	for i := 0; i < 4; i++ {
		convs = append(convs, conv{64, 64, 3})
	}
	convs = append(convs, conv{128, 64, 3}, conv{128, 128, 3}, conv{128, 64, 1}, conv{128, 128, 3}, conv{128, 128, 3})
	convs = append(convs, conv{256, 128, 3}, conv{256, 256, 3}, conv{256, 128, 1}, conv{256, 256, 3}, conv{256, 256, 3})
	var ps []*Param
	add := func(name string, kind ParamKind, shape ...int) {
		n := 1
		for _, d := range shape {
			n *= d
		}
		p := &Param{Name: name, Value: make([]float32, n), Grad: make([]float32, n), Shape: shape, Kind: kind}
		for i := range p.Value {
			p.Value[i] = float32(i%97)*0.01 - 0.4
			p.Grad[i] = float32(i%89)*1e-3 - 0.04
		}
		ps = append(ps, p)
	}
	for i, c := range convs {
		add(fmt.Sprintf("conv%d.weight", i), Weight, c.out, c.in, c.k, c.k)
		add(fmt.Sprintf("bn%d.weight", i), Norm, c.out)
		add(fmt.Sprintf("bn%d.bias", i), Norm, c.out)
	}
	return ps
}

func numel(ps []*Param) int {
	n := 0
	for _, p := range ps {
		n += len(p.Value)
	}
	return n
}

// BenchmarkStep reports one optimizer step over the W1 parameter set
// (threads=2 turns on SetParallel with two core/parallel threads); the
// MB/s column counts 4 bytes per parameter (divide ns/op by 2.77M for ns
// per parameter).
func BenchmarkStep(b *testing.B) {
	for _, c := range []struct {
		name string
		alg  Algorithm
		g    Group
	}{
		{"sgd", SGD, Group{Momentum: 0.9, WeightDecay: 5e-4}},
		{"lars", LARS, Group{Momentum: 0.9, WeightDecay: 1e-6, Eta: 0.02, Eps: 1e-8, ExcludeBiasNorm: true, NoDecayBiasNorm: true}},
		{"adamw", AdamW, Group{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.05}},
	} {
		for _, threads := range []int{1, 2} {
			b.Run(fmt.Sprintf("%s/threads=%d", c.name, threads), func(b *testing.B) {
				defer parallel.SetThreads(parallel.SetThreads(threads))
				ps := w1Params()
				o := newOpt(b, c.alg, c.g, ps)
				o.SetParallel(threads > 1)
				o.Step(1e-3)
				b.SetBytes(int64(4 * numel(ps)))
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					o.Step(1e-3)
				}
			})
		}
	}
}

// BenchmarkEMA reports one BYOL target update over the W1 parameter set.
func BenchmarkEMA(b *testing.B) {
	for _, threads := range []int{1, 2} {
		b.Run(fmt.Sprintf("threads=%d", threads), func(b *testing.B) {
			defer parallel.SetThreads(parallel.SetThreads(threads))
			on, tg := w1Params(), w1Params()
			e, err := NewEMA(on, tg)
			if err != nil {
				b.Fatal(err)
			}
			e.SetParallel(threads > 1)
			b.SetBytes(int64(4 * numel(on)))
			b.ReportAllocs()
			for b.Loop() {
				e.Update(0.996)
			}
		})
	}
}
