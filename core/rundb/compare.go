package rundb

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"sort"
	"strings"
)

// Collapse thresholds of the run_final view (see docs/rundb.md and
// paper.md): a run is collapsed when its final m_o > CollapseMO or
// std*sqrt(d) < CollapseStdSqrtD (the geometry alone), and its
// knn_at_chance column says whether its kNN accuracy is below chance
// (1/num_classes) + CollapseChanceMargin. Schema versions 1 and 2 required
// both; a partly collapsed z still ranks neighbours by class, so that rule
// never fired (docs/rundb.md).
const (
	CollapseMO           = 0.9
	CollapseStdSqrtD     = 0.1
	CollapseChanceMargin = 0.05
)

// CompareOptions selects the runs of a comparison.
type CompareOptions struct {
	Study string // "" compares every study (rows are per study anyway)
	// Status selects runs by status; nil means FINISHED only, since a
	// crashed run's last values are not final.
	Status []Status
}

// Stat is a mean and sample standard deviation (n-1 denominator) over the
// runs of a group that have the value. Mean is NaN when N is 0, Std when N
// is below 2.
type Stat struct {
	Mean float64 `json:"mean"`
	Std  float64 `json:"std"`
	N    int     `json:"n"`
}

func newStat(xs []float64) Stat {
	s := Stat{Mean: math.NaN(), Std: math.NaN(), N: len(xs)}
	if len(xs) == 0 {
		return s
	}
	sum := 0.0
	for _, x := range xs {
		sum += x
	}
	s.Mean = sum / float64(len(xs))
	if len(xs) > 1 {
		ss := 0.0
		for _, x := range xs {
			ss += (x - s.Mean) * (x - s.Mean)
		}
		s.Std = math.Sqrt(ss / float64(len(xs)-1))
	}
	return s
}

// CompareRow is one method/variant of the unified-perspective table,
// aggregated over its runs (one per seed).
type CompareRow struct {
	Study     string  `json:"study"`
	Method    string  `json:"method"`
	Variant   string  `json:"variant"`
	Runs      int     `json:"runs"`
	Seeds     []int64 `json:"seeds"`
	RunIDs    []int64 `json:"run_ids"`
	KNN       Stat    `json:"knn_top1"`
	Linear    Stat    `json:"linear_top1"`
	Loss      Stat    `json:"loss"`
	MO        Stat    `json:"m_o"`
	StdSqrtD  Stat    `json:"std_sqrt_d"`
	EffRank   Stat    `json:"eff_rank"`
	Decenter  Stat    `json:"grad_decenter_share"`
	Decorr    Stat    `json:"grad_decorr_share"`
	Collapsed int     `json:"collapsed"` // runs judged collapsed
	Judged    int     `json:"judged"`    // runs with a verdict (they have m_o or std*sqrt(d))
}

// Verdict summarizes the group's collapse verdicts: "yes" (all judged runs
// collapsed), "no" (none), "mixed k/n", or "?" (no run could be judged).
func (r CompareRow) Verdict() string {
	switch {
	case r.Judged == 0:
		return "?"
	case r.Collapsed == r.Judged:
		return "yes"
	case r.Collapsed == 0:
		return "no"
	}
	return fmt.Sprintf("mixed %d/%d", r.Collapsed, r.Judged)
}

// Compare builds the unified-perspective table from the run_final view:
// one row per (study, method, variant), statistics over its runs, and the
// runs collapsed by run_final's geometric verdict.
func (db *DB) Compare(ctx context.Context, opts CompareOptions) ([]CompareRow, error) {
	status := opts.Status
	if status == nil {
		status = []Status{StatusFinished}
	}
	q := `SELECT run_id, study, method, variant, seed, knn_top1, linear_top1, loss, m_o, std_sqrt_d, eff_rank,
		grad_decenter_share, grad_decorr_share, collapsed FROM run_final WHERE 1=1`
	var args []any
	if opts.Study != "" {
		q += ` AND study = ?`
		args = append(args, opts.Study)
	}
	if len(status) > 0 {
		q += ` AND status IN (?` + strings.Repeat(",?", len(status)-1) + `)`
		for _, s := range status {
			args = append(args, strings.ToUpper(string(s)))
		}
	}
	q += ` ORDER BY study, method, variant, seed, run_id`
	rows, err := db.sql.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, db.wrap(err, "compare")
	}
	defer rows.Close()
	type group struct {
		row  *CompareRow
		vals [8][]float64
	}
	var order []string
	groups := map[string]*group{}
	for rows.Next() {
		var id int64
		var study, method, variant string
		var seed sql.NullInt64
		var v [8]sql.NullFloat64
		var collapsed sql.NullInt64
		if err := rows.Scan(&id, &study, &method, &variant, &seed, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &collapsed); err != nil {
			return nil, db.wrap(err, "compare")
		}
		key := study + "\x00" + method + "\x00" + variant
		g := groups[key]
		if g == nil {
			g = &group{row: &CompareRow{Study: study, Method: method, Variant: variant}}
			groups[key] = g
			order = append(order, key)
		}
		g.row.Runs++
		g.row.Seeds = append(g.row.Seeds, seed.Int64)
		g.row.RunIDs = append(g.row.RunIDs, id)
		for i, x := range v {
			if x.Valid && !math.IsNaN(x.Float64) {
				g.vals[i] = append(g.vals[i], x.Float64)
			}
		}
		if collapsed.Valid {
			g.row.Judged++
			g.row.Collapsed += int(collapsed.Int64)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, db.wrap(err, "compare")
	}
	out := make([]CompareRow, 0, len(order))
	for _, k := range order {
		g := groups[k]
		r := g.row
		r.KNN, r.Linear, r.Loss, r.MO = newStat(g.vals[0]), newStat(g.vals[1]), newStat(g.vals[2]), newStat(g.vals[3])
		r.StdSqrtD, r.EffRank, r.Decenter, r.Decorr = newStat(g.vals[4]), newStat(g.vals[5]), newStat(g.vals[6]), newStat(g.vals[7])
		out = append(out, *r)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Study != out[j].Study {
			return out[i].Study < out[j].Study
		}
		if out[i].Method != out[j].Method {
			return out[i].Method < out[j].Method
		}
		return out[i].Variant < out[j].Variant
	})
	return out, nil
}

// CompareTable turns Compare rows into a Table for Format. For "table"
// each statistic is one "mean ± std" cell; for machine formats ("csv",
// "json") it is two numeric columns, <name> and <name>_std.
func CompareTable(rows []CompareRow, format string) *Table {
	pretty := format == "table" || format == ""
	stats := []struct {
		name string
		get  func(CompareRow) Stat
	}{
		{"knn_top1", func(r CompareRow) Stat { return r.KNN }},
		{"linear_top1", func(r CompareRow) Stat { return r.Linear }},
		{"m_o", func(r CompareRow) Stat { return r.MO }},
		{"std_sqrt_d", func(r CompareRow) Stat { return r.StdSqrtD }},
		{"eff_rank", func(r CompareRow) Stat { return r.EffRank }},
		{"grad_decenter", func(r CompareRow) Stat { return r.Decenter }},
		{"grad_decorr", func(r CompareRow) Stat { return r.Decorr }},
		{"loss", func(r CompareRow) Stat { return r.Loss }},
	}
	t := &Table{Columns: []string{"study", "method", "variant", "runs", "collapsed"}}
	for _, s := range stats {
		t.Columns = append(t.Columns, s.name)
		if !pretty {
			t.Columns = append(t.Columns, s.name+"_std")
		}
	}
	for _, r := range rows {
		row := []any{r.Study, r.Method, r.Variant, int64(r.Runs), r.Verdict()}
		for _, s := range stats {
			st := s.get(r)
			if pretty {
				row = append(row, st.String())
				continue
			}
			row = append(row, nilIfNaN(st.Mean), nilIfNaN(st.Std))
		}
		t.Rows = append(t.Rows, row)
	}
	return t
}

// String renders "mean ± std" with 4 significant digits, "mean" alone for
// one value, and "-" for none.
func (s Stat) String() string {
	switch {
	case s.N == 0:
		return "-"
	case s.N == 1 || math.IsNaN(s.Std):
		return fmt.Sprintf("%.4g", s.Mean)
	case s.Std < 1e-9*math.Abs(s.Mean): // rounding noise of equal values
		return fmt.Sprintf("%.4g ± 0", s.Mean)
	}
	return fmt.Sprintf("%.4g ± %.2g", s.Mean, s.Std)
}

func nilIfNaN(x float64) any {
	if math.IsNaN(x) {
		return nil
	}
	return x
}
