package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"github.com/vbauerster/mpb/v8"

	"github.com/sslrun/sslrun/core/pipeline"
	"github.com/sslrun/sslrun/core/plugin"
	"github.com/sslrun/sslrun/core/runner"
)

// Exit codes.
const (
	exitOK     = 0
	exitFailed = 1 // a run failed, was interrupted, or fmt -check found changes
	exitUsage  = 2 // bad arguments or an invalid pipeline
)

// env is what a command invocation talks to; tests replace all of it.
type env struct {
	stdout, stderr io.Writer
	// tty says stderr is a terminal: console logs and progress bars.
	tty bool
	// runOpts is applied to every runner.Options (tests set Dir, hooks).
	runOpts func(*runner.Options)
}

// globalFlags are the root command's persistent flags.
type globalFlags struct {
	logLevel   string
	logJSON    bool
	noColor    bool
	noDB       bool
	inProcess  bool
	pluginDirs []string
}

// pluginOpts applies the plugin flags to o.
func (g *globalFlags) pluginOpts(o *runner.Options) {
	o.InProcess = g.inProcess
	o.PluginDirs = append(o.PluginDirs, g.pluginDirs...)
}

// parseOpts are the options a command that only parses pipelines starts
// plugins with.
func (g *globalFlags) parseOpts(e env) runner.Options {
	var o runner.Options
	g.pluginOpts(&o)
	if e.runOpts != nil {
		e.runOpts(&o)
	}
	return o
}

// usageError marks an error as a usage error (exit code 2).
func usageError(format string, a ...any) error {
	return &runner.ConfigError{Err: fmt.Errorf(format, a...)}
}

// exactArgs / minArgs are cobra argument checks whose errors are usage
// errors.
func minArgs(n int, what string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) < n {
			return usageError("expected at least %d %s argument(s), got %d", n, what, len(args))
		}
		return nil
	}
}

func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != n {
			return usageError("expected %d %s argument(s), got %d", n, what, len(args))
		}
		return nil
	}
}

// execute runs the command line args (without the program name) and
// returns the exit code. It is main without the process: tests call it.
func execute(ctx context.Context, args []string, e env) int {
	root := newRoot(e)
	root.SetArgs(normalizeArgs(args))
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(e.stderr, "Error:", err)
	// Cobra reports an unknown command as a plain error.
	if runner.IsConfigError(err) || strings.HasPrefix(err.Error(), "unknown command") {
		return exitUsage
	}
	return exitFailed
}

// normalizeArgs accepts Terraform's single-dash long flags (-var, -var-file,
// -check, -only) by rewriting them to pflag's double-dash form.
func normalizeArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = a
		if a == "--" {
			copy(out[i:], args[i:])
			break
		}
		for _, long := range []string{"var", "var-file", "check", "only", "protocol", "stop-on-collapse", "stop-after-steps", "no-color", "no-db", "log-json", "log-level", "in-process", "plugin-dir", "db", "study", "status", "format", "output", "title", "method"} {
			if a == "-"+long || strings.HasPrefix(a, "-"+long+"=") {
				out[i] = "-" + a
			}
		}
	}
	return out
}

func newRoot(e env) *cobra.Command {
	var g globalFlags
	root := &cobra.Command{
		Use:   "sslrun",
		Short: "Train and study self-supervised learning methods",
		Long: `sslrun trains self-supervised methods (SimSiam, SimCLR, BYOL and the variants
of Zhang et al., ICLR 2022) from HCL pipeline files, analyses collapse with the
centre/residual decomposition, evaluates with kNN and linear probes, and writes
resumable checkpoints.

Exit codes: 0 success, 1 a run failed or was interrupted, 2 usage or
configuration error.`,
		Example: `  sslrun validate pipelines/quickstart.hcl
  sslrun run pipelines/quickstart.hcl -var epochs=2
  sslrun resume quickstart-20261130-012345
  sslrun compare
  sslrun report -o report.html`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.PersistentFlags().BoolVar(&g.logJSON, "log-json", false, "log JSON lines even on a terminal (no progress bars)")
	root.PersistentFlags().BoolVar(&g.noColor, "no-color", false, "no colour in logs (also NO_COLOR)")
	root.PersistentFlags().BoolVar(&g.noDB, "no-db", false, "do not record runs in the run database (log only)")
	root.PersistentFlags().BoolVar(&g.inProcess, "in-process", false, "run the bundled plugins in this process instead of as subprocesses (same results; for debugging and benchmarks)")
	root.PersistentFlags().StringArrayVar(&g.pluginDirs, "plugin-dir", nil, "also look for external plugins (sslrun-plugin-NAME) in this directory (repeatable; ./plugins beside the pipeline is always searched)")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &runner.ConfigError{Err: err} })
	root.AddCommand(newRunCmd(e, &g), newValidateCmd(e, &g), newFmtCmd(e), newResumeCmd(e, &g), newEvalCmd(e, &g), newPluginsCmd(e, &g), newVersionCmd(e),
		newRunsCmd(e), newCompareCmd(e), newSQLCmd(e), newReportCmd(e))
	return root
}

// session is the logging, progress and recording set-up of a training
// command.
type session struct {
	opts     runner.Options
	progress *mpb.Progress
	dbs      *runner.DBRecorders
}

// newSession builds the logger (console on a terminal, JSON otherwise)
// and, on a terminal, the progress container the logger writes through.
func newSession(e env, g *globalFlags) (*session, error) {
	lvl, err := zerolog.ParseLevel(g.logLevel)
	if err != nil {
		return nil, usageError("--log-level: %v", err)
	}
	s := &session{}
	console := e.tty && !g.logJSON
	var w io.Writer = e.stderr
	if console && os.Getenv("TERM") != "dumb" {
		// Not tied to ctx: after Ctrl-C the run still logs its checkpoint
		// through the container, which close shuts down.
		s.progress = mpb.New(mpb.WithOutput(e.stderr), mpb.WithAutoRefresh(), mpb.WithWidth(32))
		w = s.progress
	}
	s.opts.Log = runner.NewLogger(w, console, g.noColor, lvl)
	s.opts.Progress = s.progress
	g.pluginOpts(&s.opts)
	if !g.noDB {
		s.dbs = runner.NewDBRecorders(s.opts.Log)
		s.opts.Recorder = s.dbs.Factory
	}
	if e.runOpts != nil {
		e.runOpts(&s.opts)
	}
	return s, nil
}

// close waits for the bars to finish drawing and closes the databases.
func (s *session) close() error {
	if s.progress != nil {
		s.progress.Shutdown()
	}
	if s.dbs != nil {
		return s.dbs.Close()
	}
	return nil
}

type varFlags struct {
	vars     []string
	varFiles []string
}

func (v *varFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringArrayVar(&v.vars, "var", nil, "set a pipeline variable: -var name=value (repeatable)")
	cmd.Flags().StringArrayVar(&v.varFiles, "var-file", nil, "read variables from a file (HCL, or JSON if it ends in .json; repeatable)")
}

func (v *varFlags) source(files []string) (runner.Source, error) {
	src := runner.Source{Files: files, VarFiles: v.varFiles}
	if len(v.vars) > 0 {
		src.Vars = map[string]string{}
		for _, kv := range v.vars {
			k, val, ok := strings.Cut(kv, "=")
			if !ok || strings.TrimSpace(k) == "" {
				return src, usageError("-var %q: want name=value", kv)
			}
			src.Vars[strings.TrimSpace(k)] = val
		}
	}
	return src, nil
}

func newRunCmd(e env, g *globalFlags) *cobra.Command {
	var vf varFlags
	var only []string
	var stopOnCollapse bool
	var stopAfter int64
	cmd := &cobra.Command{
		Use:   "run FILE...",
		Short: "Train the runs of a pipeline",
		Long: `Run trains the run of a pipeline, or every run of a study in order. Each run
gets a directory next to the database (checkpoints/<run-id>) with its
checkpoints and state. Ctrl-C stops after the current step, writes a checkpoint
and leaves the run resumable with 'sslrun resume'; a second Ctrl-C aborts.

The encoder, the loss and the analyzers are plugins: the bundled ones run as
subprocesses of this binary (--in-process runs them in this process, with the
same results); external ones are executables found in ./plugins beside the
pipeline (or --plugin-dir) or named by path, pinned by sha256 in the lock file
beside the pipeline (sslrun plugins lock). A plugin that crashes or hangs fails
the run with an error naming it.`,
		Example: `  sslrun run pipelines/quickstart.hcl
  sslrun run pipelines/quickstart.hcl -var epochs=10 -var seed=1
  sslrun run --in-process pipelines/quickstart.hcl
  sslrun run pipelines/methods_fashion.hcl --only simsiam-seed0 --only byol-seed0`,
		Args: minArgs(1, "pipeline file"),
		RunE: func(cmd *cobra.Command, args []string) error {
			src, err := vf.source(args)
			if err != nil {
				return err
			}
			pl, err := runner.Parse(src, g.parseOpts(e), e.stderr)
			if err != nil {
				return err
			}
			if len(only) > 0 {
				if pl.Runs, err = selectRuns(pl.Runs, only); err != nil {
					return err
				}
			}
			s, err := newSession(e, g)
			if err != nil {
				return err
			}
			s.opts.StopOnCollapse = stopOnCollapse
			if stopAfter > 0 {
				s.opts.StopAfterSteps = stopAfter
			}
			results, err := runner.RunPipeline(cmd.Context(), pl, src, s.opts)
			err = errors.Join(err, s.close())
			printResults(e.stdout, results)
			return err
		},
	}
	vf.add(cmd)
	cmd.Flags().StringArrayVar(&only, "only", nil, "run only the named run(s) of a study (repeatable)")
	cmd.Flags().BoolVar(&stopOnCollapse, "stop-on-collapse", false, "stop a run when the decompose analyzer reports collapse")
	cmd.Flags().Int64Var(&stopAfter, "stop-after-steps", 0, "stop (resumably, with a checkpoint) after this many optimizer steps")
	return cmd
}

// selectRuns keeps the runs named in only, in pipeline order.
func selectRuns(runs []*pipeline.Run, only []string) ([]*pipeline.Run, error) {
	want := map[string]bool{}
	for _, o := range only {
		want[o] = true
	}
	var out []*pipeline.Run
	var names []string
	for _, r := range runs {
		names = append(names, r.Name)
		if want[r.Name] {
			out = append(out, r)
			delete(want, r.Name)
		}
	}
	if len(want) > 0 {
		var missing []string
		for k := range want {
			missing = append(missing, k)
		}
		return nil, usageError("--only: no run named %s; the pipeline has %s", strings.Join(missing, ", "), strings.Join(names, ", "))
	}
	return out, nil
}

// printResults prints a summary table of finished runs.
func printResults(w io.Writer, results []*runner.Result) {
	if len(results) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN\tSTATUS\tEPOCHS\tSTEPS\tFINAL LOSS\tEVALUATION\tTIME\tDIR")
	for _, r := range results {
		evs := "-"
		if n := len(r.Evals); n > 0 {
			var parts []string
			last := map[string]runner.EvalRecord{}
			order := []string{}
			for _, ev := range r.Evals {
				if _, ok := last[ev.Protocol]; !ok {
					order = append(order, ev.Protocol)
				}
				last[ev.Protocol] = ev
			}
			for _, p := range order {
				ev := last[p]
				parts = append(parts, fmt.Sprintf("%s@%d %.4f", p, ev.Epoch, ev.Top1))
			}
			evs = strings.Join(parts, ", ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.6g\t%s\t%s\t%s\n", r.Name, r.Status, r.Epochs, r.Steps, r.FinalLoss(), evs, r.Elapsed.Round(time.Millisecond), r.Dir)
	}
	tw.Flush()
	for _, r := range results {
		if r.Resumable {
			fmt.Fprintf(w, "\nRun %s stopped with a checkpoint. Continue it with:\n  sslrun resume %s\n", r.Name, r.Dir)
		}
	}
}

func newValidateCmd(e env, g *globalFlags) *cobra.Command {
	var vf varFlags
	cmd := &cobra.Command{
		Use:   "validate FILE...",
		Short: "Check pipeline files and list the runs they resolve to",
		Long: `Validate parses the pipeline files (read together as one pipeline), checks
every block against its schema (each plugin block against the schema the
plugin itself serves: the plugins named are started to ask them), and prints
all errors at once with file:line:column. It trains nothing. Exit code
2 when there is any error.`,
		Example: `  sslrun validate pipelines/quickstart.hcl
  sslrun validate pipelines/methods_fashion.hcl -var epochs=1`,
		Args: minArgs(1, "pipeline file"),
		RunE: func(cmd *cobra.Command, args []string) error {
			src, err := vf.source(args)
			if err != nil {
				return err
			}
			pl, err := runner.Parse(src, g.parseOpts(e), e.stderr)
			if err != nil {
				return err
			}
			what := "1 run"
			if pl.Study != nil {
				what = fmt.Sprintf("study %q, %d runs", pl.Study.Name, len(pl.Runs))
			}
			fmt.Fprintf(e.stdout, "Success! The pipeline is valid (%s).\n\n", what)
			tw := tabwriter.NewWriter(e.stdout, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "RUN\tLOSS\tEPOCHS\tBATCH\tSEED\tHASH")
			for _, r := range pl.Runs {
				c := r.Config
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%.12s\n", r.Name, c.Loss.Name, c.Epochs, c.BatchSize, c.Seed, r.Hash)
			}
			return tw.Flush()
		},
	}
	vf.add(cmd)
	return cmd
}

func newFmtCmd(e env) *cobra.Command {
	var check, write bool
	cmd := &cobra.Command{
		Use:   "fmt [-check] [-w] FILE...",
		Short: "Format pipeline files in the canonical style",
		Long: `Fmt rewrites pipeline files in the canonical layout (Terraform's: aligned '=',
two-space indent, comments kept). Without flags it prints the formatted text;
-w writes files in place; -check lists files that are not formatted and exits
with 1 if there is any. A file that does not parse is never rewritten.`,
		Example: `  sslrun fmt -check pipelines/*.hcl
  sslrun fmt -w my.hcl`,
		Args: minArgs(1, "pipeline file"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var unformatted []string
			var errs []error
			for _, path := range args {
				src, err := os.ReadFile(path)
				if err != nil {
					errs = append(errs, usageError("%v", err))
					continue
				}
				out, err := pipeline.FormatSource(path, src)
				if err != nil {
					var se *pipeline.SyntaxError
					if errors.As(err, &se) {
						p := pipeline.NewParser(pipeline.Options{})
						p.ParseSource(path, src) // registers the file for snippets
						p.WriteDiagnostics(e.stderr, se.Diags, 100)
					}
					errs = append(errs, &runner.ConfigError{Err: fmt.Errorf("%s: cannot format: %w", path, err)})
					continue
				}
				changed := !bytes.Equal(src, out)
				switch {
				case check:
					if changed {
						unformatted = append(unformatted, path)
						fmt.Fprintln(e.stdout, path)
					}
				case write:
					if changed {
						st, err := os.Stat(path)
						if err != nil {
							errs = append(errs, err)
							continue
						}
						if err := os.WriteFile(path, out, st.Mode().Perm()); err != nil {
							errs = append(errs, err)
							continue
						}
						fmt.Fprintln(e.stdout, path)
					}
				default:
					e.stdout.Write(out)
				}
			}
			if err := errors.Join(errs...); err != nil {
				return err
			}
			if len(unformatted) > 0 {
				return fmt.Errorf("%d file(s) not formatted; run: sslrun fmt -w %s", len(unformatted), strings.Join(unformatted, " "))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&check, "check", false, "list unformatted files and exit 1 if any (write nothing)")
	cmd.Flags().BoolVarP(&write, "write", "w", false, "write the result to the file instead of stdout")
	return cmd
}

func newResumeCmd(e env, g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "resume RUN",
		Short: "Continue a stopped run from its last checkpoint",
		Long: `Resume continues a run stopped with Ctrl-C (or --stop-after-steps) from its
latest checkpoint, with the pipeline snapshot stored in the run directory. The
resumed run's results are identical to an uninterrupted run's. RUN is a run
directory or a run ID (looked up under ./checkpoints).`,
		Example: `  sslrun resume checkpoints/quickstart-20261130-012345
  sslrun resume quickstart-20261130-012345`,
		Args: exactArgs(1, "run"),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := newSession(e, g)
			if err != nil {
				return err
			}
			res, err := runner.Resume(cmd.Context(), args[0], s.opts, e.stderr)
			err = errors.Join(err, s.close())
			if res != nil {
				printResults(e.stdout, []*runner.Result{res})
			}
			return err
		},
	}
}

func newEvalCmd(e env, g *globalFlags) *cobra.Command {
	var protocol string
	cmd := &cobra.Command{
		Use:   "eval RUN --protocol knn|linear",
		Short: "Evaluate a run's latest checkpoint",
		Long: `Eval computes frozen features with the run's latest checkpoint and evaluates
them with a weighted kNN classifier or a linear probe, with the settings of the
pipeline's evaluate block of that kind (or the defaults on its "train" and
"test" datasets).`,
		Example: `  sslrun eval quickstart-20261130-012345 --protocol knn
  sslrun eval checkpoints/quickstart-20261130-012345 --protocol linear`,
		Args: exactArgs(1, "run"),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := newSession(e, g)
			if err != nil {
				return err
			}
			defer s.close()
			rec, err := runner.Evaluate(cmd.Context(), args[0], protocol, s.opts, e.stderr)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "%s on %s (%s features, %d samples, after epoch %d): top-1 %.4f, top-5 %.4f\n",
				rec.Protocol, rec.Dataset, rec.Feature, rec.N, rec.Epoch, rec.Top1, rec.Top5)
			return nil
		},
	}
	cmd.Flags().StringVar(&protocol, "protocol", "knn", "evaluation protocol: knn or linear")
	return cmd
}

func newPluginsCmd(e env, g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "plugins",
		Short: "List plugins, show their configuration schemas, pin external ones",
		Long: `Plugins lists the plugins, shows the configuration schema each one serves and
pins external plugins in a pipeline's lock file.

External plugins (executables named sslrun-plugin-NAME) are only started once
their sha256 is pinned in a lock file: list and schema read the lock file of
the pipeline given with --pipeline (my.hcl -> my.lock.json) and then also search
./plugins beside it, as a run of that pipeline would.`,
		Example: `  sslrun plugins list
  sslrun plugins schema simsiam
  sslrun plugins lock my.hcl vicreg
  sslrun plugins list --pipeline my.hcl
  sslrun plugins schema vicreg --pipeline my.hcl`,
		Args: exactArgs(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	var pipelineFile string
	// schemas starts plugins as a run would, searching ./plugins,
	// --plugin-dir and, with --pipeline, ./plugins beside the pipeline
	// for external ones, verified against the pipeline's lock file.
	schemas := func() (*runner.Schemas, error) {
		o := g.parseOpts(e)
		o.PluginDirs = append(o.PluginDirs, "plugins")
		var files []string
		if pipelineFile != "" {
			if _, err := os.Stat(pipelineFile); err != nil {
				return nil, usageError("--pipeline: %v", err)
			}
			files = []string{pipelineFile}
		}
		return runner.NewSchemas(o, files)
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the plugins: bundled ones and external ones in the plugin directories",
		Long: `List starts every plugin and prints what it says about itself: name, version
and kinds (encoder, loss, analyzer). External plugins are looked up in
./plugins, --plugin-dir and, with --pipeline, ./plugins beside the pipeline;
one that cannot start (e.g. not pinned in the pipeline's lock file) is listed
with the reason.`,
		Example: "  sslrun plugins list\n  sslrun plugins list --plugin-dir ~/sslrun-plugins\n  sslrun plugins list --pipeline my.hcl",
		Args:    exactArgs(0, ""),
		RunE: func(*cobra.Command, []string) error {
			s, err := schemas()
			if err != nil {
				return err
			}
			defer s.Close()
			tw := tabwriter.NewWriter(e.stdout, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tKINDS\tVERSION\tSOURCE")
			for _, p := range s.Plugins() {
				kinds := make([]string, len(p.Kinds))
				for i, k := range p.Kinds {
					kinds[i] = string(k)
				}
				ver := p.Version
				if p.Err != "" {
					ver = "error: " + p.Err
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.Name, strings.Join(kinds, ","), ver, p.Source)
			}
			return tw.Flush()
		},
	}
	schema := &cobra.Command{
		Use:   "schema NAME|PATH",
		Short: "Show the arguments a plugin block accepts, as the plugin declares them",
		Long: `Schema starts the plugin and prints the arguments its block accepts, from the
schema the plugin itself serves. An external plugin (named as in the pipeline,
or by the path of its executable) must be pinned in the lock file of the
pipeline given with --pipeline.`,
		Example: "  sslrun plugins schema simsiam\n  sslrun plugins schema decompose\n  sslrun plugins schema vicreg --pipeline my.hcl\n  sslrun plugins schema ./plugins/sslrun-plugin-vicreg --pipeline my.hcl",
		Args:    exactArgs(1, "plugin name or path"),
		RunE: func(_ *cobra.Command, args []string) error {
			s, err := schemas()
			if err != nil {
				return err
			}
			defer s.Close()
			kinds, docs, err := s.Describe(args[0])
			if err != nil {
				return err
			}
			for _, k := range kinds {
				if k == "encoder" {
					// Its options come from the pipeline's encoder block
					// (docs/pipelines.md), not from a schema of its own.
					fmt.Fprintf(e.stdout, "encoder %q: configured by the pipeline's encoder block (see docs/pipelines.md)\n", args[0])
					continue
				}
				fmt.Fprintf(e.stdout, "%s %q {\n", k, args[0])
				tw := tabwriter.NewWriter(e.stdout, 2, 4, 1, ' ', 0)
				for _, d := range docs {
					req := "optional"
					if d.Required {
						req = "required"
					}
					var notes []string
					if d.Default != "" {
						notes = append(notes, "default "+d.Default)
					}
					if len(d.Allowed) > 0 {
						notes = append(notes, "one of "+strings.Join(d.Allowed, ", "))
					}
					if d.Min != "" {
						notes = append(notes, ">= "+d.Min)
					}
					if d.Max != "" {
						notes = append(notes, "<= "+d.Max)
					}
					if d.Description != "" {
						notes = append(notes, d.Description)
					}
					fmt.Fprintf(tw, "  %s\t= %s\t# %s\t%s\n", d.Name, d.Type, req, strings.Join(notes, "; "))
				}
				tw.Flush()
				fmt.Fprintln(e.stdout, "}")
			}
			return nil
		},
	}
	lock := &cobra.Command{
		Use:   "lock PIPELINE [NAME|PATH...]",
		Short: "Pin external plugins' sha256 in the lock file beside a pipeline",
		Long: `Lock records the sha256 of external plugin executables in the lock file beside
the pipeline (my.hcl -> my.lock.json). A run verifies every external plugin
against it before starting it and fails on a mismatch or a missing entry.
Plugins are named as in the pipeline (looked up as sslrun-plugin-NAME in
./plugins beside the pipeline and --plugin-dir) or by path; with none, every
external plugin in those directories is pinned. Re-run it after rebuilding a
plugin.`,
		Example: "  sslrun plugins lock my.hcl vicreg\n  sslrun plugins lock my.hcl ./bin/sslrun-plugin-vicreg\n  sslrun plugins lock my.hcl",
		Args:    minArgs(1, "pipeline file"),
		RunE: func(_ *cobra.Command, args []string) error {
			dirs := runner.PluginDirs(args[:1], g.pluginDirs)
			names := args[1:]
			if len(names) == 0 {
				for i := len(dirs) - 1; i >= 0; i-- {
					found, err := plugin.Discover(dirs[i])
					if err != nil {
						return err
					}
					for n := range found {
						if !slices.Contains(names, n) {
							names = append(names, n)
						}
					}
				}
				if len(names) == 0 {
					return usageError("no external plugins (sslrun-plugin-NAME) in %s", strings.Join(dirs, ", "))
				}
				sort.Strings(names)
			}
			path := plugin.LockPath(args[0])
			l, err := plugin.ReadLock(path)
			if err != nil {
				return err
			}
			for _, n := range names {
				exe, err := plugin.Resolve(n, dirs...)
				if err != nil {
					return usageError("%v", err)
				}
				if exe, err = filepath.Abs(exe); err != nil {
					return err
				}
				if err := l.Pin(n, exe); err != nil {
					return err
				}
				fmt.Fprintf(e.stdout, "%s\t%s\t%s\n", n, l.Plugins[n].SHA256, exe)
			}
			if err := l.Write(path); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "Wrote %s\n", path)
			return nil
		},
	}
	for _, c := range []*cobra.Command{list, schema} {
		c.Flags().StringVar(&pipelineFile, "pipeline", "", "use this pipeline's lock file (and ./plugins beside it) for external plugins")
	}
	cmd.AddCommand(list, schema, lock)
	return cmd
}

func newVersionCmd(e env) *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print the version of sslrun",
		Example: "  sslrun version",
		Args:    exactArgs(0, ""),
		RunE: func(*cobra.Command, []string) error {
			fmt.Fprintf(e.stdout, "sslrun %s (%s, %s/%s)\n", version(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}

// version is the module version and VCS revision the binary was built
// from, as the Go toolchain stamped them.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	v := bi.Main.Version
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if rev != "" {
		v += " " + rev[:min(12, len(rev))] + dirty
	}
	return v
}

// isTerminal reports whether f is an interactive terminal.
func isTerminal(f *os.File) bool {
	return isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd())
}
