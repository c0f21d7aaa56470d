package tensor

import (
	"testing"

	gt "gorgonia.org/tensor"
)

func TestDenseSharesMemory(t *testing.T) {
	x := New(2, 3)
	d := x.Dense()
	if err := d.SetAt(float32(7), 1, 2); err != nil {
		t.Fatal(err)
	}
	if x.Data[5] != 7 {
		t.Fatalf("write through Dense not seen: %v", x.Data)
	}
	y, err := FromDense(d)
	if err != nil {
		t.Fatal(err)
	}
	y.Data[0] = 3
	if x.Data[0] != 3 {
		t.Fatal("FromDense copied the data")
	}
}

func TestFromDenseRejectsOtherTypes(t *testing.T) {
	d := gt.New(gt.WithShape(2), gt.WithBacking([]float64{1, 2}))
	if _, err := FromDense(d); err == nil {
		t.Fatal("float64 dense accepted")
	}
}

func TestGorgoniaMatMulUsesOurGEMM(t *testing.T) {
	a, _ := FromSlice([]float32{1, 2, 3, 4, 5, 6}, 2, 3)
	b, _ := FromSlice([]float32{1, 0, 0, 1, 1, 1}, 3, 2)
	c, err := gt.MatMul(a.Dense(), b.Dense())
	if err != nil {
		t.Fatal(err)
	}
	want := []float32{4, 5, 10, 11}
	got := c.Data().([]float32)
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("MatMul = %v, want %v", got, want)
		}
	}
}

func TestReshape(t *testing.T) {
	x := New(4, 6)
	y, err := x.Reshape(2, -1, 3)
	if err != nil || !EqualShapes(y.Shape, []int{2, 4, 3}) {
		t.Fatalf("reshape = %v, %v", y, err)
	}
	if _, err := x.Reshape(5, -1); err == nil {
		t.Fatal("bad reshape accepted")
	}
	if _, err := FromSlice(make([]float32, 5), 2, 3); err == nil {
		t.Fatal("bad FromSlice accepted")
	}
}

func TestNumelRejectsOverflow(t *testing.T) {
	for _, shape := range [][]int{{-1, 2}, {7, 7905747460161236407}, {1 << 40, 1 << 24}} {
		if n := Numel(shape); n != -1 {
			t.Errorf("Numel(%v) = %d, want -1", shape, n)
		}
	}
	if n := Numel([]int{0, 1 << 62, 1 << 62}); n != 0 {
		t.Errorf("Numel with a zero dimension = %d, want 0", n)
	}
	if _, err := FromSlice(nil, 1<<40, 1<<24); err == nil {
		t.Error("FromSlice accepted an overflowing shape")
	}
}
