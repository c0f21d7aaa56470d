package eval

import (
	"fmt"
	"math"
	"strconv"

	"github.com/sslrun/sslrun/core/gemm"
	"github.com/sslrun/sslrun/core/parallel"
)

// Distance selects how kNN compares features.
type Distance string

// The kNN distances of solo-learn's WeightedKNNClassifier.
const (
	// Cosine l2-normalizes train and test features, ranks neighbours by
	// cosine similarity s and weights them by exp(s/T).
	Cosine Distance = "cosine"
	// Euclidean uses the raw features, ranks neighbours by Euclidean
	// distance d and weights them by 1/(d+Epsilon); T is not used.
	Euclidean Distance = "euclidean"
)

// KNNConfig configures the weighted kNN classifier. Fields are used as
// given; start from SoloKNN or LightlyKNN.
type KNNConfig struct {
	// K is the number of neighbours; it is capped at the train set size.
	K int
	// T is the temperature of the cosine weights exp(s/T).
	T float64
	// Distance is Cosine or Euclidean.
	Distance Distance
	// Epsilon keeps the Euclidean weights 1/(d+Epsilon) finite.
	Epsilon float64
	// NumClasses, when positive, is the number of classes; otherwise one
	// more than the largest label in either set.
	NumClasses int
}

// SoloKNN returns solo-learn's defaults (solo/utils/knn.py,
// WeightedKNNClassifier: k=20, T=0.07, cosine, epsilon 1e-5).
func SoloKNN() KNNConfig {
	return KNNConfig{K: 20, T: 0.07, Distance: Cosine, Epsilon: 1e-5}
}

// LightlyKNN returns lightly's defaults (knn_predict and its benchmarks:
// k=200, T=0.1, cosine on l2-normalized features), the protocol behind
// lightly's published kNN accuracies.
func LightlyKNN() KNNConfig {
	return KNNConfig{K: 200, T: 0.1, Distance: Cosine, Epsilon: 1e-5}
}

func (c KNNConfig) validate() error {
	if c.K < 1 {
		return fmt.Errorf("eval: knn: k = %d, need >= 1", c.K)
	}
	switch c.Distance {
	case Cosine:
		if !(c.T > 0) || math.IsInf(c.T, 0) {
			return fmt.Errorf("eval: knn: temperature %v, need > 0", c.T)
		}
	case Euclidean:
		if !(c.Epsilon > 0) {
			return fmt.Errorf("eval: knn: epsilon %v, need > 0 for euclidean weights", c.Epsilon)
		}
	default:
		return fmt.Errorf("eval: knn: distance %q, want %q or %q", c.Distance, Cosine, Euclidean)
	}
	return nil
}

// KNN classifies every test sample by a weighted vote of its K nearest
// train samples and returns the top-1/top-5 accuracy with the protocol.
//
// It is solo-learn's WeightedKNNClassifier.compute (the InstDisc
// protocol, also lightly's knn_predict): for Cosine, features are
// l2-normalized, the K train samples of highest cosine similarity s are
// found, each adds exp(s/T) to the score of its class, and classes are
// ranked by score. Similarities are computed with core/gemm a block of test
// rows against a block of train rows at a time, keeping only a running
// top-K per test row, so memory stays about 10 MB (plus K entries per row
// of a 1024-row test block) for any set size.
func KNN(train, test Set, cfg KNNConfig) (Result, error) {
	st, err := newKNN(train, test, cfg)
	if err != nil {
		return Result{}, err
	}
	top5 := min(5, st.classes, st.k)
	var c1, c5 int
	st.run(func(lo, hi int, scores []float32) {
		for i := lo; i < hi; i++ {
			r := rank(scores[(i-lo)*st.classes:(i-lo+1)*st.classes], int(test.Labels[i]))
			if r == 0 {
				c1++
			}
			if r < top5 {
				c5++
			}
		}
	})
	n := test.N()
	p := baseProtocol("knn", train, test, st.classes, top5)
	p["k"] = strconv.Itoa(st.k)
	p["distance"] = string(cfg.Distance)
	p["score"] = "sum over the k neighbours of their weight, per class"
	p["neighbour_ties"] = "equal similarity: lower train index first"
	if cfg.Distance == Cosine {
		p["T"] = fmtFloat(cfg.T)
		p["weight"] = "exp(cos/T)"
		p["feature_norm"] = "l2"
	} else {
		p["epsilon"] = fmtFloat(cfg.Epsilon)
		p["weight"] = "1/(euclidean distance + epsilon)"
		p["feature_norm"] = "none"
	}
	p["reference"] = "solo-learn WeightedKNNClassifier (InstDisc weighted kNN; lightly knn_predict)"
	return Result{Top1: float64(c1) / float64(n), Top5: float64(c5) / float64(n), N: n, Protocol: p}, nil
}

// KNNScores returns the kNN class scores of every test sample (row-major,
// N_test x classes; the class ranking KNN uses) and the number of classes.
func KNNScores(train, test Set, cfg KNNConfig) ([]float32, int, error) {
	st, err := newKNN(train, test, cfg)
	if err != nil {
		return nil, 0, err
	}
	out := make([]float32, test.N()*st.classes)
	st.run(func(lo, hi int, scores []float32) {
		copy(out[lo*st.classes:hi*st.classes], scores[:(hi-lo)*st.classes])
	})
	return out, st.classes, nil
}

// Block sizes of the similarity computation: knnRows test rows against
// knnCols train rows make an 8 MiB similarity block. Sgemm repacks the
// train block for every test block, so many test rows per block keep that
// packing cheap (at 256 rows it cost 8% of the kernel time, at 1024 under
// 2%), while the block is still small next to the train matrix.
const (
	knnRows = 1024
	knnCols = 2048
)

// knnState holds one kNN evaluation's buffers. It implements
// parallel.Task so the per-row work runs on core/parallel without
// allocating: phase selects between scanning a similarity block and
// turning heaps into class scores.
type knnState struct {
	train, test Set
	cfg         KNNConfig
	k, classes  int

	// tnorm holds per train row 1/max(||x||, 1e-12) (cosine) or ||x||^2
	// (euclidean); qnorm the same for the rows of the current test block.
	tnorm, qnorm []float32
	q            []float32 // current test block, normalized for cosine
	sim          []float32 // knnRows x knnCols dot products
	hs           []float32 // per row a min-heap of k keys (root = worst kept)
	hi           []int32   // train indices of the heap entries
	hn           []int     // heap sizes
	acc          []float64 // per row class score accumulators
	scores       []float32 // per row class scores

	phase     int // 0: scan sim block, 1: finalize rows
	j0, ncols int // train rows of the current similarity block
}

func newKNN(train, test Set, cfg KNNConfig) (*knnState, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	classes, err := checkPair(train, test, cfg.NumClasses)
	if err != nil {
		return nil, fmt.Errorf("eval: knn: %w", err)
	}
	k := min(cfg.K, train.N())
	rows := min(knnRows, test.N())
	cols := min(knnCols, train.N())
	st := &knnState{
		train: train, test: test, cfg: cfg, k: k, classes: classes,
		tnorm:  make([]float32, train.N()),
		qnorm:  make([]float32, rows),
		q:      make([]float32, rows*train.Dim),
		sim:    make([]float32, rows*cols),
		hs:     make([]float32, rows*k),
		hi:     make([]int32, rows*k),
		hn:     make([]int, rows),
		acc:    make([]float64, rows*classes),
		scores: make([]float32, rows*classes),
	}
	d := train.Dim
	parallel.For(train.N(), 1024, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			st.tnorm[i] = st.norm(train.X[i*d : (i+1)*d])
		}
	})
	return st, nil
}

// norm returns the per-row factor kept in tnorm/qnorm for x.
func (st *knnState) norm(x []float32) float32 {
	var s float64
	for _, v := range x {
		s += float64(v) * float64(v)
	}
	if st.cfg.Distance == Euclidean {
		return float32(s)
	}
	// F.normalize divides by max(||x||, 1e-12).
	return float32(1 / math.Max(math.Sqrt(s), 1e-12))
}

// run evaluates the test set block by block and hands each block's class
// scores (rows lo..hi-1, row-major) to sink, in order.
func (st *knnState) run(sink func(lo, hi int, scores []float32)) {
	d := st.train.Dim
	ntr, nte := st.train.N(), st.test.N()
	blockRows := len(st.qnorm)
	blockCols := len(st.sim) / blockRows
	for lo := 0; lo < nte; lo += blockRows {
		rows := min(blockRows, nte-lo)
		// Copy (and for cosine normalize) the test block: normalizing the
		// small test side keeps the big train matrix untouched; the train
		// side is scaled while scanning.
		for r := 0; r < rows; r++ {
			src := st.test.X[(lo+r)*d : (lo+r+1)*d]
			dst := st.q[r*d : (r+1)*d]
			f := st.norm(src)
			st.qnorm[r] = f
			if st.cfg.Distance == Cosine {
				for j, v := range src {
					dst[j] = v * f
				}
			} else {
				copy(dst, src)
			}
			st.hn[r] = 0
		}
		st.phase = 0
		for j0 := 0; j0 < ntr; j0 += blockCols {
			st.j0, st.ncols = j0, min(blockCols, ntr-j0)
			gemm.Sgemm(false, true, rows, st.ncols, d, 1, st.q[:rows*d], d,
				st.train.X[j0*d:(j0+st.ncols)*d], d, 0, st.sim, blockCols)
			parallel.Run(rows, 8, st)
		}
		st.phase = 1
		parallel.Run(rows, 8, st)
		sink(lo, lo+rows, st.scores[:rows*st.classes])
	}
}

// Do implements parallel.Task over the rows of the current test block.
func (st *knnState) Do(lo, hi int) {
	for r := lo; r < hi; r++ {
		if st.phase == 0 {
			st.scan(r)
		} else {
			st.finalize(r)
		}
	}
}

// better orders candidates: higher key first, then lower train index, so
// the kept set does not depend on the block boundaries.
func better(k1 float32, i1 int32, k2 float32, i2 int32) bool {
	return k1 > k2 || (k1 == k2 && i1 < i2)
}

// scan merges one row of the similarity block into the row's top-k heap.
// The key is the cosine similarity, or minus the squared Euclidean
// distance; both rank as the final weights do.
func (st *knnState) scan(r int) {
	k := st.k
	hs := st.hs[r*k : (r+1)*k]
	hi := st.hi[r*k : (r+1)*k]
	n := st.hn[r]
	row := st.sim[r*(len(st.sim)/len(st.qnorm)):][:st.ncols]
	tn := st.tnorm[st.j0 : st.j0+st.ncols]
	cos := st.cfg.Distance == Cosine
	qn := st.qnorm[r]
	for c, v := range row {
		var key float32
		if cos {
			key = v * tn[c]
		} else {
			key = 2*v - qn - tn[c]
		}
		idx := int32(st.j0 + c)
		if n < k {
			hs[n], hi[n] = key, idx
			siftUp(hs, hi, n)
			n++
			continue
		}
		if better(key, idx, hs[0], hi[0]) {
			hs[0], hi[0] = key, idx
			siftDown(hs, hi, 0, n)
		}
	}
	st.hn[r] = n
}

// siftUp restores the min-heap (worst at the root) after appending at i.
func siftUp(hs []float32, hi []int32, i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !better(hs[p], hi[p], hs[i], hi[i]) {
			break
		}
		hs[p], hs[i] = hs[i], hs[p]
		hi[p], hi[i] = hi[i], hi[p]
		i = p
	}
}

// siftDown restores the min-heap of size n after replacing element i.
func siftDown(hs []float32, hi []int32, i, n int) {
	for {
		w := i
		l, r := 2*i+1, 2*i+2
		if l < n && better(hs[w], hi[w], hs[l], hi[l]) {
			w = l
		}
		if r < n && better(hs[w], hi[w], hs[r], hi[r]) {
			w = r
		}
		if w == i {
			return
		}
		hs[w], hs[i] = hs[i], hs[w]
		hi[w], hi[i] = hi[i], hi[w]
		i = w
	}
}

// finalize turns row r's heap into class scores. Popping the heap yields
// the neighbours from worst to best; they are stored back to front so that
// the weights are summed best first, the order of torch's sorted topk.
func (st *knnState) finalize(r int) {
	k := st.k
	hs := st.hs[r*k : (r+1)*k]
	hi := st.hi[r*k : (r+1)*k]
	for n := st.hn[r]; n > 1; n-- {
		hs[0], hs[n-1] = hs[n-1], hs[0]
		hi[0], hi[n-1] = hi[n-1], hi[0]
		siftDown(hs, hi, 0, n-1)
	}
	// Now hs is sorted best first.
	acc := st.acc[r*st.classes : (r+1)*st.classes]
	clear(acc)
	labels := st.train.Labels
	for j := 0; j < st.hn[r]; j++ {
		var w float64
		if st.cfg.Distance == Cosine {
			w = math.Exp(float64(hs[j]) / st.cfg.T)
		} else {
			w = 1 / (math.Sqrt(math.Max(-float64(hs[j]), 0)) + st.cfg.Epsilon)
		}
		acc[labels[hi[j]]] += w
	}
	out := st.scores[r*st.classes : (r+1)*st.classes]
	for c, v := range acc {
		out[c] = float32(v)
	}
}
