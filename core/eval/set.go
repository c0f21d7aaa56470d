package eval

import (
	"fmt"
	"strconv"

	"github.com/sslrun/sslrun/core/tensor"
)

// Set is a labelled set of frozen embeddings: N rows of Dim features.
type Set struct {
	// Name identifies the split in the protocol, e.g. "cifar10/train".
	Name string
	// X holds N*Dim features, row-major. Evaluations never modify it.
	X []float32
	// Dim is the number of features per sample.
	Dim int
	// Labels holds the N class labels, each in [0, classes).
	Labels []int32
}

// N is the number of samples.
func (s Set) N() int { return len(s.Labels) }

// SetFromTensor builds a Set from an [N, D] tensor (higher-rank samples are
// flattened) and its labels. The tensor's data is shared, not copied.
func SetFromTensor(name string, x *tensor.T, labels []int32) (Set, error) {
	if x == nil || len(x.Shape) < 1 {
		return Set{}, fmt.Errorf("eval: set %q: need a tensor of shape [N, ...]", name)
	}
	n := x.Shape[0]
	if n != len(labels) {
		return Set{}, fmt.Errorf("eval: set %q: %d rows but %d labels", name, n, len(labels))
	}
	d := 1
	for _, v := range x.Shape[1:] {
		d *= v
	}
	s := Set{Name: name, X: x.Data, Dim: d, Labels: labels}
	return s, s.validate()
}

// validate checks the shape of s.
func (s Set) validate() error {
	if s.Dim < 1 {
		return fmt.Errorf("eval: set %q: dim %d", s.Name, s.Dim)
	}
	if len(s.X) != len(s.Labels)*s.Dim {
		return fmt.Errorf("eval: set %q: %d features for %d samples of dim %d", s.Name, len(s.X), len(s.Labels), s.Dim)
	}
	if len(s.Labels) == 0 {
		return fmt.Errorf("eval: set %q: no samples", s.Name)
	}
	for i, l := range s.Labels {
		if l < 0 {
			return fmt.Errorf("eval: set %q: label of sample %d is %d (unlabelled samples cannot be evaluated)", s.Name, i, l)
		}
	}
	return nil
}

// Result is one accuracy measurement and the protocol that produced it.
type Result struct {
	// Top1 and Top5 are accuracies in [0, 1] on the test set.
	Top1, Top5 float64
	// N is the number of test samples.
	N int
	// Protocol states everything needed to reproduce or compare the number
	// (method, hyperparameters, feature normalization, split names and
	// sizes, top-5 and tie semantics), for the run database.
	Protocol map[string]string
}

// checkPair validates train and test sets and returns the number of
// classes: numClasses when positive, else one more than the largest label
// in either set. (solo-learn counts the distinct test labels instead, which
// is wrong when the test set misses a class.)
func checkPair(train, test Set, numClasses int) (int, error) {
	if err := train.validate(); err != nil {
		return 0, err
	}
	if err := test.validate(); err != nil {
		return 0, err
	}
	if train.Dim != test.Dim {
		return 0, fmt.Errorf("eval: train %q has dim %d, test %q dim %d", train.Name, train.Dim, test.Name, test.Dim)
	}
	maxL := int32(0)
	for _, l := range train.Labels {
		maxL = max(maxL, l)
	}
	for _, l := range test.Labels {
		maxL = max(maxL, l)
	}
	if numClasses <= 0 {
		return int(maxL) + 1, nil
	}
	if int(maxL) >= numClasses {
		return 0, fmt.Errorf("eval: label %d out of range for %d classes", maxL, numClasses)
	}
	return numClasses, nil
}

// rank returns the 0-based position of class label when the classes are
// sorted by descending score with ties broken by the lower class index
// (the order of a stable descending sort), without sorting.
func rank(scores []float32, label int) int {
	s := scores[label]
	r := 0
	for c, v := range scores {
		if v > s || (v == s && c < label) {
			r++
		}
	}
	return r
}

// argmax returns the class of highest score, the lowest index on ties.
func argmax(scores []float32) int {
	best := 0
	for c, v := range scores {
		if v > scores[best] {
			best = c
		}
	}
	return best
}

// baseProtocol holds the protocol fields every evaluation records.
func baseProtocol(eval string, train, test Set, classes, top5 int) map[string]string {
	return map[string]string{
		"eval":        eval,
		"train_split": train.Name,
		"test_split":  test.Name,
		"n_train":     strconv.Itoa(train.N()),
		"n_test":      strconv.Itoa(test.N()),
		"dim":         strconv.Itoa(train.Dim),
		"num_classes": strconv.Itoa(classes),
		"accuracy":    "fraction in [0,1]",
		"top5":        fmt.Sprintf("label among the first %d classes by score, ties to the lower class index", top5),
	}
}

// fmtFloat formats a hyperparameter for the protocol map.
func fmtFloat(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
