package train

import "math"

// NormalizedStd is the collapse indicator of the SimSiam paper: the mean over
// the d channels of the standard deviation, across the batch, of the
// l2-normalized rows of z [N, d], multiplied by sqrt(d). About 1 for
// embeddings spread over the sphere, 0 at complete collapse.
func NormalizedStd(z []float32, n, d int) float64 {
	if n < 2 || d == 0 {
		return 0
	}
	mean := make([]float64, d)
	sq := make([]float64, d)
	for i := 0; i < n; i++ {
		row := z[i*d : (i+1)*d]
		var norm float64
		for _, v := range row {
			norm += float64(v) * float64(v)
		}
		inv := 1 / math.Max(math.Sqrt(norm), 1e-12)
		for j, v := range row {
			x := float64(v) * inv
			mean[j] += x
			sq[j] += x * x
		}
	}
	var sum float64
	for j := range mean {
		m := mean[j] / float64(n)
		v := (sq[j] - float64(n)*m*m) / float64(n-1)
		sum += math.Sqrt(math.Max(v, 0))
	}
	return sum / float64(d) * math.Sqrt(float64(d))
}
