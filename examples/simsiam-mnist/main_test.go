package main

import (
	"bytes"
	"testing"
)

// TestSimSiamLearnsWithoutCollapse trains for a few hundred steps on real
// MNIST and checks that the loss falls while the normalized embeddings stay
// spread (std·sqrt(d) well above 0, where a collapsed network sits).
func TestSimSiamLearnsWithoutCollapse(t *testing.T) {
	var out bytes.Buffer
	res, err := run(config{Steps: 200, Batch: 128, LR: 0.05, Seed: 1, LogEvery: 10, KNNTrain: 5000, KNNTest: 1000}, &out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	t.Log("\n" + out.String())
	log := res.Log
	first, last := log[0], log[len(log)-1]
	if last.Loss > first.Loss-0.2 {
		t.Errorf("loss fell only from %.3f to %.3f", first.Loss, last.Loss)
	}
	for _, r := range log {
		if r.StdSqrtD < 0.3 {
			t.Errorf("step %d: std(z)*sqrt(d) = %.3f: collapsing", r.Step, r.StdSqrtD)
		}
	}
	// The random-init backbone is already a decent kNN feature on MNIST;
	// SSL must not destroy it (a collapsed network falls to ~0.1).
	if res.KNN < 0.8 {
		t.Errorf("kNN top-1 after training = %.3f (random init %.3f): representation broke", res.KNN, res.KNNInit)
	}
}
