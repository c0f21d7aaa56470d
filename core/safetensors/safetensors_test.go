package safetensors

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sslrun/sslrun/core/tensor"
)

func TestRoundTrip(t *testing.T) {
	a, _ := tensor.FromSlice([]float32{1, -2, 3.5, 4, 5, 6}, 2, 3)
	b, _ := tensor.FromSlice([]float32{7}, 1)
	path := filepath.Join(t.TempDir(), "w.safetensors")
	if err := WriteFile(path, map[string]*tensor.T{"layer.weight": a, "bias": b}, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	f, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(f.Names(), ","); got != "bias,layer.weight" {
		t.Fatalf("names = %s", got)
	}
	if f.Metadata["format"] != "pt" {
		t.Fatalf("metadata = %v", f.Metadata)
	}
	got, err := f.Tensor("layer.weight")
	if err != nil {
		t.Fatal(err)
	}
	if !got.SameShape(a) {
		t.Fatalf("shape %v", got.Shape)
	}
	for i := range a.Data {
		if got.Data[i] != a.Data[i] {
			t.Fatalf("data %v, want %v", got.Data, a.Data)
		}
	}
	raw, _ := os.ReadFile(path)
	if hl := binary.LittleEndian.Uint64(raw); (8+hl)%8 != 0 {
		t.Fatalf("data not 8-byte aligned: header length %d", hl)
	}
}

func TestCorruptFiles(t *testing.T) {
	good, err := Encode(map[string]*tensor.T{"x": tensor.New(4)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string][]byte{
		"short":          good[:4],
		"huge header":    append([]byte{255, 255, 255, 255, 0, 0, 0, 0}, good[8:]...),
		"truncated data": good[:len(good)-4],
		"not json":       append(append([]byte{}, good[:8]...), []byte(strings.Repeat("x", len(good)-8))...),
	}
	// A shape whose element count overflows must not pass as a 1-value tensor.
	hdr := []byte(`{"x":{"dtype":"F32","shape":[7,7905747460161236407],"data_offsets":[0,4]}}`)
	overflow := make([]byte, 8, 8+len(hdr)+4)
	binary.LittleEndian.PutUint64(overflow, uint64(len(hdr)))
	cases["overflowing shape"] = append(append(overflow, hdr...), 0, 0, 0, 0)
	for name, raw := range cases {
		if _, err := Parse(raw); err == nil {
			t.Errorf("%s: parsed without error", name)
		}
	}
	if _, err := ReadFile(filepath.Join(t.TempDir(), "missing.safetensors")); err == nil || !strings.Contains(err.Error(), "missing.safetensors") {
		t.Errorf("missing file error does not name it: %v", err)
	}
}

func TestInt64RoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bn.safetensors")
	err := WriteFileMixed(path,
		map[string]*tensor.T{"1.weight": tensor.New(3)},
		map[string]Int64{"1.num_batches_tracked": {Shape: []int{}, Data: []int64{42}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	f, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	v, shape, err := f.Int64s("1.num_batches_tracked")
	if err != nil || len(shape) != 0 || len(v) != 1 || v[0] != 42 {
		t.Fatalf("got %v %v %v", v, shape, err)
	}
	if _, err := EncodeMixed(map[string]*tensor.T{"a": tensor.New(1)}, map[string]Int64{"a": {Shape: []int{1}, Data: []int64{1}}}, nil); err == nil {
		t.Fatal("duplicate name accepted")
	}
}

// TestPythonWriterFixture reads a file written by tools/golden/st.py, an
// independent implementation of the format.
func TestPythonWriterFixture(t *testing.T) {
	f, err := ReadFile("testdata/python.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	x, err := f.Tensor("x")
	if err != nil {
		t.Fatal(err)
	}
	want := []float32{0, 0.5, -1.25, 3, 1e-7, -2e10}
	for i, w := range want {
		if x.Data[i] != w {
			t.Fatalf("x = %v, want %v", x.Data, want)
		}
	}
	if !tensor.EqualShapes(x.Shape, []int{2, 3}) || f.Metadata["source"] != "st.py" {
		t.Fatalf("shape %v metadata %v", x.Shape, f.Metadata)
	}
	y, shape, err := f.Int64s("labels")
	if err != nil || len(y) != 3 || y[2] != -7 || shape[0] != 3 {
		t.Fatalf("labels %v %v %v", y, shape, err)
	}
}
