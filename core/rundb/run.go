package rundb

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Status is a run's lifecycle state.
type Status string

// Run states. RUNNING runs whose process died become CRASHED on the next
// Open; KILLED is a run stopped by a signal that recorded its state cleanly.
// KILLED and CRASHED runs (and FAILED runs marked resumable) can be resumed.
const (
	StatusRunning  Status = "RUNNING"
	StatusFinished Status = "FINISHED"
	StatusFailed   Status = "FAILED"
	StatusKilled   Status = "KILLED"
	StatusCrashed  Status = "CRASHED"
)

// ParseStatus parses a status name case-insensitively, for CLI flags.
func ParseStatus(s string) (Status, error) {
	st := Status(strings.ToUpper(strings.TrimSpace(s)))
	switch st {
	case StatusRunning, StatusFinished, StatusFailed, StatusKilled, StatusCrashed:
		return st, nil
	}
	return "", fmt.Errorf("unknown run status %q (want RUNNING, FINISHED, FAILED, KILLED or CRASHED)", s)
}

// Plugin identifies one plugin binary a run used.
type Plugin struct {
	Role    string `json:"role"` // e.g. "model", "loss", "analyzer"
	Name    string `json:"name"`
	Version string `json:"version"`
	SHA256  string `json:"sha256"`
	// Attempt is the run attempt that ran this plugin (1 for the first;
	// see Run.LogPlugins). Ignored by CreateRun, which records attempt 1.
	Attempt int `json:"attempt"`
}

// RunSpec describes a new run. Config is the resolved configuration as a
// JSON object; it is stored verbatim, hashed (sha256 of its canonical form)
// and flattened into typed params with dotted keys.
type RunSpec struct {
	Study       string
	Name        string
	Method      string // e.g. "simsiam": the compare table groups by Method and Variant
	Variant     string // e.g. VariantOf(lossPlugin, lossOptions); "" is the default variant
	Pipeline    string // the pipeline text as written by the user
	Config      json.RawMessage
	Seed        int64
	CodeVersion string
	Plugins     []Plugin
	Tags        map[string]string
	Params      map[string]any // extra params, merged over the flattened Config
}

// Goal tells which extreme of a metric is its best value.
type Goal string

// Goals. GoalNone metrics have no best value.
const (
	GoalNone Goal = ""
	GoalMin  Goal = "min"
	GoalMax  Goal = "max"
)

// DefaultGoal guesses a metric's goal from its key: keys containing "loss"
// are minimized, keys containing "top1", "top5" or "acc" maximized.
func DefaultGoal(key string) Goal {
	k := strings.ToLower(key)
	switch {
	case strings.Contains(k, "loss"):
		return GoalMin
	case strings.Contains(k, "top1"), strings.Contains(k, "top5"), strings.Contains(k, "acc"):
		return GoalMax
	}
	return GoalNone
}

// Context distinguishes the same metric key measured on different things,
// e.g. {split: train, tensor: z, analyzer: decompose}. It is the canonical
// JSON text of a string map (sorted keys); build it with Ctx. The zero value
// means no context and is stored as "{}".
type Context string

// Ctx builds a Context from key/value pairs: Ctx("tensor", "z", "split",
// "train"). An odd trailing key gets the value "". Build contexts once and
// reuse them: a Context is just a string.
func Ctx(kv ...string) Context {
	m := make(map[string]string, (len(kv)+1)/2)
	for i := 0; i < len(kv); i += 2 {
		v := ""
		if i+1 < len(kv) {
			v = kv[i+1]
		}
		m[kv[i]] = v
	}
	return CtxMap(m)
}

// CtxMap builds a Context from a map.
func CtxMap(m map[string]string) Context {
	if len(m) == 0 {
		return ""
	}
	b, _ := json.Marshal(m) // sorted keys; a string map cannot fail
	return Context(b)
}

// String returns the stored form ("{}" for no context).
func (c Context) String() string {
	if c == "" {
		return "{}"
	}
	return string(c)
}

// Map decodes the context.
func (c Context) Map() map[string]string {
	m := map[string]string{}
	if c != "" {
		_ = json.Unmarshal([]byte(c), &m)
	}
	return m
}

// Metric is one scalar measurement.
type Metric struct {
	Key     string
	Context Context
	Value   float64 // NaN is stored as NULL
}

// Evaluation is one evaluation result with its protocol, so that numbers
// measured differently are never mixed up.
type Evaluation struct {
	Protocol    string         `json:"protocol"`              // "knn", "linear", "online_linear", ...
	Dataset     string         `json:"dataset"`               // e.g. "cifar10"
	Split       string         `json:"split"`                 // e.g. "test"
	Feature     string         `json:"feature"`               // e.g. "backbone"
	Selection   string         `json:"selection"`             // "last" or "best" epoch
	K           int            `json:"k,omitempty"`           // kNN neighbours (0: not applicable)
	Temperature float64        `json:"temperature,omitempty"` // kNN temperature (0: not applicable)
	Options     map[string]any `json:"options,omitempty"`     // other protocol fields (epochs, lr, ...)
	Step        int64          `json:"step"`
	Epoch       float64        `json:"epoch"`
	Top1        float64        `json:"top1"` // fraction in [0, 1]
	Top5        float64        `json:"top5"` // fraction in [0, 1]; NaN if not measured
	Time        time.Time      `json:"time"`
}

// Dataset records the digest of a data set a run used.
type Dataset struct {
	Role       string `json:"role"` // "train", "eval", ...
	Name       string `json:"name"`
	Digest     string `json:"digest"` // e.g. sha256 hex of the files or sample list
	NumSamples int64  `json:"num_samples"`
	Source     string `json:"source"` // path or URL
}

// Artifact is a file a run produced.
type Artifact struct {
	Kind   string    `json:"kind"` // "checkpoint", "report", ...
	Path   string    `json:"path"`
	SHA256 string    `json:"sha256"`
	Size   int64     `json:"size"`
	Step   int64     `json:"step"`
	Time   time.Time `json:"time"`
}

// Default flush policy: a batch is committed when this many rows are
// buffered or this long after the previous commit, whichever comes first.
const (
	DefaultFlushRows     = 4096
	DefaultFlushInterval = 2 * time.Second
	// DefaultMaxPendingRows bounds the metric rows a Run keeps buffered
	// while its commits fail (about 64 MiB). Past it Log refuses new rows
	// with ErrMetricsDropped; the bound is at least 4 flush batches.
	DefaultMaxPendingRows = 1 << 20
	// insertChunkRows bounds the rows of one multi-row INSERT: larger
	// statements stop paying off well before SQLite's variable limit.
	insertChunkRows = 256
)

// Run writes one run. Its methods are safe for concurrent use. Metric rows
// are buffered by Log and committed by Flush (also called by Log when the
// flush policy says so, and by Finish); every other method writes at once.
type Run struct {
	db      *DB
	id      int64
	uuid    string
	attempt int

	mu   sync.Mutex
	conn *sql.Conn
	ins  map[int]*sql.Stmt // metric INSERT by chunk rows
	upd  *sql.Stmt         // summary UPDATE
	rec  *sql.Stmt         // summary recompute, prepared on first use
	beat time.Time         // last heartbeat written

	// Buffers reused by every flush.
	ids       []int64
	args      []any
	aggs      []agg
	aggIdx    map[int64]int
	chunkRows int
	buf       []pending
	series    map[seriesKey]int64
	goals     map[string]Goal
	flushRows int
	interval  time.Duration
	lastFlush time.Time
	finished  bool

	// Failed-commit state: Log retries a failed flush only after a
	// backoff that doubles with every consecutive failure, so a full disk
	// is not hit with an ever-growing transaction on every call.
	maxPending int       // buffered rows beyond which Log refuses rows
	failErr    error     // last flush error; nil after a success
	failures   int       // consecutive failed flushes
	retryAt    time.Time // Log does not retry before this
	dropped    int64     // rows refused since the buffer was full
	attempts   int64     // flush transactions tried (tests)
}

// Backoff of Log's flush retries after a failed commit.
const (
	retryMin = time.Second
	retryMax = time.Minute
)

// ErrMetricsDropped: commits kept failing and the metric buffer reached its
// bound, so Log refused the rows it was given. The error also matches the
// cause of the failed commit (e.g. ErrDiskFull).
var ErrMetricsDropped = errors.New("metric rows dropped")

type seriesKey struct {
	key string
	ctx Context
}

type pending struct {
	s     seriesKey
	step  int64
	epoch float64
	value float64
	time  int64
}

// ID returns the run's database id.
func (r *Run) ID() int64 { return r.id }

// UUID returns the run's globally unique id.
func (r *Run) UUID() string { return r.uuid }

// Attempt returns 1 for a new run and counts up with each resume.
func (r *Run) Attempt() int { return r.attempt }

// CreateRun records a new RUNNING run owned by this process and returns its
// writer.
func (db *DB) CreateRun(ctx context.Context, spec RunSpec) (*Run, error) {
	if db.readOnly {
		return nil, db.wrap(errors.New("opened read-only"), "create run")
	}
	cfg := spec.Config
	if len(bytes.TrimSpace(cfg)) == 0 {
		cfg = json.RawMessage("{}")
	}
	params, hash, err := flattenConfig(cfg)
	if err != nil {
		return nil, db.wrap(err, "create run: config")
	}
	for k, v := range spec.Params {
		p, err := typedParam(k, v)
		if err != nil {
			return nil, db.wrap(err, "create run: param %s", k)
		}
		params[k] = p
	}
	var rb [16]byte
	if _, err := rand.Read(rb[:]); err != nil {
		return nil, db.wrap(err, "create run: uuid")
	}
	uuid := hex.EncodeToString(rb[:])
	self := selfIdentity()
	now := nowMillis()

	r, err := db.newRun(ctx)
	if err != nil {
		return nil, err
	}
	err = r.tx(ctx, func(tx execer) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO runs (uuid, study, name, method, variant, status,
			start_time, pipeline, config_json, config_hash, seed, code_version, host, pid, pid_start,
			boot_id, heartbeat, attempt) VALUES (?,?,?,?,?,'RUNNING',?,?,?,?,?,?,?,?,?,?,?,1)`,
			uuid, spec.Study, spec.Name, spec.Method, spec.Variant, now, spec.Pipeline, string(cfg), hash,
			spec.Seed, spec.CodeVersion, self.host, self.pid, self.start, self.bootID, now)
		if err != nil {
			return err
		}
		if r.id, err = res.LastInsertId(); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO run_attempts (run_id, attempt, start_time, status, host, pid)
			VALUES (?, 1, ?, 'RUNNING', ?, ?)`, r.id, now, self.host, self.pid); err != nil {
			return err
		}
		if err := insertPlugins(ctx, tx, r.id, 1, spec.Plugins); err != nil {
			return err
		}
		if err := insertParams(ctx, tx, r.id, params); err != nil {
			return err
		}
		return insertTags(ctx, tx, r.id, spec.Tags)
	})
	if err != nil {
		r.close()
		return nil, db.wrap(err, "create run")
	}
	r.uuid, r.attempt = uuid, 1
	return r, nil
}

func insertPlugins(ctx context.Context, tx execer, id int64, attempt int, plugins []Plugin) error {
	for _, p := range plugins {
		if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO plugins (run_id, attempt, role, name, version, sha256)
			VALUES (?,?,?,?,?,?)`, id, attempt, p.Role, p.Name, p.Version, p.SHA256); err != nil {
			return err
		}
	}
	return nil
}

// LogPlugins records the plugins this attempt of the run runs with: a
// resumed run calls it after ResumeRun, since the binary or an external
// plugin may have changed since the run started.
func (r *Run) LogPlugins(ctx context.Context, plugins []Plugin) error {
	err := r.tx(ctx, func(tx execer) error { return insertPlugins(ctx, tx, r.id, r.attempt, plugins) })
	if err != nil {
		return r.db.wrap(err, "run %d: log plugins", r.id)
	}
	return nil
}

// ResumeRun reopens a KILLED or CRASHED run (or a FAILED one marked
// resumable) for writing by this process: status back to RUNNING, the
// attempt counter incremented and a run_attempts row added. Metrics keep
// accumulating in the same series; LastStep tells where the run stopped.
// Steps the new attempt logs again (those after the checkpoint it restarts
// from) replace the earlier attempt's rows, arrays and evaluations.
func (db *DB) ResumeRun(ctx context.Context, id int64) (*Run, error) {
	if db.readOnly {
		return nil, db.wrap(errors.New("opened read-only"), "resume run %d", id)
	}
	r, err := db.newRun(ctx)
	if err != nil {
		return nil, err
	}
	self := selfIdentity()
	now := nowMillis()
	r.id = id
	err = r.tx(ctx, func(tx execer) error {
		var status Status
		var resumable bool
		if err := tx.QueryRowContext(ctx, `SELECT uuid, status, resumable, attempt FROM runs WHERE id = ?`, id).
			Scan(&r.uuid, &status, &resumable, &r.attempt); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("run %d: %w", id, ErrNotFound)
			}
			return err
		}
		if !(status == StatusKilled || status == StatusCrashed || status == StatusFailed && resumable) {
			return fmt.Errorf("run %d is %s: only KILLED, CRASHED or resumable FAILED runs can be resumed", id, status)
		}
		r.attempt++
		if _, err := tx.ExecContext(ctx, `UPDATE runs SET status = 'RUNNING', end_time = NULL, error = '',
			host = ?, pid = ?, pid_start = ?, boot_id = ?, heartbeat = ?, attempt = ? WHERE id = ?`,
			self.host, self.pid, self.start, self.bootID, now, r.attempt, id); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO run_attempts (run_id, attempt, start_time, status, host, pid)
			VALUES (?, ?, ?, 'RUNNING', ?, ?)`, id, r.attempt, now, self.host, self.pid)
		return err
	})
	if err != nil {
		r.close()
		return nil, db.wrap(err, "resume run %d", id)
	}
	return r, nil
}

// newRun prepares a writer with its own connection, so its prepared
// statements stay valid and its transactions never wait on the pool.
func (db *DB) newRun(ctx context.Context) (*Run, error) {
	conn, err := db.sql.Conn(ctx)
	if err != nil {
		return nil, db.wrap(err, "open writer connection")
	}
	// Checkpoint the WAL every 4000 pages (16 MiB) instead of 1000: each
	// checkpoint fsyncs, and with small per-step commits the default
	// doubled the cost of a commit (measured: 770 vs 370 us).
	if _, err := conn.ExecContext(ctx, "PRAGMA wal_autocheckpoint = 4000"); err != nil {
		conn.Close()
		return nil, db.wrap(err, "open writer connection")
	}
	if db.connHook != nil {
		if err := db.connHook(ctx, conn); err != nil {
			conn.Close()
			return nil, db.wrap(err, "open writer connection")
		}
	}
	r := &Run{
		db: db, conn: conn,
		series:     map[seriesKey]int64{},
		aggIdx:     map[int64]int{},
		goals:      map[string]Goal{},
		flushRows:  DefaultFlushRows,
		interval:   DefaultFlushInterval,
		lastFlush:  time.Now(),
		maxPending: DefaultMaxPendingRows,
	}
	r.chunkRows = min(insertChunkRows, db.maxVars/5)
	if r.chunkRows < 1 {
		r.chunkRows = 1
	}
	r.ins = map[int]*sql.Stmt{}
	if r.upd, err = conn.PrepareContext(ctx, summaryUpdateSQL); err != nil {
		conn.Close()
		return nil, db.wrap(err, "prepare summary update")
	}
	return r, nil
}

// slicesGrow returns s resized to n, reusing its array when large enough.
func slicesGrow(s []int64, n int) []int64 {
	if cap(s) < n {
		return make([]int64, n)
	}
	return s[:n]
}

func metricInsertSQL(rows int) string {
	var b strings.Builder
	b.WriteString("INSERT INTO metrics (series_id, step, epoch, value, time) VALUES ")
	for i := range rows {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?,?,?,?,?)")
	}
	// A step logged again replaces the stored row: a resumed attempt
	// re-logs the steps after its checkpoint (see docs/rundb.md).
	b.WriteString(" ON CONFLICT (series_id, step) DO UPDATE SET epoch = excluded.epoch, value = excluded.value, time = excluded.time")
	return b.String()
}

// summaryUpdateSQL folds one batch's aggregate of a series into its
// summary. All right-hand sides see the row before the update. It applies
// only when every step of the batch (?11: the smallest) is past the
// series' last step, so that no row of the batch replaced a stored one;
// otherwise it changes nothing and the writer runs summaryRecomputeSQL.
const summaryUpdateSQL = `UPDATE series SET
	count      = count + ?1,
	last_value = CASE WHEN last_step IS NULL OR ?2 >= last_step THEN ?3 ELSE last_value END,
	last_epoch = CASE WHEN last_step IS NULL OR ?2 >= last_step THEN ?4 ELSE last_epoch END,
	last_time  = CASE WHEN last_step IS NULL OR ?2 >= last_step THEN ?5 ELSE last_time END,
	last_step  = CASE WHEN last_step IS NULL OR ?2 >= last_step THEN ?2 ELSE last_step END,
	min_step   = CASE WHEN ?6 IS NOT NULL AND (min_value IS NULL OR ?6 < min_value) THEN ?7 ELSE min_step END,
	min_value  = CASE WHEN ?6 IS NOT NULL AND (min_value IS NULL OR ?6 < min_value) THEN ?6 ELSE min_value END,
	max_step   = CASE WHEN ?8 IS NOT NULL AND (max_value IS NULL OR ?8 > max_value) THEN ?9 ELSE max_step END,
	max_value  = CASE WHEN ?8 IS NOT NULL AND (max_value IS NULL OR ?8 > max_value) THEN ?8 ELSE max_value END
	WHERE id = ?10 AND (last_step IS NULL OR last_step < ?11)`

// summaryRecomputeSQL recomputes a series' summary from its metric rows,
// for a batch that replaced rows (steps logged again, e.g. by a resumed
// attempt) or was not in step order, where folding the batch into the old
// summary would count replaced rows twice and could keep a replaced
// extreme. Ties go to the earliest step, as in summaryUpdateSQL, which
// keeps the first of equal values. Migration 2 holds a copy of it.
const summaryRecomputeSQL = `UPDATE series SET
	count = (SELECT count(*) FROM metrics m WHERE m.series_id = series.id),
	(last_step, last_value, last_epoch, last_time) = (SELECT step, value, epoch, time FROM metrics m
		WHERE m.series_id = series.id ORDER BY step DESC LIMIT 1),
	(min_step, min_value) = (SELECT step, value FROM metrics m
		WHERE m.series_id = series.id AND value IS NOT NULL ORDER BY value, step LIMIT 1),
	(max_step, max_value) = (SELECT step, value FROM metrics m
		WHERE m.series_id = series.id AND value IS NOT NULL ORDER BY value DESC, step LIMIT 1)
	WHERE id = ?`

// execer is what a transaction body needs: the writer's dedicated
// connection inside BEGIN IMMEDIATE ... COMMIT.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	PrepareContext(ctx context.Context, query string) (*sql.Stmt, error)
}

// tx runs f in one IMMEDIATE transaction on the writer's connection. It
// issues BEGIN/COMMIT itself rather than using sql.Tx, because
// sql.Tx.Stmt re-prepares a connection's statements in every transaction,
// which cost more than the inserts for small batches.
func (r *Run) tx(ctx context.Context, f func(execer) error) error {
	if _, err := r.conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return err
	}
	err := f(r.conn)
	if err == nil {
		_, err = r.conn.ExecContext(ctx, "COMMIT")
	}
	if err != nil {
		// Also after a failed COMMIT (e.g. SQLITE_FULL), which can leave
		// the transaction open. An error here means none was open.
		r.conn.ExecContext(context.Background(), "ROLLBACK")
	}
	return err
}

// insertStmt returns the prepared INSERT for a chunk of rows, prepared
// once per size on the writer's connection.
func (r *Run) insertStmt(ctx context.Context, rows int) (*sql.Stmt, error) {
	if st := r.ins[rows]; st != nil {
		return st, nil
	}
	st, err := r.conn.PrepareContext(ctx, metricInsertSQL(rows))
	if err != nil {
		return nil, err
	}
	if len(r.ins) >= 64 { // bound the cache: odd batch sizes are rare
		for k, v := range r.ins {
			v.Close()
			delete(r.ins, k)
		}
	}
	r.ins[rows] = st
	return st, nil
}

// SetFlushPolicy changes when Log commits: after rows buffered rows or
// interval since the last commit (0 keeps the current value).
func (r *Run) SetFlushPolicy(rows int, interval time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if rows > 0 {
		r.flushRows = rows
	}
	if interval > 0 {
		r.interval = interval
	}
}

// SetGoal sets the goal of metric key for series created from now on (the
// default is DefaultGoal(key)).
func (r *Run) SetGoal(key string, g Goal) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.goals[key] = g
}

// Log buffers metrics measured at a step (and epoch, which may be
// fractional). It commits the buffer when the flush policy says so and
// returns that commit's error.
//
// A series holds one value per step: logging a (key, context, step) again
// replaces the stored value and the summary is recomputed, so a resumed
// attempt that re-logs the steps after its checkpoint leaves no
// duplicates.
//
// After a failed commit (a full disk, say) the rows stay buffered and are
// never dropped silently: every later Log returns an error wrapping the
// failure (errors.Is matches its class, e.g. ErrDiskFull) until a commit
// succeeds. Log retries the commit only after a backoff that starts at one
// second and doubles up to a minute, so a full disk is not hit on every
// call; Flush and Finish always retry. When the buffer holds
// DefaultMaxPendingRows rows (at least four flush batches), Log refuses
// further rows with an error matching ErrMetricsDropped, and Finish records
// how many were refused. A runner that stops on Log's error therefore stops
// at the first failed commit with a clear error, and one that goes on loses
// nothing until the bound, and nothing silently after it.
func (r *Run) Log(step int64, epoch float64, ms ...Metric) error {
	now := nowMillis()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.finished {
		return r.db.wrap(errors.New("run already finished"), "log metrics of run %d", r.id)
	}
	if r.failErr != nil && len(r.buf)+len(ms) > max(r.maxPending, 4*r.flushRows) {
		r.dropped += int64(len(ms))
		return fmt.Errorf("run %d: %d metrics of step %d not recorded, %d rows buffered and not committed, %d dropped so far: %w: %w",
			r.id, len(ms), step, len(r.buf), r.dropped, ErrMetricsDropped, r.failErr)
	}
	for _, m := range ms {
		r.buf = append(r.buf, pending{seriesKey{m.Key, m.Context}, step, epoch, m.Value, now})
	}
	if r.failErr != nil && time.Now().Before(r.retryAt) {
		return fmt.Errorf("run %d: %d metric rows buffered and not committed (retry in %v): %w",
			r.id, len(r.buf), time.Until(r.retryAt).Round(time.Millisecond), r.failErr)
	}
	if r.failErr != nil || len(r.buf) >= r.flushRows || time.Since(r.lastFlush) >= r.interval {
		return r.flushLocked(context.Background())
	}
	return nil
}

// Flush commits the buffered metric rows and their summaries in one
// transaction and refreshes the run's heartbeat. On error nothing of the
// batch is committed and the rows stay buffered.
func (r *Run) Flush() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.finished {
		return nil
	}
	return r.flushLocked(context.Background())
}

type agg struct {
	id               int64
	n                int64
	firstStep        int64 // of the batch's first row
	unordered        bool  // a row's step was not past the previous one's
	lastStep         int64
	lastValue        float64
	lastEpoch        float64
	lastTime         int64
	hasMin           bool
	min, max         float64
	minStep, maxStep int64
}

func nullFloat(v float64) any {
	if math.IsNaN(v) {
		return nil
	}
	return v
}

// flushLocked commits the buffer and keeps the failed-commit state that
// Log's retry backoff and buffer bound use.
func (r *Run) flushLocked(ctx context.Context) error {
	err := r.commitLocked(ctx)
	if err == nil {
		r.failErr, r.failures, r.retryAt = nil, 0, time.Time{}
		return nil
	}
	r.failErr = err
	r.failures++
	r.retryAt = time.Now().Add(min(retryMin<<min(r.failures-1, 16), retryMax))
	return err
}

func (r *Run) commitLocked(ctx context.Context) error {
	r.lastFlush = time.Now()
	r.attempts++
	if len(r.buf) == 0 {
		_, err := r.conn.ExecContext(ctx, `UPDATE runs SET heartbeat = ? WHERE id = ?`, nowMillis(), r.id)
		return r.db.wrap(err, "heartbeat of run %d", r.id)
	}
	newSeries := map[seriesKey]int64{}
	beat := false
	err := r.tx(ctx, func(tx execer) error {
		// Resolve series ids; new ones enter the cache only after commit.
		ids := slicesGrow(r.ids[:0], len(r.buf))
		r.ids = ids
		for i, p := range r.buf {
			id, ok := r.series[p.s]
			if !ok {
				if id, ok = newSeries[p.s]; !ok {
					var err error
					if id, err = r.seriesID(ctx, tx, p.s); err != nil {
						return err
					}
					newSeries[p.s] = id
				}
			}
			ids[i] = id
		}
		// Metric rows, chunked below the bind-variable limit.
		args := r.args[:0]
		defer func() { r.args = args[:0] }()
		for lo := 0; lo < len(r.buf); lo += r.chunkRows {
			hi := min(lo+r.chunkRows, len(r.buf))
			args = args[:0]
			for i := lo; i < hi; i++ {
				p := &r.buf[i]
				args = append(args, ids[i], p.step, p.epoch, nullFloat(p.value), p.time)
			}
			ins, err := r.insertStmt(ctx, hi-lo)
			if err != nil {
				return err
			}
			if _, err := ins.ExecContext(ctx, args...); err != nil {
				return err
			}
		}
		// Summaries, one UPDATE per series touched.
		clear(r.aggIdx)
		aggs := r.aggs[:0]
		for i, p := range r.buf {
			j, ok := r.aggIdx[ids[i]]
			if !ok {
				j = len(aggs)
				r.aggIdx[ids[i]] = j
				aggs = append(aggs, agg{id: ids[i], firstStep: p.step, lastStep: math.MinInt64})
			}
			a := &aggs[j]
			a.n++
			if p.step <= a.lastStep {
				a.unordered = true // a step again, or out of order
			}
			if p.step >= a.lastStep {
				a.lastStep, a.lastValue, a.lastEpoch, a.lastTime = p.step, p.value, p.epoch, p.time
			}
			if !math.IsNaN(p.value) {
				if !a.hasMin || p.value < a.min {
					a.min, a.minStep = p.value, p.step
				}
				if !a.hasMin || p.value > a.max {
					a.max, a.maxStep = p.value, p.step
				}
				a.hasMin = true
			}
		}
		r.aggs = aggs
		for i := range aggs {
			a := &aggs[i]
			var mn, mx any
			if a.hasMin {
				mn, mx = a.min, a.max
			}
			if !a.unordered {
				res, err := r.upd.ExecContext(ctx, a.n, a.lastStep, nullFloat(a.lastValue), a.lastEpoch, a.lastTime,
					mn, a.minStep, mx, a.maxStep, a.id, a.firstStep)
				if err != nil {
					return err
				}
				n, err := res.RowsAffected()
				if err != nil {
					return err
				}
				if n == 1 {
					continue
				}
			}
			// The batch replaced rows or is out of order: recompute.
			if r.rec == nil {
				st, err := r.conn.PrepareContext(ctx, summaryRecomputeSQL)
				if err != nil {
					return err
				}
				r.rec = st
			}
			if _, err := r.rec.ExecContext(ctx, a.id); err != nil {
				return err
			}
		}
		// The heartbeat at most once a second: it dirties one more page
		// per commit.
		if time.Since(r.beat) < time.Second {
			return nil
		}
		beat = true
		_, err := tx.ExecContext(ctx, `UPDATE runs SET heartbeat = ? WHERE id = ?`, nowMillis(), r.id)
		return err
	})
	if err != nil {
		return r.db.wrap(err, "write %d metric rows of run %d", len(r.buf), r.id)
	}
	if beat {
		r.beat = time.Now()
	}
	for k, id := range newSeries {
		r.series[k] = id
	}
	r.buf = r.buf[:0]
	return nil
}

// seriesID returns the id of a series, creating it with its goal.
func (r *Run) seriesID(ctx context.Context, tx execer, s seriesKey) (int64, error) {
	g, ok := r.goals[s.key]
	if !ok {
		g = DefaultGoal(s.key)
	}
	if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO series (run_id, key, context, goal) VALUES (?,?,?,?)`,
		r.id, s.key, s.ctx.String(), string(g)); err != nil {
		return 0, err
	}
	var id int64
	err := tx.QueryRowContext(ctx, `SELECT id FROM series WHERE run_id = ? AND key = ? AND context = ?`,
		r.id, s.key, s.ctx.String()).Scan(&id)
	return id, err
}

// LastStep returns the largest step logged (and committed) for this run
// across all its metrics, and false if none was.
func (r *Run) LastStep(ctx context.Context) (int64, bool, error) {
	var s sql.NullInt64
	err := r.db.sql.QueryRowContext(ctx, `SELECT max(last_step) FROM series WHERE run_id = ?`, r.id).Scan(&s)
	if err != nil {
		return 0, false, r.db.wrap(err, "last step of run %d", r.id)
	}
	return s.Int64, s.Valid, nil
}

// SetParams records params (ints, floats, bools, strings, nil; anything
// else is stored as JSON), replacing existing keys.
func (r *Run) SetParams(ctx context.Context, params map[string]any) error {
	ps := map[string]param{}
	for k, v := range params {
		p, err := typedParam(k, v)
		if err != nil {
			return r.db.wrap(err, "set param %s of run %d", k, r.id)
		}
		ps[k] = p
	}
	return r.write(ctx, "set params", func(tx execer) error { return insertParams(ctx, tx, r.id, ps) })
}

// SetTags records tags, replacing existing keys.
func (r *Run) SetTags(ctx context.Context, tags map[string]string) error {
	return r.write(ctx, "set tags", func(tx execer) error { return insertTags(ctx, tx, r.id, tags) })
}

// SetResumable records whether the run can be continued (e.g. a checkpoint
// exists); a FAILED run can be resumed only when marked resumable.
func (r *Run) SetResumable(ctx context.Context, resumable bool) error {
	return r.write(ctx, "set resumable", func(tx execer) error {
		_, err := tx.ExecContext(ctx, `UPDATE runs SET resumable = ? WHERE id = ?`, resumable, r.id)
		return err
	})
}

// Heartbeat records that the run's process is alive (Flush does this too).
func (r *Run) Heartbeat(ctx context.Context) error {
	return r.write(ctx, "heartbeat", func(tx execer) error {
		_, err := tx.ExecContext(ctx, `UPDATE runs SET heartbeat = ? WHERE id = ?`, nowMillis(), r.id)
		return err
	})
}

// LogEvaluation records an evaluation result. A zero Time means now. An
// evaluation with the same protocol fields (protocol, dataset, split,
// feature, selection, k, temperature, options) and step as a stored one
// replaces it: a resumed run may evaluate a step again.
func (r *Run) LogEvaluation(ctx context.Context, e Evaluation) error {
	return r.write(ctx, "log "+e.Protocol+" evaluation", func(tx execer) error {
		return insertEvaluation(ctx, tx, r.id, e)
	})
}

// AddEvaluation records an evaluation of an existing run of any status
// without writing anything else: `sslrun eval` evaluates a finished run's
// checkpoint offline and must not reopen or change the run. The replacement
// rule is LogEvaluation's.
func (db *DB) AddEvaluation(ctx context.Context, runID int64, e Evaluation) error {
	tx, err := db.sql.BeginTx(ctx, nil)
	if err != nil {
		return db.wrap(err, "add %s evaluation to run %d", e.Protocol, runID)
	}
	var n int
	err = tx.QueryRowContext(ctx, "SELECT count(*) FROM runs WHERE id = ?", runID).Scan(&n)
	if err == nil && n == 0 {
		err = fmt.Errorf("no run %d", runID)
	}
	if err == nil {
		err = insertEvaluation(ctx, tx, runID, e)
	}
	if err == nil {
		err = tx.Commit()
	} else {
		tx.Rollback()
	}
	return db.wrap(err, "add %s evaluation to run %d", e.Protocol, runID)
}

// insertEvaluation writes e for run id in tx.
func insertEvaluation(ctx context.Context, tx execer, id int64, e Evaluation) error {
	opts := "{}"
	if len(e.Options) > 0 {
		b, err := json.Marshal(e.Options)
		if err != nil {
			return err
		}
		opts = string(b)
	}
	t := nowMillis()
	if !e.Time.IsZero() {
		t = e.Time.UnixMilli()
	}
	var k, temp any
	if e.K > 0 {
		k = e.K
	}
	if e.Temperature > 0 {
		temp = e.Temperature
	}
	// REPLACE: the unique index evaluations_point is on expressions (NULLs
	// indexed as -1), which an upsert's conflict target cannot name;
	// nothing references an evaluation's id.
	_, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO evaluations (run_id, protocol, dataset, split, feature,
		selection, k, temperature, options, step, epoch, top1, top5, time) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
		id, e.Protocol, e.Dataset, e.Split, e.Feature, e.Selection, k, temp, opts, e.Step, e.Epoch,
		nullFloat(e.Top1), nullFloat(e.Top5), t)
	return err
}

// LogArray records an analyzer array (e.g. a residual spectrum) at a step.
// data is []float32, []float64 or []int64 with len equal to the product of
// shape; it is stored little-endian in a blob. Logging the same key,
// context and step again replaces the stored array.
func (r *Run) LogArray(ctx context.Context, key string, c Context, step int64, epoch float64, shape []int, data any) error {
	dtype, blob, n, err := encodeArray(data)
	if err != nil {
		return r.db.wrap(err, "log array %s of run %d", key, r.id)
	}
	want := 1
	for _, d := range shape {
		want *= d
	}
	if want != n {
		return r.db.wrap(fmt.Errorf("shape %v holds %d values, data has %d", shape, want, n), "log array %s of run %d", key, r.id)
	}
	sh, _ := json.Marshal(shape)
	return r.write(ctx, "log array "+key, func(tx execer) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO arrays (run_id, key, context, step, epoch, dtype, shape, data, time)
			VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT (run_id, key, context, step) DO UPDATE SET epoch = excluded.epoch,
			dtype = excluded.dtype, shape = excluded.shape, data = excluded.data, time = excluded.time`,
			r.id, key, c.String(), step, epoch, dtype, string(sh), blob, nowMillis())
		return err
	})
}

// LogArtifact records a file the run produced, hashing it now. Logging the
// same path again (e.g. an overwritten "last" checkpoint) replaces the
// record.
func (r *Run) LogArtifact(ctx context.Context, kind, path string, step int64) error {
	f, err := os.Open(path)
	if err != nil {
		return r.db.wrap(err, "log artifact of run %d", r.id)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return r.db.wrap(err, "log artifact of run %d: hash %s", r.id, path)
	}
	return r.LogArtifactDigest(ctx, Artifact{Kind: kind, Path: path, SHA256: hex.EncodeToString(h.Sum(nil)), Size: n, Step: step})
}

// LogArtifactDigest records an artifact whose digest is already known.
func (r *Run) LogArtifactDigest(ctx context.Context, a Artifact) error {
	t := nowMillis()
	if !a.Time.IsZero() {
		t = a.Time.UnixMilli()
	}
	return r.write(ctx, "log artifact "+a.Path, func(tx execer) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO artifacts (run_id, kind, path, sha256, size, step, time)
			VALUES (?,?,?,?,?,?,?) ON CONFLICT (run_id, path) DO UPDATE SET kind = excluded.kind,
			sha256 = excluded.sha256, size = excluded.size, step = excluded.step, time = excluded.time`,
			r.id, a.Kind, a.Path, a.SHA256, a.Size, a.Step, t)
		return err
	})
}

// LogDataset records a data set digest, replacing an earlier record of the
// same role and name.
func (r *Run) LogDataset(ctx context.Context, d Dataset) error {
	return r.write(ctx, "log dataset "+d.Name, func(tx execer) error {
		_, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO datasets (run_id, role, name, digest, num_samples, source)
			VALUES (?,?,?,?,?,?)`, r.id, d.Role, d.Name, d.Digest, d.NumSamples, d.Source)
		return err
	})
}

// write runs one short transaction under the run's lock.
func (r *Run) write(ctx context.Context, op string, f func(execer) error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	op = fmt.Sprintf("%s of run %d", op, r.id)
	if r.finished {
		return r.db.wrap(errors.New("run already finished"), "%s", op)
	}
	return r.db.wrap(r.tx(ctx, f), "%s", op)
}

// Finish flushes the buffered metrics, records the final status (FINISHED,
// FAILED or KILLED) with runErr's message and the end time, and releases the
// writer. If the flush fails, a FINISHED run is recorded as FAILED with the
// flush error. If even the status cannot be written (disk full, read-only),
// the run stays RUNNING in the file and the next Open marks it CRASHED;
// the returned error says so.
func (r *Run) Finish(status Status, runErr error) error {
	ctx := context.Background()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.finished {
		return nil
	}
	switch status {
	case StatusFinished, StatusFailed, StatusKilled:
	default:
		return r.db.wrap(fmt.Errorf("invalid final status %q", status), "finish run %d", r.id)
	}
	flushErr := r.flushLocked(ctx)
	msg := ""
	if runErr != nil {
		msg = runErr.Error()
	}
	if flushErr != nil {
		if status == StatusFinished {
			status = StatusFailed
		}
		msg = strings.TrimPrefix(msg+"; "+flushErr.Error(), "; ")
	}
	if r.dropped > 0 {
		if status == StatusFinished {
			status = StatusFailed
		}
		msg = strings.TrimPrefix(fmt.Sprintf("%s; %d metric rows were dropped after commits failed", msg, r.dropped), "; ")
	}
	now := nowMillis()
	record := func(tx execer) error {
		if _, err := tx.ExecContext(ctx, `UPDATE runs SET status = ?, end_time = ?, heartbeat = ?, error = ?
			WHERE id = ?`, status, now, now, msg, r.id); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `UPDATE run_attempts SET status = ?, end_time = ? WHERE run_id = ? AND attempt = ?`,
			status, now, r.id, r.attempt)
		return err
	}
	err := r.tx(ctx, record)
	if errors.Is(err, ErrDiskFull) && r.db.releaseReserve() {
		err = r.tx(ctx, record)
	}
	r.finished = true
	r.close()
	if err != nil {
		return errors.Join(flushErr, r.db.wrap(err, "record final status %s of run %d (it will show as CRASHED)", status, r.id))
	}
	return flushErr
}

func (r *Run) close() {
	for _, st := range r.ins {
		st.Close()
	}
	if r.upd != nil {
		r.upd.Close()
	}
	if r.rec != nil {
		r.rec.Close()
	}
	r.conn.Close()
}

// VariantOf names a variant by a plugin name and a short hash of its
// options (canonical JSON), e.g. "simsiam#3f2a9c1d": runs with the same
// loss plugin and options group together in Compare.
func VariantOf(plugin string, options any) string {
	b, err := canonicalJSON(options)
	if err != nil || string(b) == "null" || string(b) == "{}" {
		return plugin
	}
	h := sha256.Sum256(b)
	return plugin + "#" + hex.EncodeToString(h[:4])
}

// param is a typed param value.
type param struct {
	typ   string
	value any
}

func typedParam(key string, v any) (param, error) {
	switch x := v.(type) {
	case nil:
		return param{"null", nil}, nil
	case string:
		return param{"string", x}, nil
	case bool:
		return param{"bool", x}, nil
	case int:
		return param{"int", int64(x)}, nil
	case int32:
		return param{"int", int64(x)}, nil
	case int64:
		return param{"int", x}, nil
	case uint32:
		return param{"int", int64(x)}, nil
	case float32:
		return param{"float", float64(x)}, nil
	case float64:
		return param{"float", x}, nil
	case json.Number:
		if i, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			return param{"int", i}, nil
		}
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil {
			return param{}, err
		}
		return param{"float", f}, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return param{}, err
	}
	return param{"json", string(b)}, nil
}

// flattenConfig turns a JSON object into dotted-key params (arrays are kept
// whole as JSON) and returns the sha256 of its canonical form.
func flattenConfig(cfg json.RawMessage) (map[string]param, string, error) {
	dec := json.NewDecoder(bytes.NewReader(cfg))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, "", fmt.Errorf("not JSON: %w", err)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, "", errors.New("not a JSON object")
	}
	canon, err := json.Marshal(obj) // map keys sorted, numbers verbatim
	if err != nil {
		return nil, "", err
	}
	h := sha256.Sum256(canon)
	out := map[string]param{}
	var walk func(prefix string, m map[string]any) error
	walk = func(prefix string, m map[string]any) error {
		for k, v := range m {
			key := prefix + k
			if sub, ok := v.(map[string]any); ok && len(sub) > 0 {
				if err := walk(key+".", sub); err != nil {
					return err
				}
				continue
			}
			p, err := typedParam(key, v)
			if err != nil {
				return err
			}
			out[key] = p
		}
		return nil
	}
	if err := walk("", obj); err != nil {
		return nil, "", err
	}
	return out, hex.EncodeToString(h[:]), nil
}

func canonicalJSON(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var x any
	if err := dec.Decode(&x); err != nil {
		return nil, err
	}
	return json.Marshal(x)
}

func insertParams(ctx context.Context, tx execer, runID int64, ps map[string]param) error {
	if len(ps) == 0 {
		return nil
	}
	keys := make([]string, 0, len(ps))
	for k := range ps {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	stmt, err := tx.PrepareContext(ctx, `INSERT OR REPLACE INTO params (run_id, key, type, value) VALUES (?,?,?,?)`)
	if err != nil {
		return err
	}
	defer stmt.Close()
	for _, k := range keys {
		if _, err := stmt.ExecContext(ctx, runID, k, ps[k].typ, ps[k].value); err != nil {
			return err
		}
	}
	return nil
}

func insertTags(ctx context.Context, tx execer, runID int64, tags map[string]string) error {
	for k, v := range tags {
		if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO tags (run_id, key, value) VALUES (?,?,?)`, runID, k, v); err != nil {
			return err
		}
	}
	return nil
}
