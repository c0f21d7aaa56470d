package decompose

import (
	"fmt"
	"strconv"

	"github.com/sslrun/sslrun/core/tensor"
)

// Metric is one named scalar for the run database. Key has no analyzer
// prefix ("decompose/" is added by the caller).
type Metric struct {
	Key     string
	Value   float64
	Context map[string]string
}

// Array is one named array for the run database (spectra).
type Array struct {
	Key     string
	Shape   []int
	Data    []float64
	Context map[string]string
}

// Options say what is measured and how it is recorded. Every function reads
// Tensor, Scope and Batch; the other fields are read by the functions named
// in their comments. The zero value is valid.
type Options struct {
	// Tensor names the measured tensor: "z" (projector output, the default),
	// "p" (predictor output) or "feature" (backbone feature).
	Tensor string
	// Scope is "batch" (one training batch, the default) or "eval" (an
	// evaluation set).
	Scope string
	// Batch is recorded as the "batch" context; 0 means the number of rows.
	// ||o|| has a 1/sqrt(rows) floor, so the default is what interprets it.
	Batch int
	// SkipSpectrum skips the eigen-decompositions (Embeddings): no eff_rank,
	// eff_rank_residual or spectra, but much cheaper for large d.
	SkipSpectrum bool
	// GradNormalized says the gradient given to Gradient already acts on the
	// normalized vectors (dL/dZ), instead of the raw dL/dz.
	GradNormalized bool
	// GradTangential projects a GradNormalized gradient onto the tangent
	// space of each row (removes its radial, no-op part) before splitting.
	GradTangential bool
}

func (o Options) context(rows int) map[string]string {
	t, s, b := o.Tensor, o.Scope, o.Batch
	if t == "" {
		t = "z"
	}
	if s == "" {
		s = "batch"
	}
	if b <= 0 {
		b = rows
	}
	return map[string]string{"tensor": t, "scope": s, "batch": strconv.Itoa(b)}
}

// matrix checks that x is a non-empty [N, ...] tensor with at least minRows
// rows and returns N and d (the product of the other dimensions).
func matrix(name string, x *tensor.T, minRows int) (n, d int, err error) {
	if x == nil || len(x.Shape) < 2 {
		return 0, 0, fmt.Errorf("decompose: %s: want shape [N, d, ...], got %v", name, shapeOf(x))
	}
	n, d = x.Rows(), x.Cols()
	if n < minRows || d < 1 {
		return 0, 0, fmt.Errorf("decompose: %s: shape %v: need at least %d rows and 1 column", name, x.Shape, minRows)
	}
	if len(x.Data) != n*d {
		return 0, 0, fmt.Errorf("decompose: %s: shape %v holds %d values, have %d", name, x.Shape, n*d, len(x.Data))
	}
	return n, d, nil
}

func shapeOf(x *tensor.T) []int {
	if x == nil {
		return nil
	}
	return x.Shape
}

func sameShape(a, b *tensor.T, an, bn string) error {
	if a.Rows() != b.Rows() || a.Cols() != b.Cols() {
		return fmt.Errorf("decompose: %s %v and %s %v differ in shape", an, a.Shape, bn, b.Shape)
	}
	return nil
}
