package runner

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/sslrun/sslrun/core/data"
	"github.com/sslrun/sslrun/core/data/augment"
	"github.com/sslrun/sslrun/core/eval"
	"github.com/sslrun/sslrun/core/pipeline"
	"github.com/sslrun/sslrun/core/plugin"
	"github.com/sslrun/sslrun/core/tensor"
)

// evaluate runs the evaluations due after epoch completed epochs (at the
// start when atStart, the end when last).
func (t *trainer) evaluate(epoch int, step int64, atStart, last bool) error {
	fc := featureCache{}
	for _, e := range t.evals {
		c := e.cfg
		due := false
		if atStart {
			due = c.AtStart
		} else {
			due = (c.EveryEpochs > 0 && epoch%c.EveryEpochs == 0) || (last && c.AtEnd)
		}
		if !due {
			continue
		}
		start := time.Now()
		rec, err := runEval(t.eng, t.view, t.flat, e, t.cfg.Seed, fc)
		if err != nil {
			return fmt.Errorf("evaluate %s after epoch %d: %w", c.Kind, epoch, err)
		}
		rec.Epoch, rec.Step = epoch, step
		t.result.Evals = append(t.result.Evals, rec)
		t.log.Info().Str("protocol", rec.Protocol).Int("epoch", epoch).Float64("top1", rec.Top1).Float64("top5", rec.Top5).
			Str("test", rec.Dataset).Str("feature", rec.Feature).Dur("took", time.Since(start).Round(time.Millisecond)).Msg("evaluation")
		if err := t.rec.LogEval(rec); err != nil {
			return fmt.Errorf("recorder: %w", err)
		}
		if err := t.rec.LogMetrics(step, float64(epoch), []Metric{{Key: "eval/" + rec.Protocol + "_top1", Value: rec.Top1,
			Context: map[string]string{"dataset": rec.Dataset, "feature": rec.Feature}}}); err != nil {
			return fmt.Errorf("recorder: %w", err)
		}
		if err := t.evaluateAnalyzers(step, epoch, e, fc); err != nil {
			return err
		}
	}
	return nil
}

// evaluateAnalyzers hands the analyzers the evaluation's test-set
// features (once per set and round) and records what they return.
func (t *trainer) evaluateAnalyzers(step int64, epoch int, e evalEntry, fc featureCache) error {
	if len(t.eng.analyzers) == 0 {
		return nil
	}
	feature := orString(e.cfg.Feature, "backbone")
	key := "analyzed|" + e.test.Name + "|" + feature
	if fc[key] != nil {
		return nil
	}
	x := fc[e.test.Name+"|"+feature]
	if x == nil {
		return nil
	}
	fc[key] = x
	labels := tensor.New(len(e.test.Labels))
	for i, l := range e.test.Labels {
		labels.Data[i] = float32(l)
	}
	st := plugin.Step{Step: step, Epoch: int64(epoch), TotalSteps: t.total}
	for _, a := range t.eng.analyzers {
		if err := t.eng.host.Reset(); err != nil {
			return err
		}
		ms, arrays, err := a.a.Evaluate(context.Background(), plugin.EvalSet{Step: st, Name: e.test.Name,
			Tensors: map[string]*tensor.T{"embeddings": x, "labels": labels}})
		if err != nil {
			return fmt.Errorf("analyzer %s: evaluate on %s: %w", a.name, e.test.Name, err)
		}
		out, collapsed, reason := analyzerMetrics(a.name, ms)
		for i := range out {
			out[i].Context = withFeature(out[i].Context, feature)
		}
		if err := t.rec.LogMetrics(step, float64(epoch), out); err != nil {
			return fmt.Errorf("recorder: %w", err)
		}
		for _, arr := range copyArrays(a.name, arrays) {
			arr.Context = withFeature(arr.Context, feature)
			if err := t.rec.LogArray(step, float64(epoch), arr); err != nil {
				return fmt.Errorf("recorder: %w", err)
			}
		}
		if collapsed {
			t.log.Warn().Str("analyzer", a.name).Int64("step", step).Str("dataset", e.test.Name).Str("reason", reason).Msg("collapse detected on the evaluation set")
			if t.opts.StopOnCollapse {
				return &CollapseError{Step: step, Analyzer: a.name, Reason: reason + " (on " + e.test.Name + ")"}
			}
		}
	}
	return nil
}

// withFeature returns ctx with "feature" set, as a new map (plugin
// contexts may be shared).
func withFeature(ctx map[string]string, feature string) map[string]string {
	out := make(map[string]string, len(ctx)+1)
	for k, v := range ctx {
		out[k] = v
	}
	out["feature"] = feature
	return out
}

// featureCache holds the features of one evaluation round, so that kNN and
// the linear probe on the same sets compute them once.
type featureCache map[string]*tensor.T

// runEval computes the features of an evaluation's sets with the encoder
// and runs it.
func runEval(eng *engine, view augment.Pipeline, flat bool, e evalEntry, seed int64, fc featureCache) (EvalRecord, error) {
	c := e.cfg
	feature := c.Feature
	if feature == "" {
		feature = "backbone"
	}
	get := func(ds *data.Dataset) (eval.Set, error) {
		key := ds.Name + "|" + feature
		x, ok := fc[key]
		if !ok {
			var err error
			if x, err = features(eng, ds, view, flat, feature, 256); err != nil {
				return eval.Set{}, err
			}
			if fc != nil {
				fc[key] = x
			}
		}
		return eval.SetFromTensor(ds.Name, x, ds.Labels)
	}
	trs, err := get(e.train)
	if err != nil {
		return EvalRecord{}, err
	}
	tes, err := get(e.test)
	if err != nil {
		return EvalRecord{}, err
	}
	classes := max(e.train.NumClasses, e.test.NumClasses)
	rec := EvalRecord{Protocol: c.Kind, Train: c.Train, Test: c.Test, Dataset: e.test.Name, Split: e.split, Feature: feature}
	var r eval.Result
	switch c.Kind {
	case "knn":
		kc := eval.LightlyKNN()
		if c.K > 0 {
			kc.K = c.K
		}
		if c.Temperature > 0 {
			kc.T = c.Temperature
		}
		kc.NumClasses = classes
		if r, err = eval.KNN(trs, tes, kc); err != nil {
			return EvalRecord{}, err
		}
		rec.K, rec.Temperature = min(kc.K, trs.N()), kc.T
	case "linear":
		lc := eval.DefaultLinear()
		if c.Epochs > 0 {
			lc.Epochs = c.Epochs
		}
		if c.BatchSize > 0 {
			lc.BatchSize = c.BatchSize
		}
		if c.LR > 0 {
			lc.LR = c.LR
		}
		lc.Momentum, lc.WeightDecay = c.Momentum, c.WeightDecay
		lc.Seed, lc.NumClasses = uint64(seed), classes
		lr, err := eval.LinearProbe(trs, tes, lc)
		if err != nil {
			return EvalRecord{}, err
		}
		r = lr.Result
	default:
		return EvalRecord{}, fmt.Errorf("unknown evaluation %q (want knn or linear)", c.Kind)
	}
	rec.Top1, rec.Top5, rec.N, rec.Options = r.Top1, r.Top5, r.N, r.Protocol
	if rec.Options == nil {
		rec.Options = map[string]string{}
	}
	rec.Options["train_set"], rec.Options["train_n"] = e.train.Name, strconv.Itoa(trs.N())
	return rec, nil
}

// defaultEvaluation is the evaluation `sslrun eval` runs when the pipeline
// has no block of that kind: the pipeline.Evaluation defaults on the
// "train" and "test" datasets.
func defaultEvaluation(kind string) pipeline.Evaluation {
	e := pipeline.Evaluation{Kind: kind, Train: "train", Test: "test", Feature: "backbone", AtEnd: true}
	if kind == "knn" {
		e.K, e.Temperature = 200, 0.1
	} else {
		e.Epochs, e.BatchSize, e.LR, e.Momentum = 100, 256, 0.1, 0.9
	}
	return e
}
