// Package report renders a study of the run database as one self-contained
// HTML file: a line plot per metric against epoch (inline SVG, one line per
// run, coloured by method, dashed by variant), the comparison table and the
// list of runs. The file uses no JavaScript and loads nothing: it can be
// mailed, archived or opened offline.
package report

import (
	"bytes"
	"context"
	"fmt"
	"html/template"
	"io"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/sslrun/sslrun/core/rundb"
	"github.com/sslrun/sslrun/internal/atomicfile"
)

// Plot is one metric plotted against epoch.
type Plot struct {
	ID      string            // the <svg> element's id, e.g. "plot-loss"
	Title   string            // heading above the plot
	Keys    []string          // metric key, then fallbacks: a run uses the first it logged
	Context map[string]string // series filter (nil: any context, best match)
	YLabel  string
	// Fallback is a second series filter, for runs with no series that
	// matches Context (nil: none).
	Fallback map[string]string
}

// DefaultPlots are the metrics of issue 6: loss, kNN accuracy, m_o,
// std*sqrt(d), effective rank and the two gradient shares. The metric keys
// are documented in docs/rundb.md.
var DefaultPlots = []Plot{
	{"plot-loss", "Training loss", []string{"train/loss", "loss"}, nil, "loss", nil},
	{"plot-knn-top1", "kNN top-1 accuracy", []string{"eval/knn_top1", "knn/top1"}, nil, "top-1", nil},
	{"plot-m-o", "Centre norm m_o = ‖o‖ (z)", []string{"decompose/m_o"}, onZ, "m_o", nil},
	{"plot-std-sqrt-d", "std·√d of z/‖z‖", []string{"decompose/std_sqrt_d"}, onZ, "std·√d", nil},
	{"plot-eff-rank", "Effective rank (z)", []string{"decompose/eff_rank"}, onZ, "rank", nil},
	// The gradient split on z, else on p (the plugin-based decompose
	// analyzer splits the gradient on the predictor output, the vector
	// SimSiam's loss acts on), as the run_metrics view reads it.
	{"plot-grad-decenter", "Gradient de-centering share", []string{"decompose/grad_decenter_share"}, onZ, "share", onP},
	{"plot-grad-decorr", "Gradient de-correlation share", []string{"decompose/grad_decorr_share"}, onZ, "share", onP},
}

// Series filters of DefaultPlots.
var (
	onZ = map[string]string{"tensor": "z"}
	onP = map[string]string{"tensor": "p"}
)

// Options select what the report shows.
type Options struct {
	Study string // "" reports every study
	Title string // default "sslrun report: <study>"
	// Status selects the runs plotted and listed (nil: all). The
	// comparison table always uses FINISHED runs, like `sslrun compare`.
	Status    []rundb.Status
	Plots     []Plot // nil: DefaultPlots
	MaxPoints int    // per run and plot; longer series are bin-averaged (default 400)
	Now       func() time.Time
}

// Write renders the report of db to w.
func Write(ctx context.Context, w io.Writer, db *rundb.DB, opts Options) error {
	page, err := build(ctx, db, opts)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	if err := pageTmpl.Execute(&b, page); err != nil {
		return fmt.Errorf("report: render: %w", err)
	}
	_, err = w.Write(b.Bytes())
	return err
}

// WriteFile renders the report to path atomically (see internal/atomicfile),
// so a failed render never leaves half a report. The file gets mode 0644.
func WriteFile(ctx context.Context, path string, db *rundb.DB, opts Options) error {
	err := atomicfile.WriteFunc(path, 0o644, func(w io.Writer) error {
		return Write(ctx, w, db, opts)
	})
	if err != nil {
		return fmt.Errorf("report %s: %w", path, err)
	}
	return nil
}

// page is the template's data.
type page struct {
	Title     string
	Generated string
	Study     string
	DBPath    string
	Legend    []legendEntry
	Plots     []template.HTML
	Compare   tableView
	Runs      tableView
}

// tableView is a rundb.Table as text cells, with a CSS class per row.
type tableView struct {
	Columns []string
	Rows    []rowView
}

type rowView struct {
	Class string
	Cells []string
}

func view(t *rundb.Table, class func([]any) string) tableView {
	v := tableView{Columns: t.Columns}
	for _, r := range t.Rows {
		rv := rowView{Class: class(r)}
		for _, c := range r {
			rv.Cells = append(rv.Cells, cell(c))
		}
		v.Rows = append(v.Rows, rv)
	}
	return v
}

type legendEntry struct {
	Label, Color, Dash string
	Runs               int
}

// style is the colour and dash pattern of a (method, variant).
type style struct{ color, dash string }

// palette is Tableau 10: distinguishable, and readable when printed.
var palette = []string{"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"}

var dashes = []string{"", "7 4", "2 3", "10 3 2 3", "4 2 4 6", "1 5"}

func build(ctx context.Context, db *rundb.DB, opts Options) (*page, error) {
	if opts.Plots == nil {
		opts.Plots = DefaultPlots
	}
	if opts.MaxPoints <= 0 {
		opts.MaxPoints = 400
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	title := opts.Title
	if title == "" {
		title = "sslrun report"
		if opts.Study != "" {
			title += ": " + opts.Study
		}
	}
	runs, err := db.ListRuns(ctx, rundb.RunFilter{Study: opts.Study, Status: opts.Status})
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	sort.SliceStable(runs, func(i, j int) bool {
		a, b := runs[i], runs[j]
		if a.Method != b.Method {
			return a.Method < b.Method
		}
		if a.Variant != b.Variant {
			return a.Variant < b.Variant
		}
		if a.Seed != b.Seed {
			return a.Seed < b.Seed
		}
		return a.ID < b.ID
	})

	// Colour per method, dash per variant within its method.
	styles := map[[2]string]style{}
	legendIdx := map[[2]string]int{}
	var legend []legendEntry
	methodIdx := map[string]int{}
	variantIdx := map[string]int{}
	for _, r := range runs {
		k := [2]string{r.Method, r.Variant}
		if _, ok := styles[k]; !ok {
			mi, ok := methodIdx[r.Method]
			if !ok {
				mi = len(methodIdx)
				methodIdx[r.Method] = mi
			}
			vi := variantIdx[r.Method]
			variantIdx[r.Method] = vi + 1
			st := style{palette[mi%len(palette)], dashes[vi%len(dashes)]}
			styles[k] = st
			label := r.Method
			if label == "" {
				label = "(no method)"
			}
			if base := seedless(r.Name); base != "" {
				// A study's runs are named <variant>-seed<n>: the name
				// says more than the hash of the loss options.
				label += " / " + base
			} else if r.Variant != "" {
				label += " / " + r.Variant
			}
			legendIdx[k] = len(legend)
			legend = append(legend, legendEntry{Label: label, Color: st.color, Dash: st.dash})
		}
		legend[legendIdx[k]].Runs++
	}

	p := &page{Title: title, Generated: opts.Now().UTC().Format(time.RFC3339), Study: opts.Study, DBPath: db.Path(), Legend: legend}
	for _, pl := range opts.Plots {
		var lines []line
		for _, r := range runs {
			var ss []rundb.SeriesInfo
			filters := []map[string]string{pl.Context}
			if pl.Fallback != nil {
				filters = append(filters, pl.Fallback)
			}
		find:
			for _, f := range filters {
				for _, key := range pl.Keys {
					var err error
					if ss, err = db.FindSeries(ctx, r.ID, key, f); err != nil {
						return nil, fmt.Errorf("report: %w", err)
					}
					if len(ss) > 0 {
						break find
					}
				}
			}
			if len(ss) == 0 {
				continue
			}
			pts, err := db.History(ctx, ss[0].ID)
			if err != nil {
				return nil, fmt.Errorf("report: %w", err)
			}
			st := styles[[2]string{r.Method, r.Variant}]
			lines = append(lines, line{
				label: fmt.Sprintf("run %d %s (%s%s, seed %d)", r.ID, r.Name, r.Method, suffix(r.Variant), r.Seed),
				runID: r.ID, color: st.color, dash: st.dash,
				pts: downsample(pts, opts.MaxPoints),
			})
		}
		p.Plots = append(p.Plots, renderPlot(pl, lines, legend))
	}
	cmp, err := db.Compare(ctx, rundb.CompareOptions{Study: opts.Study})
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	p.Compare = view(rundb.CompareTable(cmp, "table"), func(r []any) string {
		if r[4] == "yes" { // the collapsed column
			return "collapsed-yes"
		}
		return ""
	})
	p.Runs = view(rundb.RunsTable(runs), func([]any) string { return "" })
	return p, nil
}

func suffix(v string) string {
	if v == "" {
		return ""
	}
	return "/" + v
}

// downsample averages a series into at most n bins of consecutive points,
// so a per-step loss over a long run stays a light, readable line. NaN
// values are skipped; an all-NaN bin stays NaN (a gap).
func downsample(pts []rundb.Point, n int) []xy {
	out := make([]xy, 0, min(len(pts), n))
	if len(pts) <= n {
		for _, p := range pts {
			out = append(out, xy{p.Epoch, p.Value})
		}
		return out
	}
	for b := range n {
		lo, hi := b*len(pts)/n, (b+1)*len(pts)/n
		var sx, sy float64
		var k int
		for _, p := range pts[lo:hi] {
			if math.IsNaN(p.Value) || math.IsInf(p.Value, 0) {
				continue
			}
			sx += p.Epoch
			sy += p.Value
			k++
		}
		if k == 0 {
			out = append(out, xy{pts[lo].Epoch, math.NaN()})
			continue
		}
		out = append(out, xy{sx / float64(k), sy / float64(k)})
	}
	return out
}

func cell(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case float64:
		return fmt.Sprintf("%.4g", x)
	case []byte:
		return fmt.Sprintf("<%d bytes>", len(x))
	}
	return fmt.Sprint(v)
}

var pageTmpl = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; margin: 24px; color: #222; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 8px; }
.meta { color: #666; font-size: 13px; }
.legend { display: flex; flex-wrap: wrap; gap: 6px 18px; font-size: 13px; margin: 12px 0; }
.legend span { display: inline-flex; align-items: center; gap: 6px; }
.plots { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 16px; }
figure { margin: 0; border: 1px solid #ddd; border-radius: 4px; padding: 8px; }
figcaption { font-weight: 600; font-size: 14px; margin-bottom: 4px; }
svg.plot { width: 100%; height: auto; display: block; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border-bottom: 1px solid #e4e4e4; padding: 4px 10px; text-align: left; white-space: nowrap; }
th { background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.collapsed-yes td { background: #fdecea; }
.scroll { overflow-x: auto; }
</style>
</head>
<body>
<h1>{{.Title}}</h1>
<div class="meta">Generated {{.Generated}} from {{.DBPath}}{{if .Study}}, study {{.Study}}{{end}}. One line per run, colour = method, dash = variant.</div>
<div class="legend" id="legend">{{range .Legend}}<span><svg width="36" height="10" aria-hidden="true"><line x1="0" y1="5" x2="36" y2="5" stroke="{{.Color}}" stroke-width="2.5"{{if .Dash}} stroke-dasharray="{{.Dash}}"{{end}}/></svg>{{.Label}} ({{.Runs}})</span>{{end}}</div>
<h2>Training curves</h2>
<div class="plots">
{{range .Plots}}{{.}}
{{end}}</div>
<h2>Comparison (finished runs, mean ± std over seeds)</h2>
<div class="scroll"><table id="compare">
<thead><tr>{{range .Compare.Columns}}<th>{{.}}</th>{{end}}</tr></thead>
<tbody>
{{range .Compare.Rows}}<tr{{if .Class}} class="{{.Class}}"{{end}}>{{range .Cells}}<td>{{.}}</td>{{end}}</tr>
{{end}}</tbody>
</table></div>
<h2>Runs</h2>
<div class="scroll"><table id="runs">
<thead><tr>{{range .Runs.Columns}}<th>{{.}}</th>{{end}}</tr></thead>
<tbody>
{{range .Runs.Rows}}<tr>{{range .Cells}}<td>{{.}}</td>{{end}}</tr>
{{end}}</tbody>
</table></div>
</body>
</html>
`))

// seedless returns a run name without its "-seed<n>" suffix, or "" when
// it has none.
func seedless(name string) string {
	i := strings.LastIndex(name, "-seed")
	if i <= 0 || i+len("-seed") == len(name) {
		return ""
	}
	for _, c := range name[i+len("-seed"):] {
		if c < '0' || c > '9' {
			return ""
		}
	}
	return name[:i]
}
