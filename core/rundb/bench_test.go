package rundb_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/sslrun/sslrun/core/rundb"
)

// BenchmarkLog100k logs 100k metric rows (10k steps x 10 metrics, 5 of
// them with a context) and finishes the run; one op is the whole 100k, so
// ns/op is the total cost the issue bounds (< 1 s). Sub-benchmarks vary the
// commit policy: the default batches, and a commit after every step (10
// rows per transaction), the worst case a runner would choose; and
// "resume": 90k rows, then a resumed attempt logs the last 10k again
// (they replace the stored rows, and the summaries are recomputed).
func BenchmarkLog100k(b *testing.B) {
	z := rundb.Ctx("tensor", "z")
	metrics := make([]rundb.Metric, 10)
	for i := range metrics {
		metrics[i].Key = "m" + strconv.Itoa(i)
		if i%2 == 1 {
			metrics[i].Context = z
		}
	}
	log := func(b *testing.B, r *rundb.Run, from, to int) {
		for step := from; step < to; step++ {
			for i := range metrics {
				metrics[i].Value = float64(step*i) * 0.001
			}
			if err := r.Log(int64(step), float64(step)/100, metrics...); err != nil {
				b.Fatal(err)
			}
		}
	}
	for _, bc := range []struct {
		name   string
		rows   int
		resume bool
	}{{"default", 0, false}, {"commit-per-step", 10, false}, {"resume", 0, true}} {
		b.Run(bc.name, func(b *testing.B) {
			db, _ := openTemp(b)
			b.ReportAllocs()
			for b.Loop() {
				r, err := db.CreateRun(ctx, rundb.RunSpec{Name: "bench"})
				if err != nil {
					b.Fatal(err)
				}
				r.SetFlushPolicy(bc.rows, time.Hour)
				if bc.resume {
					log(b, r, 0, 9_000)
					if err := r.Finish(rundb.StatusKilled, nil); err != nil {
						b.Fatal(err)
					}
					if r, err = db.ResumeRun(ctx, r.ID()); err != nil {
						b.Fatal(err)
					}
					log(b, r, 8_000, 9_000)
				} else {
					log(b, r, 0, 10_000)
				}
				if err := r.Finish(rundb.StatusFinished, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/100k-rows")
		})
	}
}
