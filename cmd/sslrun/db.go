package main

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"

	"github.com/spf13/cobra"

	"github.com/sslrun/sslrun/core/report"
	"github.com/sslrun/sslrun/core/rundb"
)

// dbFlags are the flags of the commands that read the run database.
type dbFlags struct {
	path   string
	format string
	// strictReadOnly: never open the file for writing, not even to mark
	// crashed runs (sql).
	strictReadOnly bool
}

func (f *dbFlags) add(cmd *cobra.Command, formats bool) {
	def := os.Getenv("SSLRUN_DB")
	if def == "" {
		def = "sslrun.db"
	}
	cmd.Flags().StringVar(&f.path, "db", def, "run database (default $SSLRUN_DB or ./sslrun.db)")
	if formats {
		cmd.Flags().StringVarP(&f.format, "format", "f", "table", "output format: table, csv or json")
	}
}

// open opens the database read-only: these commands never change what a
// run recorded, and a read-only connection guarantees that even
// `sql "DELETE ..."` cannot.
//
// Except for sql, a command first opens the file for writing when it can,
// as any sslrun start does: rundb.Open marks the runs whose process died
// (kill -9, OOM, power loss) as CRASHED, so that `runs ls` right after a
// crash does not show them RUNNING, and brings an older schema up to date.
// A file this process may not write is shown as recorded.
func (f *dbFlags) open() (*rundb.DB, error) {
	if !slices.Contains(rundb.Formats, f.format) && f.format != "" {
		return nil, usageError("unknown format %q (want table, csv or json)", f.format)
	}
	if _, err := os.Stat(f.path); err != nil {
		return nil, usageError("run database %s: %v (run a pipeline first, or pass --db)", f.path, err)
	}
	if !f.strictReadOnly {
		if db, err := rundb.Open(f.path); err == nil {
			db.Close()
		}
	}
	return rundb.OpenReadOnly(f.path)
}

func statuses(names []string) ([]rundb.Status, error) {
	var out []rundb.Status
	for _, n := range names {
		s, err := rundb.ParseStatus(n)
		if err != nil {
			return nil, usageError("%v", err)
		}
		out = append(out, s)
	}
	return out, nil
}

func newRunsCmd(e env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "runs",
		Short: "List and inspect the runs in the run database",
		Example: `  sslrun runs ls --study methods
  sslrun runs show 3`,
	}
	var ls dbFlags
	var study, method string
	var status []string
	list := &cobra.Command{
		Use:   "ls",
		Short: "List runs",
		Example: `  sslrun runs ls
  sslrun runs ls --study methods --status FINISHED -f csv`,
		Args: exactArgs(0, "no"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := statuses(status)
			if err != nil {
				return err
			}
			db, err := ls.open()
			if err != nil {
				return err
			}
			defer db.Close()
			rows, err := db.ListRuns(cmd.Context(), rundb.RunFilter{Study: study, Status: st, Method: method})
			if err != nil {
				return err
			}
			return rundb.Format(e.stdout, rundb.RunsTable(rows), ls.format)
		},
	}
	ls.add(list, true)
	list.Flags().StringVar(&study, "study", "", "only runs of this study")
	list.Flags().StringVar(&method, "method", "", "only runs of this method")
	list.Flags().StringSliceVar(&status, "status", nil, "only runs with these statuses (RUNNING, FINISHED, FAILED, KILLED, CRASHED)")

	var sh dbFlags
	show := &cobra.Command{
		Use:   "show RUN",
		Short: "Show a run: config, params, tags, final metrics, evaluations, attempts",
		Long:  "RUN is a run id, a uuid or its prefix, or a run name (the latest run with it).",
		Example: `  sslrun runs show 3
  sslrun runs show quickstart -f json`,
		Args: exactArgs(1, "run"),
		RunE: func(cmd *cobra.Command, args []string) error {
			db, err := sh.open()
			if err != nil {
				return err
			}
			defer db.Close()
			d, err := db.ShowRun(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if sh.format == "json" {
				enc := json.NewEncoder(e.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(d)
			}
			return d.WriteText(e.stdout)
		},
	}
	sh.add(show, true)
	cmd.AddCommand(list, show)
	return cmd
}

func newCompareCmd(e env) *cobra.Command {
	var f dbFlags
	var study string
	var status []string
	cmd := &cobra.Command{
		Use:   "compare",
		Short: "Compare methods and variants: mean ± std over seeds",
		Long: `Compare prints one row per method and variant with the mean ± std over seeds of
kNN and linear accuracy, final m_o, std·sqrt(d), effective rank, the gradient's
de-centering and de-correlation shares, and whether the runs collapsed (rule in
docs/rundb.md). Only FINISHED runs count unless --status says otherwise.`,
		Example: `  sslrun compare --study methods
  sslrun compare -f csv > methods.csv`,
		Args: exactArgs(0, "no"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := statuses(status)
			if err != nil {
				return err
			}
			db, err := f.open()
			if err != nil {
				return err
			}
			defer db.Close()
			rows, err := db.Compare(cmd.Context(), rundb.CompareOptions{Study: study, Status: st})
			if err != nil {
				return err
			}
			return rundb.Format(e.stdout, rundb.CompareTable(rows, f.format), f.format)
		},
	}
	f.add(cmd, true)
	cmd.Flags().StringVar(&study, "study", "", "only this study")
	cmd.Flags().StringSliceVar(&status, "status", nil, "statuses counted (default FINISHED)")
	return cmd
}

func newSQLCmd(e env) *cobra.Command {
	f := dbFlags{strictReadOnly: true}
	cmd := &cobra.Command{
		Use:   "sql QUERY",
		Short: "Run a read-only SQL query on the run database",
		Long: `Sql runs one query on the run database opened read-only, so no statement can
change it. docs/rundb.md documents the tables and views (run_final has one row
per run with its final metrics).`,
		Example: `  sslrun sql "SELECT name, status, knn_top1 FROM run_final"
  sslrun sql -f json "SELECT key, value FROM metric_points WHERE run_id = 1"`,
		Args: exactArgs(1, "query"),
		RunE: func(cmd *cobra.Command, args []string) error {
			db, err := f.open()
			if err != nil {
				return err
			}
			defer db.Close()
			t, err := db.Query(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return rundb.Format(e.stdout, t, f.format)
		},
	}
	f.add(cmd, true)
	return cmd
}

func newReportCmd(e env) *cobra.Command {
	var f dbFlags
	var study, out, title string
	cmd := &cobra.Command{
		Use:   "report -o FILE.html",
		Short: "Write a self-contained HTML report with plots and the comparison table",
		Long: `Report writes one HTML file (inline SVG, no scripts or external resources) with
plots over epochs of the loss, kNN accuracy, m_o, std·sqrt(d), effective rank and
the gradient's de-centering and de-correlation shares, one line per run, grouped
by method, followed by the comparison table.`,
		Example: `  sslrun report --study methods -o methods.html`,
		Args:    exactArgs(0, "no"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return usageError("report needs -o FILE.html")
			}
			db, err := f.open()
			if err != nil {
				return err
			}
			defer db.Close()
			if err := report.WriteFile(cmd.Context(), out, db, report.Options{Study: study, Title: title}); err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, "wrote", out)
			return nil
		},
	}
	f.add(cmd, false)
	cmd.Flags().StringVar(&study, "study", "", "only this study")
	cmd.Flags().StringVarP(&out, "output", "o", "", "HTML file to write")
	cmd.Flags().StringVar(&title, "title", "", "page title")
	return cmd
}
