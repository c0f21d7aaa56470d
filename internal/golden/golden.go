// Package golden loads PyTorch golden fixtures (safetensors files written by
// the scripts in tools/golden) into tests and compares results with them.
package golden

import (
	"testing"

	"github.com/sslrun/sslrun/core/autodiff"
	"github.com/sslrun/sslrun/core/safetensors"
	"github.com/sslrun/sslrun/core/tensor"
	"github.com/sslrun/sslrun/internal/testenv"
)

// Open reads a fixture file or fails the test.
func Open(t testing.TB, path string) *safetensors.File {
	t.Helper()
	f, err := safetensors.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// Tensor returns a named tensor of f or fails the test.
func Tensor(t testing.TB, f *safetensors.File, name string) *tensor.T {
	t.Helper()
	v, err := f.Tensor(name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// Params returns the named tensors of f as parameters, so that Backward
// accumulates their gradients.
func Params(t testing.TB, f *safetensors.File, names ...string) map[string]*autodiff.Var {
	t.Helper()
	out := make(map[string]*autodiff.Var, len(names))
	for _, n := range names {
		out[n] = autodiff.NewParam(n, Tensor(t, f, n))
	}
	return out
}

// Check compares got with the fixture's tensor name within the golden
// tolerances and reports a mismatch as a test error.
func Check(t testing.TB, f *safetensors.File, name string, got []float32) {
	t.Helper()
	want := Tensor(t, f, name)
	if m := testenv.Mismatch(got, want.Data, testenv.RelTol, testenv.AbsTol); m != "" {
		t.Errorf("%s: %s", name, m)
	}
}

// CheckLoss runs Backward from loss and compares the loss with the fixture's
// "loss" and each parameter's gradient with its "grad.<name>".
func CheckLoss(t testing.TB, f *safetensors.File, tp *autodiff.Tape, loss *autodiff.Var, params map[string]*autodiff.Var) {
	t.Helper()
	if err := tp.Backward(loss); err != nil {
		t.Fatal(err)
	}
	Check(t, f, "loss", []float32{loss.Item()})
	for n, v := range params {
		Check(t, f, "grad."+n, v.Grad.Data)
	}
}
