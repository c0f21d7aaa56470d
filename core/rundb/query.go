package rundb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// RunFilter selects runs for ListRuns; zero fields match everything.
type RunFilter struct {
	Study  string
	Status []Status
	Method string
	Limit  int // 0: no limit
}

// RunRow is one line of `sslrun runs ls`.
type RunRow struct {
	ID         int64      `json:"id"`
	UUID       string     `json:"uuid"`
	Study      string     `json:"study"`
	Name       string     `json:"name"`
	Method     string     `json:"method"`
	Variant    string     `json:"variant"`
	Status     Status     `json:"status"`
	Seed       int64      `json:"seed"`
	Start      time.Time  `json:"start"`
	End        *time.Time `json:"end,omitempty"`
	Attempt    int        `json:"attempt"`
	Host       string     `json:"host"`
	ConfigHash string     `json:"config_hash"`
}

const runRowColumns = `id, uuid, study, name, method, variant, status, seed, start_time, end_time, attempt, host, config_hash`

func scanRunRow(sc interface{ Scan(...any) error }, r *RunRow) error {
	var seed sql.NullInt64
	var start int64
	var end sql.NullInt64
	if err := sc.Scan(&r.ID, &r.UUID, &r.Study, &r.Name, &r.Method, &r.Variant, &r.Status, &seed,
		&start, &end, &r.Attempt, &r.Host, &r.ConfigHash); err != nil {
		return err
	}
	r.Seed = seed.Int64
	r.Start = fromMillis(start)
	if end.Valid {
		t := fromMillis(end.Int64)
		r.End = &t
	}
	return nil
}

// ListRuns returns the runs matching f, newest first.
func (db *DB) ListRuns(ctx context.Context, f RunFilter) ([]RunRow, error) {
	q := `SELECT ` + runRowColumns + ` FROM runs WHERE 1=1`
	var args []any
	if f.Study != "" {
		q += ` AND study = ?`
		args = append(args, f.Study)
	}
	if f.Method != "" {
		q += ` AND method = ?`
		args = append(args, f.Method)
	}
	if len(f.Status) > 0 {
		q += ` AND status IN (?` + strings.Repeat(",?", len(f.Status)-1) + `)`
		for _, s := range f.Status {
			args = append(args, strings.ToUpper(string(s)))
		}
	}
	q += ` ORDER BY start_time DESC, id DESC`
	if f.Limit > 0 {
		q += ` LIMIT ` + strconv.Itoa(f.Limit)
	}
	rows, err := db.sql.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, db.wrap(err, "list runs")
	}
	defer rows.Close()
	var out []RunRow
	for rows.Next() {
		var r RunRow
		if err := scanRunRow(rows, &r); err != nil {
			return nil, db.wrap(err, "list runs")
		}
		out = append(out, r)
	}
	return out, db.wrap(rows.Err(), "list runs")
}

// RunsTable turns ListRuns rows into a Table for Format.
func RunsTable(rows []RunRow) *Table {
	t := &Table{Columns: []string{"id", "study", "name", "method", "variant", "seed", "status", "start", "duration", "attempt"}}
	for _, r := range rows {
		dur := ""
		if r.End != nil {
			dur = r.End.Sub(r.Start).Round(time.Second).String()
		}
		t.Rows = append(t.Rows, []any{r.ID, r.Study, r.Name, r.Method, r.Variant, r.Seed, string(r.Status),
			r.Start.UTC().Format(time.RFC3339), dur, int64(r.Attempt)})
	}
	return t
}

// ResolveRun finds a run by reference: its numeric id, its uuid or a unique
// uuid prefix (at least 4 characters), or its unique name.
func (db *DB) ResolveRun(ctx context.Context, ref string) (int64, error) {
	if id, err := strconv.ParseInt(ref, 10, 64); err == nil {
		var got int64
		err := db.sql.QueryRowContext(ctx, `SELECT id FROM runs WHERE id = ?`, id).Scan(&got)
		if err == nil {
			return got, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return 0, db.wrap(err, "find run %q", ref)
		}
	}
	try := func(q string, arg any) (int64, error) {
		rows, err := db.sql.QueryContext(ctx, q, arg)
		if err != nil {
			return 0, db.wrap(err, "find run %q", ref)
		}
		defer rows.Close()
		var ids []int64
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				return 0, db.wrap(err, "find run %q", ref)
			}
			ids = append(ids, id)
		}
		switch {
		case len(ids) == 1:
			return ids[0], nil
		case len(ids) > 1:
			return 0, db.wrap(fmt.Errorf("ambiguous: %d runs match", len(ids)), "find run %q", ref)
		}
		return 0, rows.Err()
	}
	if len(ref) >= 4 {
		if id, err := try(`SELECT id FROM runs WHERE uuid LIKE ? || '%' LIMIT 2`, strings.ToLower(ref)); err != nil || id != 0 {
			return id, err
		}
	}
	if id, err := try(`SELECT id FROM runs WHERE name = ? LIMIT 2`, ref); err != nil || id != 0 {
		return id, err
	}
	return 0, db.wrap(ErrNotFound, "find run %q", ref)
}

// Param is a typed param as stored.
type Param struct {
	Key   string `json:"key"`
	Type  string `json:"type"` // string, int, float, bool, null, json
	Value any    `json:"value"`
}

// Summary is the current summary of one metric series.
type Summary struct {
	Key       string   `json:"key"`
	Context   Context  `json:"context,omitempty"`
	Goal      Goal     `json:"goal,omitempty"`
	Count     int64    `json:"count"`
	Last      *float64 `json:"last"` // nil: NaN or nothing logged
	LastStep  int64    `json:"last_step"`
	LastEpoch float64  `json:"last_epoch"`
	Min       *float64 `json:"min"`
	MinStep   int64    `json:"min_step"`
	Max       *float64 `json:"max"`
	MaxStep   int64    `json:"max_step"`
	Best      *float64 `json:"best,omitempty"` // Min or Max by Goal
}

// Attempt is one execution of a run (the first, then one per resume).
type Attempt struct {
	Attempt int        `json:"attempt"`
	Start   time.Time  `json:"start"`
	End     *time.Time `json:"end,omitempty"`
	Status  Status     `json:"status"`
	Host    string     `json:"host"`
	PID     int64      `json:"pid"`
}

// RunDetail is everything `sslrun runs show` prints about a run.
type RunDetail struct {
	RunRow
	Pipeline    string            `json:"pipeline"`
	Config      string            `json:"config"`
	CodeVersion string            `json:"code_version"`
	Error       string            `json:"error,omitempty"`
	Resumable   bool              `json:"resumable"`
	Plugins     []Plugin          `json:"plugins"`
	Params      []Param           `json:"params"`
	Tags        map[string]string `json:"tags"`
	Summaries   []Summary         `json:"summaries"`
	Evaluations []Evaluation      `json:"evaluations"`
	Artifacts   []Artifact        `json:"artifacts"`
	Datasets    []Dataset         `json:"datasets"`
	Attempts    []Attempt         `json:"attempts"`
}

// ShowRun loads a run by reference (see ResolveRun).
func (db *DB) ShowRun(ctx context.Context, ref string) (*RunDetail, error) {
	id, err := db.ResolveRun(ctx, ref)
	if err != nil {
		return nil, err
	}
	d := &RunDetail{Tags: map[string]string{}}
	op := fmt.Sprintf("show run %d", id)
	row := db.sql.QueryRowContext(ctx, `SELECT `+runRowColumns+`, pipeline, config_json, code_version, error, resumable
		FROM runs WHERE id = ?`, id)
	var seed, end sql.NullInt64
	var start int64
	if err := row.Scan(&d.ID, &d.UUID, &d.Study, &d.Name, &d.Method, &d.Variant, &d.Status, &seed, &start, &end,
		&d.Attempt, &d.Host, &d.ConfigHash, &d.Pipeline, &d.Config, &d.CodeVersion, &d.Error, &d.Resumable); err != nil {
		return nil, db.wrap(err, "%s", op)
	}
	d.Seed, d.Start = seed.Int64, fromMillis(start)
	if end.Valid {
		t := fromMillis(end.Int64)
		d.End = &t
	}
	each := func(q string, f func(*sql.Rows) error) error {
		rows, err := db.sql.QueryContext(ctx, q, id)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			if err := f(rows); err != nil {
				return err
			}
		}
		return rows.Err()
	}
	steps := []struct {
		q string
		f func(*sql.Rows) error
	}{
		{`SELECT role, name, version, sha256, attempt FROM plugins WHERE run_id = ? ORDER BY attempt, role, name`, func(rs *sql.Rows) error {
			var p Plugin
			err := rs.Scan(&p.Role, &p.Name, &p.Version, &p.SHA256, &p.Attempt)
			d.Plugins = append(d.Plugins, p)
			return err
		}},
		{`SELECT key, type, value FROM params WHERE run_id = ? ORDER BY key`, func(rs *sql.Rows) error {
			var p Param
			err := rs.Scan(&p.Key, &p.Type, &p.Value)
			if b, ok := p.Value.([]byte); ok {
				p.Value = string(b)
			}
			if p.Type == "bool" {
				p.Value = p.Value == int64(1)
			}
			d.Params = append(d.Params, p)
			return err
		}},
		{`SELECT key, value FROM tags WHERE run_id = ?`, func(rs *sql.Rows) error {
			var k, v string
			err := rs.Scan(&k, &v)
			d.Tags[k] = v
			return err
		}},
		{`SELECT key, context, goal, count, last_value, last_step, last_epoch, min_value, min_step, max_value, max_step
			FROM series WHERE run_id = ? ORDER BY key, context`, func(rs *sql.Rows) error {
			var s Summary
			var c string
			var last, mn, mx, lastEpoch sql.NullFloat64
			var lastStep, minStep, maxStep sql.NullInt64
			err := rs.Scan(&s.Key, &c, &s.Goal, &s.Count, &last, &lastStep, &lastEpoch, &mn, &minStep, &mx, &maxStep)
			if c != "{}" {
				s.Context = Context(c)
			}
			s.Last, s.Min, s.Max = ptr(last), ptr(mn), ptr(mx)
			s.LastStep, s.LastEpoch, s.MinStep, s.MaxStep = lastStep.Int64, lastEpoch.Float64, minStep.Int64, maxStep.Int64
			switch s.Goal {
			case GoalMin:
				s.Best = s.Min
			case GoalMax:
				s.Best = s.Max
			}
			d.Summaries = append(d.Summaries, s)
			return err
		}},
		{`SELECT protocol, dataset, split, feature, selection, k, temperature, options, step, epoch, top1, top5, time
			FROM evaluations WHERE run_id = ? ORDER BY step, id`, func(rs *sql.Rows) error {
			var e Evaluation
			var k sql.NullInt64
			var temp, top1, top5, epoch sql.NullFloat64
			var step sql.NullInt64
			var opts string
			var t int64
			err := rs.Scan(&e.Protocol, &e.Dataset, &e.Split, &e.Feature, &e.Selection, &k, &temp, &opts, &step,
				&epoch, &top1, &top5, &t)
			e.K, e.Temperature, e.Step, e.Epoch = int(k.Int64), temp.Float64, step.Int64, epoch.Float64
			e.Top1, e.Top5 = nanIfNull(top1), nanIfNull(top5)
			e.Time = fromMillis(t)
			if opts != "{}" {
				_ = jsonUnmarshalString(opts, &e.Options)
			}
			d.Evaluations = append(d.Evaluations, e)
			return err
		}},
		{`SELECT kind, path, sha256, size, step, time FROM artifacts WHERE run_id = ? ORDER BY time, id`, func(rs *sql.Rows) error {
			var a Artifact
			var step sql.NullInt64
			var t int64
			err := rs.Scan(&a.Kind, &a.Path, &a.SHA256, &a.Size, &step, &t)
			a.Step, a.Time = step.Int64, fromMillis(t)
			d.Artifacts = append(d.Artifacts, a)
			return err
		}},
		{`SELECT role, name, digest, num_samples, source FROM datasets WHERE run_id = ? ORDER BY role, name`, func(rs *sql.Rows) error {
			var ds Dataset
			var n sql.NullInt64
			err := rs.Scan(&ds.Role, &ds.Name, &ds.Digest, &n, &ds.Source)
			ds.NumSamples = n.Int64
			d.Datasets = append(d.Datasets, ds)
			return err
		}},
		{`SELECT attempt, start_time, end_time, status, host, pid FROM run_attempts WHERE run_id = ? ORDER BY attempt`, func(rs *sql.Rows) error {
			var a Attempt
			var start int64
			var end, pid sql.NullInt64
			err := rs.Scan(&a.Attempt, &start, &end, &a.Status, &a.Host, &pid)
			a.Start, a.PID = fromMillis(start), pid.Int64
			if end.Valid {
				t := fromMillis(end.Int64)
				a.End = &t
			}
			d.Attempts = append(d.Attempts, a)
			return err
		}},
	}
	for _, s := range steps {
		if err := each(s.q, s.f); err != nil {
			return nil, db.wrap(err, "%s", op)
		}
	}
	return d, nil
}

func ptr(v sql.NullFloat64) *float64 {
	if !v.Valid {
		return nil
	}
	x := v.Float64
	return &x
}

func nanIfNull(v sql.NullFloat64) float64 {
	if !v.Valid {
		return math.NaN()
	}
	return v.Float64
}

// WriteText prints the run for humans: header fields, then sections.
func (d *RunDetail) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	p := func(k string, v any) { fmt.Fprintf(tw, "%s:\t%v\n", k, v) }
	p("id", d.ID)
	p("uuid", d.UUID)
	p("study", d.Study)
	p("name", d.Name)
	p("method", d.Method)
	p("variant", d.Variant)
	p("status", d.Status)
	if d.Error != "" {
		p("error", d.Error)
	}
	p("seed", d.Seed)
	p("start", d.Start.UTC().Format(time.RFC3339))
	if d.End != nil {
		p("end", d.End.UTC().Format(time.RFC3339))
	}
	p("attempt", d.Attempt)
	p("resumable", d.Resumable)
	p("host", d.Host)
	p("code version", d.CodeVersion)
	p("config hash", d.ConfigHash)
	for _, pl := range d.Plugins {
		key := "plugin " + pl.Role
		if pl.Attempt > 1 {
			key += fmt.Sprintf(" (attempt %d)", pl.Attempt)
		}
		p(key, fmt.Sprintf("%s %s sha256:%s", pl.Name, pl.Version, pl.SHA256))
	}
	tags := make([]string, 0, len(d.Tags))
	for k := range d.Tags {
		tags = append(tags, k)
	}
	sort.Strings(tags)
	for _, k := range tags {
		p("tag "+k, d.Tags[k])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	section := func(title string, t *Table) error {
		if len(t.Rows) == 0 {
			return nil
		}
		fmt.Fprintf(w, "\n%s:\n", title)
		return Format(w, t, "table")
	}
	pt := &Table{Columns: []string{"key", "type", "value"}}
	for _, x := range d.Params {
		pt.Rows = append(pt.Rows, []any{x.Key, x.Type, x.Value})
	}
	st := &Table{Columns: []string{"metric", "context", "count", "last", "last_step", "min", "max", "best"}}
	for _, s := range d.Summaries {
		st.Rows = append(st.Rows, []any{s.Key, s.Context.String(), s.Count, fptr(s.Last), s.LastStep, fptr(s.Min), fptr(s.Max), fptr(s.Best)})
	}
	et := &Table{Columns: []string{"protocol", "dataset", "split", "feature", "selection", "k", "t", "step", "top1", "top5"}}
	for _, e := range d.Evaluations {
		et.Rows = append(et.Rows, []any{e.Protocol, e.Dataset, e.Split, e.Feature, e.Selection, int64(e.K), e.Temperature, e.Step, e.Top1, e.Top5})
	}
	at := &Table{Columns: []string{"kind", "path", "sha256", "size", "step"}}
	for _, a := range d.Artifacts {
		at.Rows = append(at.Rows, []any{a.Kind, a.Path, a.SHA256, a.Size, a.Step})
	}
	dt := &Table{Columns: []string{"role", "name", "digest", "samples", "source"}}
	for _, x := range d.Datasets {
		dt.Rows = append(dt.Rows, []any{x.Role, x.Name, x.Digest, x.NumSamples, x.Source})
	}
	tt := &Table{Columns: []string{"attempt", "start", "end", "status", "host", "pid"}}
	for _, a := range d.Attempts {
		end := ""
		if a.End != nil {
			end = a.End.UTC().Format(time.RFC3339)
		}
		tt.Rows = append(tt.Rows, []any{int64(a.Attempt), a.Start.UTC().Format(time.RFC3339), end, string(a.Status), a.Host, a.PID})
	}
	for _, s := range []struct {
		title string
		t     *Table
	}{{"params", pt}, {"metrics", st}, {"evaluations", et}, {"artifacts", at}, {"datasets", dt}, {"attempts", tt}} {
		if err := section(s.title, s.t); err != nil {
			return err
		}
	}
	return nil
}

func fptr(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}

// Point is one logged value of a series.
type Point struct {
	Step  int64
	Epoch float64
	Value float64 // NaN where NULL was stored
}

// SeriesInfo names one metric series of a run.
type SeriesInfo struct {
	ID       int64
	RunID    int64
	Key      string
	Context  Context
	Count    int64
	LastStep int64
}

// FindSeries returns the series of a run with this key whose context
// contains every pair of filter (nil matches any context), best match
// first: an exact context match, then the one logged furthest.
func (db *DB) FindSeries(ctx context.Context, runID int64, key string, filter map[string]string) ([]SeriesInfo, error) {
	rows, err := db.sql.QueryContext(ctx, `SELECT id, context, count, COALESCE(last_step, 0) FROM series
		WHERE run_id = ? AND key = ? ORDER BY id`, runID, key)
	if err != nil {
		return nil, db.wrap(err, "find series %s of run %d", key, runID)
	}
	defer rows.Close()
	want := CtxMap(filter)
	var out []SeriesInfo
	for rows.Next() {
		s := SeriesInfo{RunID: runID, Key: key}
		var c string
		if err := rows.Scan(&s.ID, &c, &s.Count, &s.LastStep); err != nil {
			return nil, db.wrap(err, "find series %s of run %d", key, runID)
		}
		if c != "{}" {
			s.Context = Context(c)
		}
		m := s.Context.Map()
		ok := true
		for k, v := range filter {
			if m[k] != v {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, s)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		ei, ej := out[i].Context == want, out[j].Context == want
		if ei != ej {
			return ei
		}
		return out[i].LastStep > out[j].LastStep
	})
	return out, db.wrap(rows.Err(), "find series %s of run %d", key, runID)
}

// History returns all points of one series in step order.
func (db *DB) History(ctx context.Context, seriesID int64) ([]Point, error) {
	rows, err := db.sql.QueryContext(ctx, `SELECT step, epoch, value FROM metrics WHERE series_id = ? ORDER BY step, rowid`, seriesID)
	if err != nil {
		return nil, db.wrap(err, "read series %d", seriesID)
	}
	defer rows.Close()
	var out []Point
	for rows.Next() {
		var p Point
		var v sql.NullFloat64
		if err := rows.Scan(&p.Step, &p.Epoch, &v); err != nil {
			return nil, db.wrap(err, "read series %d", seriesID)
		}
		p.Value = nanIfNull(v)
		out = append(out, p)
	}
	return out, db.wrap(rows.Err(), "read series %d", seriesID)
}

// Query runs one SQL statement and returns its result as a Table (for
// `sslrun sql`; open the database with OpenReadOnly so that the statement
// cannot change it). Values are int64, float64, string, []byte or nil.
func (db *DB) Query(ctx context.Context, query string, args ...any) (*Table, error) {
	rows, err := db.sql.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, db.wrap(err, "query")
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, db.wrap(err, "query")
	}
	t := &Table{Columns: cols}
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, db.wrap(err, "query")
		}
		for i, v := range vals {
			if tm, ok := v.(time.Time); ok { // go-sqlite3 parses DATETIME-typed columns
				vals[i] = tm.UTC().Format(time.RFC3339Nano)
			}
		}
		t.Rows = append(t.Rows, vals)
	}
	if err := rows.Err(); err != nil {
		return nil, db.wrap(err, "query")
	}
	return t, nil
}
