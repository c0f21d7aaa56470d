package eval

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"testing"

	"github.com/sslrun/sslrun/core/parallel"
	"github.com/sslrun/sslrun/core/safetensors"
	"github.com/sslrun/sslrun/internal/testenv"
)

// loadSet reads features name_x and labels name_y from a fixture.
func loadSet(t *testing.T, f *safetensors.File, name string) Set {
	t.Helper()
	x, err := f.Tensor(name + "_x")
	if err != nil {
		t.Fatal(err)
	}
	y, _, err := f.Int64s(name + "_y")
	if err != nil {
		t.Fatal(err)
	}
	s, err := SetFromTensor(name, x, toInt32(y))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func toInt32(v []int64) []int32 {
	out := make([]int32, len(v))
	for i, x := range v {
		out[i] = int32(x)
	}
	return out
}

// TestKNNGolden compares scores, predictions and accuracies with
// tools/golden/gen_eval.py's transcription of solo-learn's
// WeightedKNNClassifier.
func TestKNNGolden(t *testing.T) {
	f, err := safetensors.ReadFile(filepath.Join("testdata", "knn.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	train, test := loadSet(t, f, "train"), loadSet(t, f, "test")
	for _, name := range []string{"solo", "lightly", "k5_t05", "euclid10"} {
		t.Run(name, func(t *testing.T) {
			var c struct {
				K          int
				T          *float64
				Distance   string
				Top1, Top5 float64
			}
			if err := json.Unmarshal([]byte(f.Metadata[name]), &c); err != nil {
				t.Fatalf("metadata %s: %v", name, err)
			}
			cfg := KNNConfig{K: c.K, Distance: Distance(c.Distance), Epsilon: 1e-5}
			if c.T != nil {
				cfg.T = *c.T
			}
			wantScores, err := f.Tensor("scores." + name)
			if err != nil {
				t.Fatal(err)
			}
			wantPred, _, err := f.Int64s("pred." + name)
			if err != nil {
				t.Fatal(err)
			}
			for _, threads := range []int{1, 2} {
				prev := parallel.SetThreads(threads)
				scores, classes, err := KNNScores(train, test, cfg)
				parallel.SetThreads(prev)
				if err != nil {
					t.Fatal(err)
				}
				if classes != 6 {
					t.Fatalf("classes = %d, want 6", classes)
				}
				if msg := testenv.Mismatch(scores, wantScores.Data, 1e-4, 1e-6); msg != "" {
					t.Errorf("threads=%d scores: %s", threads, msg)
				}
				for i, w := range wantPred {
					if p := argmax(scores[i*classes : (i+1)*classes]); p != int(w) {
						t.Errorf("threads=%d sample %d: prediction %d, want %d", threads, i, p, w)
					}
				}
			}
			res, err := KNN(train, test, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if res.Top1 != c.Top1 || res.Top5 != c.Top5 || res.N != 100 {
				t.Errorf("top1/top5/N = %v/%v/%d, want %v/%v/100", res.Top1, res.Top5, res.N, c.Top1, c.Top5)
			}
			if res.Protocol["k"] != itoa(c.K) || res.Protocol["distance"] != c.Distance ||
				res.Protocol["n_train"] != "300" || res.Protocol["n_test"] != "100" || res.Protocol["train_split"] != "train" {
				t.Errorf("protocol %v", res.Protocol)
			}
		})
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

// randomSet draws n samples of dim features around classes random centers.
func randomSet(rng *rand.Rand, name string, n, dim, classes int, centers []float32, noise float32) Set {
	s := Set{Name: name, X: make([]float32, n*dim), Dim: dim, Labels: make([]int32, n)}
	for i := range n {
		c := rng.IntN(classes)
		s.Labels[i] = int32(c)
		for j := range dim {
			s.X[i*dim+j] = centers[c*dim+j] + noise*float32(rng.NormFloat64())
		}
	}
	return s
}

func randomCenters(rng *rand.Rand, classes, dim int) []float32 {
	c := make([]float32, classes*dim)
	for i := range c {
		c[i] = float32(rng.NormFloat64())
	}
	return c
}

// bruteKNN is the obvious O(N_test * N_train * D) implementation with a
// full sort per row, in float64: the reference for the blocked, heap-based
// KNN on sizes that cross its block boundaries.
func bruteKNN(train, test Set, cfg KNNConfig, classes int) []float32 {
	d := train.Dim
	k := min(cfg.K, train.N())
	norm := func(x []float32) float64 {
		var s float64
		for _, v := range x {
			s += float64(v) * float64(v)
		}
		return math.Sqrt(s)
	}
	out := make([]float32, test.N()*classes)
	type nb struct {
		key float64
		idx int
	}
	for i := range test.N() {
		q := test.X[i*d : (i+1)*d]
		nbs := make([]nb, train.N())
		for j := range train.N() {
			x := train.X[j*d : (j+1)*d]
			var dot, d2 float64
			for t := range d {
				dot += float64(q[t]) * float64(x[t])
				dd := float64(q[t]) - float64(x[t])
				d2 += dd * dd
			}
			if cfg.Distance == Cosine {
				nbs[j] = nb{dot / (norm(q) * norm(x)), j}
			} else {
				nbs[j] = nb{-d2, j}
			}
		}
		sort.Slice(nbs, func(a, b int) bool {
			return nbs[a].key > nbs[b].key || (nbs[a].key == nbs[b].key && nbs[a].idx < nbs[b].idx)
		})
		for a := 0; a < k; a++ {
			w := math.Exp(nbs[a].key / cfg.T)
			if cfg.Distance == Euclidean {
				w = 1 / (math.Sqrt(-nbs[a].key) + cfg.Epsilon)
			}
			out[i*classes+int(train.Labels[nbs[a].idx])] += float32(w)
		}
	}
	return out
}

// TestKNNBlocks checks the blocked kNN against brute force on sizes that
// span several test and train blocks, with k above and below the block
// sizes and more classes than 5.
func TestKNNBlocks(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const dim, classes = 24, 11
	centers := randomCenters(rng, classes, dim)
	train := randomSet(rng, "train", knnCols+777, dim, classes, centers, 1.5)
	test := randomSet(rng, "test", knnRows+37, dim, classes, centers, 1.5)
	for _, cfg := range []KNNConfig{
		{K: 1, T: 0.07, Distance: Cosine},
		{K: 20, T: 0.07, Distance: Cosine},
		{K: 200, T: 0.1, Distance: Cosine},
		{K: 15, Distance: Euclidean, Epsilon: 1e-5},
	} {
		got, c, err := KNNScores(train, test, cfg)
		if err != nil {
			t.Fatal(err)
		}
		want := bruteKNN(train, test, cfg, c)
		if msg := testenv.Mismatch(got, want, 1e-4, 1e-6); msg != "" {
			t.Errorf("%+v: %s", cfg, msg)
		}
	}
}

func TestKNNFewClassesAndSmallSets(t *testing.T) {
	// Two classes: top-5 is 1 by definition, top-1 is exact here.
	train := Set{Name: "a", Dim: 2, X: []float32{1, 0, 0.9, 0.1, 0, 1, 0.1, 0.9}, Labels: []int32{0, 0, 1, 1}}
	test := Set{Name: "b", Dim: 2, X: []float32{1, 0.05, 0.05, 1, 0, 1}, Labels: []int32{0, 1, 0}}
	// k larger than the train set is capped, as in solo-learn.
	res, err := KNN(train, test, KNNConfig{K: 3, T: 0.07, Distance: Cosine})
	if err != nil {
		t.Fatal(err)
	}
	if res.Top1 != 2.0/3 || res.Top5 != 1 || res.N != 3 {
		t.Errorf("got top1 %v top5 %v N %d, want 2/3, 1, 3", res.Top1, res.Top5, res.N)
	}
	res, err = KNN(train, test, KNNConfig{K: 100, T: 0.07, Distance: Cosine})
	if err != nil || res.Protocol["k"] != "4" {
		t.Errorf("k capped: %v %v", err, res.Protocol["k"])
	}
}

func TestKNNErrors(t *testing.T) {
	ok := Set{Name: "ok", Dim: 2, X: []float32{1, 0, 0, 1}, Labels: []int32{0, 1}}
	for name, c := range map[string]struct {
		train, test Set
		cfg         KNNConfig
	}{
		"k0":        {ok, ok, KNNConfig{K: 0, T: 0.1, Distance: Cosine}},
		"T0":        {ok, ok, KNNConfig{K: 1, T: 0, Distance: Cosine}},
		"distance":  {ok, ok, KNNConfig{K: 1, T: 0.1, Distance: "manhattan"}},
		"eps":       {ok, ok, KNNConfig{K: 1, Distance: Euclidean}},
		"dim":       {ok, Set{Name: "t", Dim: 1, X: []float32{1}, Labels: []int32{0}}, SoloKNN()},
		"shape":     {Set{Name: "t", Dim: 2, X: []float32{1}, Labels: []int32{0}}, ok, SoloKNN()},
		"empty":     {Set{Name: "t", Dim: 2}, ok, SoloKNN()},
		"unlabeled": {Set{Name: "t", Dim: 1, X: []float32{1}, Labels: []int32{-1}}, Set{Name: "t", Dim: 1, X: []float32{1}, Labels: []int32{0}}, SoloKNN()},
		"classes":   {ok, ok, KNNConfig{K: 1, T: 0.1, Distance: Cosine, NumClasses: 1}},
	} {
		if _, err := KNN(c.train, c.test, c.cfg); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestKNNAllocations(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	centers := randomCenters(rng, 10, 32)
	train := randomSet(rng, "train", 5000, 32, 10, centers, 1)
	test := randomSet(rng, "test", 600, 32, 10, centers, 1)
	KNN(train, test, LightlyKNN())
	allocs := testing.AllocsPerRun(3, func() { KNN(train, test, LightlyKNN()) })
	// Buffers and the protocol map: a fixed count, independent of the
	// number of blocks.
	t.Logf("%v allocations per KNN call", allocs)
	if allocs > 60 {
		t.Errorf("KNN allocated %v times per call", allocs)
	}
}
