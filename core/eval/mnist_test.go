package eval

import (
	"testing"

	"github.com/sslrun/sslrun/core/data"
	"github.com/sslrun/sslrun/internal/testenv"
)

// mnistSet returns the first n images of an MNIST split as raw pixel
// features in [0, 1] (784-d), skipping the test when MNIST is absent.
func mnistSet(t testing.TB, split data.Split, n int) Set {
	t.Helper()
	d, err := data.LoadMNIST("", split)
	if data.IsNotFound(err) {
		t.Skipf("MNIST not available: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if n <= 0 || n > d.Len() {
		n = d.Len()
	}
	dim := d.C * d.H * d.W
	s := Set{Name: d.Name, X: make([]float32, n*dim), Dim: dim, Labels: d.Labels[:n]}
	for i, v := range d.Pix[:n*dim] {
		s.X[i] = float32(v) / 255
	}
	if n < d.Len() {
		s.Name += "[:" + itoa(n) + "]"
	}
	return s
}

// TestMNISTPixels is the real-data sanity check on raw MNIST pixels: a
// 10k/2k subset, kNN with solo-learn's k=20 and a 30-epoch linear probe.
func TestMNISTPixels(t *testing.T) {
	train := mnistSet(t, data.Train, 10000)
	test := mnistSet(t, data.Test, 2000)
	res, err := KNN(train, test, SoloKNN())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("knn k=20 T=0.07: top1 %.4f top5 %.4f", res.Top1, res.Top5)
	// torch on the same subset (F.normalize, topk, exp(s/0.07)) gives
	// 0.9305; the 96-97% usually quoted needs the full 60k train set
	// (TestMNISTPixelsFull).
	if res.Top1 < 0.925 || res.Top5 < 0.99 {
		t.Errorf("knn on MNIST pixels: top1 %.4f top5 %.4f, want >= 0.925 / 0.99", res.Top1, res.Top5)
	}
	cfg := DefaultLinear()
	cfg.Epochs = 30
	lin, err := LinearProbe(train, test, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("linear 30 epochs: train %.4f test %.4f top5 %.4f", lin.TrainTop1, lin.Top1, lin.Top5)
	// torch with the same protocol (nn.Linear, SGD 0.1 m0.9, batch 256,
	// per-step cosine, 30 epochs) gives train 0.940, test 0.884: 10k raw
	// pixels overfit; the full train set reaches ~92% (TestMNISTPixelsFull).
	if lin.Top1 < 0.875 || lin.TrainTop1 < 0.93 {
		t.Errorf("linear probe on MNIST pixels: train %.4f test %.4f, want >= 0.93 / 0.875", lin.TrainTop1, lin.Top1)
	}
}

// TestMNISTPixelsFull runs both protocols on the full 60k/10k MNIST.
func TestMNISTPixelsFull(t *testing.T) {
	testenv.Long(t)
	train := mnistSet(t, data.Train, 0)
	test := mnistSet(t, data.Test, 0)
	// Measured: k=20 0.9712, k=200 0.9508 (a large k blurs raw pixels;
	// lightly's k=200 is meant for learned features).
	for _, c := range []struct {
		cfg  KNNConfig
		want float64
	}{{SoloKNN(), 0.965}, {LightlyKNN(), 0.945}} {
		res, err := KNN(train, test, c.cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("knn k=%d T=%v: top1 %.4f top5 %.4f", c.cfg.K, c.cfg.T, res.Top1, res.Top5)
		if res.Top1 < c.want {
			t.Errorf("knn k=%d: top1 %.4f, want >= %v", c.cfg.K, res.Top1, c.want)
		}
	}
	lin, err := LinearProbe(train, test, DefaultLinear())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("linear 100 epochs: train %.4f test %.4f", lin.TrainTop1, lin.Top1)
	// Measured: train 0.9368, test 0.9259.
	if lin.Top1 < 0.91 {
		t.Errorf("linear: top1 %.4f, want >= 0.91", lin.Top1)
	}
}
