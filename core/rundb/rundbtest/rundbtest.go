// Package rundbtest fills a run database with a small synthetic study, for
// the tests of rundb, the report and the CLI.
package rundbtest

import (
	"context"
	"encoding/json"
	"fmt"
	"math"

	"github.com/sslrun/sslrun/core/rundb"
)

// Z is the context the decompose analyzer logs with (documented in
// docs/rundb.md): the projector output, per training batch of 512.
var Z = rundb.Ctx("tensor", "z", "scope", "batch", "batch", "512")

// Spec is one synthetic run of the study.
type Spec struct {
	Method, Variant string
	Seed            int64
	Collapse        bool // the run collapses: m_o -> 1, std*sqrt(d) -> 0, kNN at chance
	Status          rundb.Status
}

// DefaultSpecs is the study Populate writes: SimSiam (3 seeds), SimSiam
// without stop-gradient (2 seeds, collapses), SimCLR (2 seeds) and one
// crashed SimSiam run that Compare must leave out.
var DefaultSpecs = []Spec{
	{"simsiam", "", 1, false, rundb.StatusFinished},
	{"simsiam", "", 2, false, rundb.StatusFinished},
	{"simsiam", "", 3, false, rundb.StatusFinished},
	{"simsiam", "no-stopgrad", 1, true, rundb.StatusFinished},
	{"simsiam", "no-stopgrad", 2, true, rundb.StatusFinished},
	{"simclr", "t=0.5", 1, false, rundb.StatusFinished},
	{"simclr", "t=0.5", 2, false, rundb.StatusFinished},
	{"simsiam", "", 4, false, rundb.StatusFailed},
}

// Final returns the final values Populate logs for a spec, so tests can
// check aggregates: kNN top-1, m_o, std*sqrt(d), effective rank, de-centering
// share, de-correlation share, loss.
func Final(s Spec) (knn, mo, std, rank, decenter, decorr, loss float64) {
	return finalAt(s, Epochs)
}

// Epochs and StepsPerEpoch of the synthetic runs.
const (
	Epochs        = 10
	StepsPerEpoch = 8
)

// Populate writes the runs of specs into db under study and returns their
// ids. Each run logs a per-step loss (fractional epochs), per-epoch kNN
// accuracy and decomposition metrics (context tensor=z), a residual
// spectrum array, a final kNN and linear evaluation, a dataset digest and a
// checkpoint artifact record.
func Populate(ctx context.Context, db *rundb.DB, study string, specs []Spec) ([]int64, error) {
	var ids []int64
	for i, s := range specs {
		cfg, _ := json.Marshal(map[string]any{
			"method": s.Method, "seed": s.Seed,
			"data":  map[string]any{"name": "cifar10", "num_classes": 10, "batch_size": 512},
			"optim": map[string]any{"lr": 0.06, "momentum": 0.9, "nesterov": false},
			"loss":  map[string]any{"name": s.Method, "variant": s.Variant},
		})
		r, err := db.CreateRun(ctx, rundb.RunSpec{
			Study: study, Name: fmt.Sprintf("%s-%s-s%d-%d", s.Method, s.Variant, s.Seed, i),
			Method: s.Method, Variant: s.Variant, Pipeline: "pipeline { }", Config: cfg, Seed: s.Seed,
			CodeVersion: "v0.0.0-test", Tags: map[string]string{"purpose": "test"},
			Plugins: []rundb.Plugin{{Role: "loss", Name: s.Method, Version: "0.1.0", SHA256: "00"}},
		})
		if err != nil {
			return nil, err
		}
		ids = append(ids, r.ID())
		for e := 1; e <= Epochs; e++ {
			for k := range StepsPerEpoch {
				step := int64((e-1)*StepsPerEpoch + k + 1)
				ep := float64(e-1) + float64(k+1)/StepsPerEpoch
				_, _, _, _, _, _, loss := finalAt(s, ep)
				if err := r.Log(step, ep, rundb.Metric{Key: "train/loss", Value: loss + 0.01*math.Sin(float64(step))}); err != nil {
					return nil, err
				}
			}
			step := int64(e * StepsPerEpoch)
			knn, mo, std, rank, dc, dr, _ := finalAt(s, float64(e))
			_, _, _, _, _, _, epochLoss := finalAt(s, float64(e)-0.5)
			if err := r.Log(step, float64(e),
				rundb.Metric{Key: "train/epoch_loss", Value: epochLoss},
				rundb.Metric{Key: "eval/knn_top1", Context: rundb.Ctx("dataset", "cifar10/test", "feature", "backbone"), Value: knn},
				rundb.Metric{Key: "decompose/m_o", Context: Z, Value: mo},
				rundb.Metric{Key: "decompose/m_r", Context: Z, Value: math.Sqrt(max(0, 1-mo*mo))},
				rundb.Metric{Key: "decompose/std_sqrt_d", Context: Z, Value: std},
				rundb.Metric{Key: "decompose/eff_rank", Context: Z, Value: rank},
				rundb.Metric{Key: "decompose/grad_decenter_share", Context: Z, Value: dc},
				rundb.Metric{Key: "decompose/grad_decorr_share", Context: Z, Value: dr},
			); err != nil {
				return nil, err
			}
			if err := r.Flush(); err != nil {
				return nil, err
			}
		}
		spec := make([]float32, 16)
		for j := range spec {
			spec[j] = float32(math.Exp(-float64(j) / 4))
		}
		if err := r.LogArray(ctx, "decompose/residual_spectrum", Z, Epochs*StepsPerEpoch, Epochs, []int{16}, spec); err != nil {
			return nil, err
		}
		knn, _, _, _, _, _, _ := Final(s)
		for _, ev := range []rundb.Evaluation{
			{Protocol: "knn", Dataset: "cifar10", Split: "test", Feature: "backbone", Selection: "last", K: 200,
				Temperature: 0.1, Step: Epochs * StepsPerEpoch, Epoch: Epochs, Top1: knn, Top5: math.Min(1, knn+0.15)},
			{Protocol: "linear", Dataset: "cifar10", Split: "test", Feature: "backbone", Selection: "last",
				Options: map[string]any{"epochs": 100, "lr": 0.1}, Step: Epochs * StepsPerEpoch, Epoch: Epochs,
				Top1: knn + 0.03, Top5: math.NaN()},
		} {
			if err := r.LogEvaluation(ctx, ev); err != nil {
				return nil, err
			}
		}
		if err := r.LogDataset(ctx, rundb.Dataset{Role: "train", Name: "cifar10", Digest: "sha256:abc", NumSamples: 50000, Source: "/data/cifar10"}); err != nil {
			return nil, err
		}
		if err := r.LogArtifactDigest(ctx, rundb.Artifact{Kind: "checkpoint", Path: fmt.Sprintf("runs/%d/last.ckpt", r.ID()), SHA256: "ff", Size: 1234, Step: Epochs * StepsPerEpoch}); err != nil {
			return nil, err
		}
		if err := r.Finish(s.Status, nil); err != nil {
			return nil, err
		}
	}
	return ids, nil
}

func finalAt(s Spec, epoch float64) (knn, mo, std, rank, decenter, decorr, loss float64) {
	u := epoch / Epochs
	j := float64(s.Seed) * 0.01
	if s.Collapse {
		return 0.1 + 0.02*(1-u) + j/10, 0.3 + 0.69*u + j/10, 0.8 - 0.79*u, 30 - 29*u, 0.05, 0.1, -0.3 - 0.69*u
	}
	base := 0.8
	if s.Method == "simclr" {
		base = 0.75
	}
	return 0.3 + (base-0.3)*u + j, 0.3 - 0.2*u + j, 0.6 + 0.3*u - j, 20 + 80*u, 0.4 + j, 0.6 - j, -0.2 - 0.7*u
}
