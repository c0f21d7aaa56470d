package runner

import (
	"context"
	"fmt"
	"strconv"

	"github.com/rs/zerolog"

	"github.com/sslrun/sslrun/core/rundb"
)

// offlineRecorder adds `sslrun eval` results to a run already in the
// database. Everything but LogEval is refused: an offline evaluation must
// not add steps to, or end, a run it did not train.
type offlineRecorder struct {
	db  *rundb.DB
	id  int64
	log *LogRecorder
}

func newOfflineRecorder(db *rundb.DB, info RunInfo, log zerolog.Logger) (Recorder, error) {
	if info.RecorderID == "" {
		return nil, fmt.Errorf("run database %s: run %s has no database run id (was it started without a database?)", info.Database, info.ID)
	}
	id, err := strconv.ParseInt(info.RecorderID, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("run database: run id %q: %w", info.RecorderID, err)
	}
	return &offlineRecorder{db: db, id: id, log: &LogRecorder{Log: log.With().Str("run", info.Name).Logger()}}, nil
}

func (r *offlineRecorder) ID() string { return strconv.FormatInt(r.id, 10) }

func (r *offlineRecorder) LogMetrics(int64, float64, []Metric) error {
	return fmt.Errorf("offline recorder of run %d: metrics are not recorded", r.id)
}

func (r *offlineRecorder) LogArray(int64, float64, Array) error {
	return fmt.Errorf("offline recorder of run %d: arrays are not recorded", r.id)
}

func (r *offlineRecorder) LogArtifact(string, string, int64) error {
	return fmt.Errorf("offline recorder of run %d: artifacts are not recorded", r.id)
}

// LogEval adds the evaluation, marked as offline in its options so that it
// stands beside (not over) the one the run recorded at the same step.
func (r *offlineRecorder) LogEval(e EvalRecord) error {
	r.log.LogEval(e)
	ev := evaluationRow(e)
	ev.Options["source"] = "sslrun eval"
	return r.db.AddEvaluation(context.Background(), r.id, ev)
}

func (r *offlineRecorder) Finish(Status, bool, error) error { return nil }
