// Package tensor holds sslrun's n-dimensional float32 array and its bridge
// to gorgonia.org/tensor.
//
// T is deliberately thin: a shape and a row-major []float32 that the kernels
// index directly. The data may live in a Go slice or in memory sslrun owns
// elsewhere (a shared-memory arena mapped into several processes); T never
// copies it unless asked. Dense gives the same memory as a *tensor.Dense for
// code written against gorgonia's API, and Use routes that API's matrix
// products to sslrun's own GEMM.
package tensor

import (
	"fmt"
	"math"
	"strings"
)

// T is a dense, row-major float32 tensor. Shape and Data are exported so that
// kernels can work on them without indirection; len(Data) equals the product
// of Shape for every T this package returns.
type T struct {
	Shape []int
	Data  []float32
}

// New returns a zero-filled tensor of the given shape.
// It panics on a negative or overflowing shape, a programmer error.
func New(shape ...int) *T {
	n := numel(shape)
	if n < 0 {
		panic(fmt.Sprintf("tensor: invalid shape %v", shape))
	}
	return &T{Shape: append([]int(nil), shape...), Data: make([]float32, n)}
}

// FromSlice returns a tensor over data (not copied) with the given shape.
func FromSlice(data []float32, shape ...int) (*T, error) {
	if n := numel(shape); n != len(data) {
		return nil, fmt.Errorf("tensor: shape %v needs %d values, have %d", shape, n, len(data))
	}
	return &T{Shape: append([]int(nil), shape...), Data: data}, nil
}

// Len is the number of elements.
func (t *T) Len() int { return len(t.Data) }

// Dims is the number of dimensions.
func (t *T) Dims() int { return len(t.Shape) }

// Dim returns the size of dimension i; negative i counts from the end.
func (t *T) Dim(i int) int {
	if i < 0 {
		i += len(t.Shape)
	}
	return t.Shape[i]
}

// Rows is the size of the first dimension and Cols the product of the rest:
// the matrix view that linear layers and losses use.
func (t *T) Rows() int {
	if len(t.Shape) == 0 {
		return 1
	}
	return t.Shape[0]
}

// Cols is the product of all dimensions but the first.
func (t *T) Cols() int {
	if len(t.Shape) == 0 {
		return 1
	}
	return numel(t.Shape[1:])
}

// Reshape returns a view of the same data with another shape. One dimension
// may be -1 and is then inferred.
func (t *T) Reshape(shape ...int) (*T, error) {
	shape = append([]int(nil), shape...)
	infer, known := -1, 1
	for i, d := range shape {
		if d == -1 {
			if infer >= 0 {
				return nil, fmt.Errorf("tensor: reshape %v: more than one -1", shape)
			}
			infer = i
			continue
		}
		known *= d
	}
	if infer >= 0 {
		if known == 0 || len(t.Data)%known != 0 {
			return nil, fmt.Errorf("tensor: cannot reshape %v to %v", t.Shape, shape)
		}
		shape[infer] = len(t.Data) / known
	}
	if numel(shape) != len(t.Data) {
		return nil, fmt.Errorf("tensor: cannot reshape %v to %v", t.Shape, shape)
	}
	return &T{Shape: shape, Data: t.Data}, nil
}

// Clone returns a deep copy.
func (t *T) Clone() *T {
	return &T{Shape: append([]int(nil), t.Shape...), Data: append([]float32(nil), t.Data...)}
}

// CopyFrom copies src's values into t; the element counts must match.
func (t *T) CopyFrom(src *T) error {
	if len(src.Data) != len(t.Data) {
		return fmt.Errorf("tensor: copy %v into %v: sizes differ", src.Shape, t.Shape)
	}
	copy(t.Data, src.Data)
	return nil
}

// Zero sets every element to 0.
func (t *T) Zero() { clear(t.Data) }

// Fill sets every element to v.
func (t *T) Fill(v float32) {
	for i := range t.Data {
		t.Data[i] = v
	}
}

// SameShape reports whether t and u have identical shapes.
func (t *T) SameShape(u *T) bool { return EqualShapes(t.Shape, u.Shape) }

// EqualShapes reports whether two shapes are identical.
func EqualShapes(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// String prints the shape and, for small tensors, the values.
func (t *T) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "tensor%v", t.Shape)
	if len(t.Data) <= 16 {
		fmt.Fprintf(&b, "%v", t.Data)
	}
	return b.String()
}

// Numel is the number of elements of a tensor of the given shape, or -1 when
// a dimension is negative or the product overflows an int. Shapes read from
// files or other processes must be checked with it before they size anything.
func Numel(shape []int) int { return numel(shape) }

func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		if d < 0 {
			return -1
		}
		if d != 0 && n > math.MaxInt/d {
			return -1
		}
		n *= d
	}
	return n
}
