// Package eval measures how good frozen embeddings are for classification,
// with the two protocols the SSL literature reports: a weighted k-nearest
// neighbour classifier (InstDisc, Wu et al. 2018, as implemented by
// solo-learn's WeightedKNNClassifier and lightly's knn_predict) and a linear
// probe (a softmax classifier trained by SGD on the fixed features).
//
// Numbers from different protocols are not comparable (see
// docs/anchors.md), so every Result carries the full protocol as a
// string map that the run database stores next to the accuracy.
//
// Accuracies are fractions in [0, 1]. Top-5 counts a sample as correct when
// its label is among the first min(5, classes) ranked classes (for kNN also
// at most k, as solo-learn does); ranking is by score, ties broken by the
// lower class index, which is what a stable descending sort gives. With five
// or fewer classes top-5 is therefore 1 (for kNN when k >= classes). A class
// without votes still takes its place in that ranking, as in solo-learn.
//
// Both evaluations are deterministic: kNN has no randomness, and the linear
// probe draws its initialization and its batch order from a seeded PCG
// generator. Neither depends on the number of threads.
package eval
