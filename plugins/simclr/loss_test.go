package simclr

import (
	"path/filepath"
	"testing"

	"github.com/sslrun/sslrun/core/autodiff"
	"github.com/sslrun/sslrun/internal/golden"
)

// Fixtures from tools/golden/gen_losses.py.

func TestNTXentGolden(t *testing.T) {
	for _, temp := range []struct {
		file string
		t    float64
	}{{"ntxent_t0.1", 0.1}, {"ntxent_t0.5", 0.5}, {"ntxent_t1", 1}} {
		t.Run(temp.file, func(t *testing.T) {
			f := golden.Open(t, filepath.Join("testdata", temp.file+".safetensors"))
			v := golden.Params(t, f, "z1", "z2")
			tp := autodiff.NewTape()
			labels := make([]int, 2*v["z1"].Shape()[0])
			loss, err := NTXent(tp, v["z1"], v["z2"], temp.t, labels)
			if err != nil {
				t.Fatal(err)
			}
			golden.CheckLoss(t, f, tp, loss, v)
		})
	}
}

func TestTripletGolden(t *testing.T) {
	for _, neg := range []Negative{NegativeFull, NegativeCenter, NegativeResidual} {
		t.Run(string(neg), func(t *testing.T) {
			f := golden.Open(t, filepath.Join("testdata", "triplet_"+string(neg)+".safetensors"))
			v := golden.Params(t, f, "z1", "z2")
			tp := autodiff.NewTape()
			loss, err := Triplet(tp, v["z1"], v["z2"], neg)
			if err != nil {
				t.Fatal(err)
			}
			golden.CheckLoss(t, f, tp, loss, v)
		})
	}
}

func TestBadOptions(t *testing.T) {
	tp := autodiff.NewTape()
	f := golden.Open(t, filepath.Join("testdata", "triplet_full.safetensors"))
	v := golden.Params(t, f, "z1", "z2")
	if _, err := Triplet(tp, v["z1"], v["z2"], "bogus"); err == nil {
		t.Error("unknown negative accepted")
	}
	if _, err := NTXent(tp, v["z1"], v["z2"], 0, make([]int, 16)); err == nil {
		t.Error("zero temperature accepted")
	}
	if _, err := NTXent(tp, v["z1"], v["z2"], 0.5, make([]int, 3)); err == nil {
		t.Error("short label buffer accepted")
	}
}
