package tensor

import (
	"fmt"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
	gt "gorgonia.org/tensor"

	"github.com/sslrun/sslrun/core/gemm"
)

// Dense returns a *gorgonia tensor.Dense over t's memory: writes through
// either are seen by both. Plugin authors get tensors in this form.
func (t *T) Dense() *gt.Dense {
	shape := t.Shape
	if len(shape) == 0 {
		shape = []int{1}
	}
	return gt.New(gt.WithShape(shape...), gt.WithBacking(t.Data))
}

// FromDense returns a T over d's memory without copying. d must hold
// float32 values in its natural row-major layout (not a transposed or
// sliced view); Materialize such views first.
func FromDense(d *gt.Dense) (*T, error) {
	if d.Dtype() != gt.Float32 {
		return nil, fmt.Errorf("tensor: dense of %v, want float32", d.Dtype())
	}
	if d.RequiresIterator() || !d.DataOrder().IsRowMajor() {
		return nil, fmt.Errorf("tensor: dense view of shape %v is not contiguous row-major", d.Shape())
	}
	data, ok := d.Data().([]float32)
	if !ok {
		// A one-element Dense reports a scalar from Data.
		data = d.Float32s()
	}
	return FromSlice(data, d.Shape()...)
}

// gorgoniaBLAS is gonum's pure-Go BLAS with Sgemm replaced by sslrun's own.
type gorgoniaBLAS struct{ gonum.Implementation }

func (gorgoniaBLAS) Sgemm(tA, tB blas.Transpose, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	gemm.Sgemm(tA != blas.NoTrans, tB != blas.NoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// UseFastBLAS makes gorgonia's MatMul, MatVecMul and friends on float32 run
// on sslrun's GEMM. It is called when this package is loaded, so any program
// that links sslrun's core gets it.
func UseFastBLAS() { gt.Use(gorgoniaBLAS{}) }

func init() { UseFastBLAS() }
