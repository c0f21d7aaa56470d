package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sslrun/sslrun/core/plugin"
	"github.com/sslrun/sslrun/core/runner"
	"github.com/sslrun/sslrun/core/safetensors"
)

func TestMain(m *testing.M) {
	registerBundled()
	// Launched by a test host as a bundled plugin: serve it, as main does.
	plugin.ServeIfBundled()
	os.Exit(m.Run())
}

// result is one in-process invocation of the command.
type result struct {
	code           int
	stdout, stderr string
}

// sslrun runs the command line in process, with relative pipeline paths
// (the database and the run directories) resolved in dir.
func sslrun(t *testing.T, ctx context.Context, dir string, mod func(*runner.Options), args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := execute(ctx, args, env{stdout: &out, stderr: &errb, runOpts: func(o *runner.Options) {
		o.Dir = dir
		if mod != nil {
			mod(o)
		}
	}})
	return result{code, out.String(), errb.String()}
}

// tiny copies testdata/tiny.hcl into a fresh directory.
func tiny(t *testing.T) (dir, path string) {
	t.Helper()
	dir = t.TempDir()
	src, err := os.ReadFile("testdata/tiny.hcl")
	if err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(dir, "tiny.hcl")
	if err := os.WriteFile(path, src, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, path
}

// logLines decodes the JSON log lines of stderr.
func logLines(t *testing.T, stderr string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(stderr))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		out = append(out, m)
	}
	return out
}

func messages(lines []map[string]any, msg string) []map[string]any {
	var out []map[string]any
	for _, l := range lines {
		if l["message"] == msg {
			out = append(out, l)
		}
	}
	return out
}

// runDir returns the DIR column of the results table.
func runDir(t *testing.T, stdout string) string {
	t.Helper()
	for _, line := range strings.Split(stdout, "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && f[0] == "tiny" {
			if d := f[len(f)-1]; filepath.IsAbs(d) {
				return d
			}
			t.Fatalf("run directory %q is not absolute", f[len(f)-1])
		}
	}
	t.Fatalf("no run in the output:\n%s", stdout)
	return ""
}

// finalWeights reads a run's final checkpoint (epoch 2) tensors.
func finalWeights(t *testing.T, dir string) map[string][]float32 {
	t.Helper()
	f, err := safetensors.ReadFile(filepath.Join(dir, "ckpt-2.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]float32{}
	for _, n := range f.Names() {
		if e, _ := f.Entry(n); e.DType == "F32" {
			x, err := f.Tensor(n)
			if err != nil {
				t.Fatal(err)
			}
			out[n] = x.Data
		}
	}
	return out
}

func equalWeights(t *testing.T, a, b map[string][]float32) {
	t.Helper()
	if len(a) != len(b) || len(a) == 0 {
		t.Fatalf("%d vs %d tensors", len(a), len(b))
	}
	for k, va := range a {
		vb := b[k]
		if len(va) != len(vb) {
			t.Fatalf("%s: %d vs %d values", k, len(va), len(vb))
		}
		for i := range va {
			if math.Float32bits(va[i]) != math.Float32bits(vb[i]) {
				t.Fatalf("%s[%d]: %v vs %v", k, i, va[i], vb[i])
			}
		}
	}
}

func TestRunDeterministicAndResume(t *testing.T) {
	ctx := context.Background()
	dir, path := tiny(t)
	r1 := sslrun(t, ctx, dir, nil, "run", path)
	if r1.code != exitOK {
		t.Fatalf("run: exit %d\n%s\n%s", r1.code, r1.stdout, r1.stderr)
	}
	if !strings.Contains(r1.stdout, "FINISHED") || !strings.Contains(r1.stdout, "knn@2") {
		t.Errorf("results table:\n%s", r1.stdout)
	}
	lines := logLines(t, r1.stderr)
	if n := len(messages(lines, "epoch done")); n != 2 {
		t.Errorf("%d 'epoch done' log lines, want 2", n)
	}
	evals := messages(lines, "evaluation")
	if len(evals) != 3 || evals[0]["epoch"] != 0.0 {
		t.Errorf("evaluations logged: %v, want kNN at epochs 0, 1, 2", evals)
	}
	if len(messages(lines, "analysis")) == 0 {
		t.Error("no analyzer lines logged")
	}
	d1 := runDir(t, r1.stdout)
	if _, err := os.Stat(filepath.Join(dir, "sslrun.db")); err != nil {
		t.Errorf("no run database: %v", err)
	}

	// Same pipeline, same seed: identical weights.
	r2 := sslrun(t, ctx, dir, nil, "run", "-var", "epochs=2", path)
	if r2.code != exitOK {
		t.Fatalf("second run: exit %d\n%s", r2.code, r2.stderr)
	}
	d2 := runDir(t, r2.stdout)
	if d1 == d2 {
		t.Fatalf("two runs share the directory %s", d1)
	}
	equalWeights(t, finalWeights(t, d1), finalWeights(t, d2))

	// Stopped after 11 of 16 steps, then resumed: identical to the full run.
	r3 := sslrun(t, ctx, dir, nil, "run", "--stop-after-steps", "11", path)
	if r3.code != exitFailed || !strings.Contains(r3.stdout, "sslrun resume") || !strings.Contains(r3.stdout, "KILLED") {
		t.Fatalf("stopped run: exit %d\n%s\n%s", r3.code, r3.stdout, r3.stderr)
	}
	d3 := runDir(t, r3.stdout)
	r4 := sslrun(t, ctx, dir, nil, "resume", d3)
	if r4.code != exitOK || !strings.Contains(r4.stdout, "FINISHED") {
		t.Fatalf("resume: exit %d\n%s\n%s", r4.code, r4.stdout, r4.stderr)
	}
	equalWeights(t, finalWeights(t, d1), finalWeights(t, d3))
	fl := func(out string) string {
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) > 4 && f[0] == "tiny" {
				return f[4]
			}
		}
		return ""
	}
	if a, b := fl(r1.stdout), fl(r4.stdout); a != b || a == "" {
		t.Errorf("final loss %s uninterrupted, %s resumed", a, b)
	}
	// A finished run cannot be resumed; eval works on it (by ID).
	if r := sslrun(t, ctx, dir, nil, "resume", d3); r.code != exitUsage {
		t.Errorf("resume of a finished run: exit %d, want %d\n%s", r.code, exitUsage, r.stderr)
	}
	r5 := sslrun(t, ctx, dir, nil, "eval", filepath.Base(d1), "--protocol", "knn")
	if r5.code != exitOK || !strings.Contains(r5.stdout, "top-1") {
		t.Errorf("eval: exit %d\n%s\n%s", r5.code, r5.stdout, r5.stderr)
	}
}

func TestRunNonFiniteLoss(t *testing.T) {
	dir, path := tiny(t)
	r := sslrun(t, context.Background(), dir, nil, "run", "-var", "lr=1e30", path)
	if r.code != exitFailed {
		t.Fatalf("exit %d, want %d\n%s", r.code, exitFailed, r.stderr)
	}
	if !strings.Contains(r.stderr, "loss is NaN") && !strings.Contains(r.stderr, "loss is +Inf") && !strings.Contains(r.stderr, "loss is -Inf") {
		t.Errorf("stderr does not report the non-finite loss:\n%s", r.stderr)
	}
	if !strings.Contains(r.stderr, "Error: run tiny: step ") || !strings.Contains(r.stderr, "last finite loss") {
		t.Errorf("the error does not name the step and the last finite loss:\n%s", r.stderr)
	}
	if !strings.Contains(r.stdout, "FAILED") {
		t.Errorf("results table:\n%s", r.stdout)
	}
}

func TestCtrlCLeavesResumableCheckpoint(t *testing.T) {
	dir, path := tiny(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := sslrun(t, ctx, dir, func(o *runner.Options) {
		o.OnStep = func(e runner.StepEvent) {
			if e.Step == 10 {
				cancel() // SIGINT during step 10 (epoch 2, batch 2)
			}
		}
	}, "run", path)
	if r.code != exitFailed || !strings.Contains(r.stderr, "run interrupted") {
		t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	d := runDir(t, r.stdout)
	b, err := os.ReadFile(filepath.Join(d, "run.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Status     string
		Resumable  bool
		Checkpoint string
		Step       int64
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	if st.Status != "KILLED" || !st.Resumable || st.Checkpoint != "ckpt-1-3" || st.Step != 11 {
		t.Fatalf("run.json: %s", b)
	}
	if _, err := os.Stat(filepath.Join(d, "ckpt-1-3.safetensors")); err != nil {
		t.Error(err)
	}
	// The ID alone finds it (under ./checkpoints).
	if r := sslrun(t, context.Background(), dir, nil, "resume", filepath.Base(d)); r.code != exitOK {
		t.Fatalf("resume by ID: exit %d\n%s", r.code, r.stderr)
	}
}

func TestValidate(t *testing.T) {
	dir, path := tiny(t)
	r := sslrun(t, context.Background(), dir, nil, "validate", path)
	if r.code != exitOK || !strings.Contains(r.stdout, "Success!") || !strings.Contains(r.stdout, "tiny") {
		t.Fatalf("valid file: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	src, _ := os.ReadFile(path)
	broken := strings.Replace(string(src), "batch_size = 128", "batchsize = 128", 1)
	broken = strings.Replace(broken, `source = "mnist"`, `source = "mnsit"`, 1)
	bad := filepath.Join(dir, "broken.hcl")
	if err := os.WriteFile(bad, []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	r = sslrun(t, context.Background(), dir, nil, "validate", bad)
	if r.code != exitUsage {
		t.Fatalf("broken file: exit %d, want %d\n%s", r.code, exitUsage, r.stderr)
	}
	for _, want := range []string{bad + ":22:3: error", `Did you mean "batch_size"?`, "broken.hcl:"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("diagnostics lack %q:\n%s", want, r.stderr)
		}
	}
	if n := strings.Count(r.stderr, ": error: "); n < 2 {
		t.Errorf("%d errors listed, want both (one pass):\n%s", n, r.stderr)
	}
}

func TestFmt(t *testing.T) {
	dir, path := tiny(t)
	if r := sslrun(t, context.Background(), dir, nil, "fmt", "-check", path); r.code != exitOK || r.stdout != "" {
		t.Fatalf("formatted file: exit %d, stdout %q\n%s", r.code, r.stdout, r.stderr)
	}
	ugly := filepath.Join(dir, "ugly.hcl")
	if err := os.WriteFile(ugly, []byte("run {\nname = \"x\"\n   epochs= 1\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := sslrun(t, context.Background(), dir, nil, "fmt", "-check", ugly, path)
	if r.code != exitFailed || strings.TrimSpace(r.stdout) != ugly {
		t.Fatalf("fmt -check: exit %d, stdout %q", r.code, r.stdout)
	}
	if r := sslrun(t, context.Background(), dir, nil, "fmt", ugly); r.code != exitOK || !strings.Contains(r.stdout, "  name   = \"x\"") {
		t.Fatalf("fmt to stdout: exit %d\n%s", r.code, r.stdout)
	}
	if r := sslrun(t, context.Background(), dir, nil, "fmt", "-w", ugly); r.code != exitOK {
		t.Fatalf("fmt -w: exit %d\n%s", r.code, r.stderr)
	}
	if r := sslrun(t, context.Background(), dir, nil, "fmt", "-check", ugly); r.code != exitOK {
		t.Fatalf("fmt -check after -w: exit %d, stdout %q", r.code, r.stdout)
	}
	syntax := filepath.Join(dir, "syntax.hcl")
	os.WriteFile(syntax, []byte("run {\n  name = \n"), 0o644)
	if r := sslrun(t, context.Background(), dir, nil, "fmt", "-w", syntax); r.code != exitUsage || !strings.Contains(r.stderr, "syntax.hcl") {
		t.Fatalf("syntax error: exit %d\n%s", r.code, r.stderr)
	}
	if b, _ := os.ReadFile(syntax); string(b) != "run {\n  name = \n" {
		t.Errorf("a broken file was rewritten: %q", b)
	}
}

func TestUsageErrors(t *testing.T) {
	dir, path := tiny(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no file", []string{"run"}, "expected at least 1"},
		{"bad var", []string{"run", "-var", "epochs", path}, "want name=value"},
		{"unknown var", []string{"validate", "-var", "epoch=1", path}, "epoch"},
		{"only", []string{"run", "--only", "nosuch", path}, "no run named nosuch"},
		{"unknown flag", []string{"run", "--bogus", path}, "unknown flag"},
		{"unknown command", []string{"trian"}, "unknown command"},
		{"protocol", []string{"eval", "x", "--protocol", "svm"}, "protocol"},
		{"no run", []string{"resume", "nosuch"}, "no run"},
		{"plugin", []string{"plugins", "schema", "nosuch"}, "no plugin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := sslrun(t, context.Background(), dir, nil, tc.args...)
			if r.code != exitUsage || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit %d (want %d), stderr lacks %q:\n%s", r.code, exitUsage, tc.want, r.stderr)
			}
		})
	}
}

func TestPluginsAndVersion(t *testing.T) {
	dir := t.TempDir()
	r := sslrun(t, context.Background(), dir, nil, "plugins", "list")
	for _, want := range []string{"simsiam", "simclr", "triplet", "byol", "decompose"} {
		if r.code != exitOK || !strings.Contains(r.stdout, want) {
			t.Errorf("plugins list lacks %s:\n%s", want, r.stdout)
		}
	}
	r = sslrun(t, context.Background(), dir, nil, "plugins", "schema", "simsiam")
	if r.code != exitOK || !strings.Contains(r.stdout, `loss "simsiam" {`) || !strings.Contains(r.stdout, "stop_gradient = bool") {
		t.Errorf("plugins schema simsiam:\n%s", r.stdout)
	}
	if r = sslrun(t, context.Background(), dir, nil, "version"); r.code != exitOK || !strings.HasPrefix(r.stdout, "sslrun ") {
		t.Errorf("version: %q", r.stdout)
	}
	// Every command has help with an example.
	for _, c := range newRoot(env{}).Commands() {
		if c.Name() == "help" || c.Name() == "completion" {
			continue
		}
		if c.Example == "" {
			t.Errorf("command %s has no example", c.Name())
		}
		for _, sub := range c.Commands() {
			if sub.Example == "" {
				t.Errorf("command %s %s has no example", c.Name(), sub.Name())
			}
		}
	}
}

func TestStudyRunsInOrderAndOnly(t *testing.T) {
	dir, path := tiny(t)
	src, _ := os.ReadFile(path)
	study := string(src) + `
study "seeds" {
  matrix {
    seed = [1, 2]
  }
}
`
	p := filepath.Join(dir, "study.hcl")
	if err := os.WriteFile(p, []byte(study), 0o644); err != nil {
		t.Fatal(err)
	}
	r := sslrun(t, context.Background(), dir, nil, "validate", p)
	if r.code != exitOK || !strings.Contains(r.stdout, `study "seeds", 2 runs`) {
		t.Fatalf("validate: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	r = sslrun(t, context.Background(), dir, nil, "run", "-var", "epochs=1", p)
	if r.code != exitOK {
		t.Fatalf("run: exit %d\n%s", r.code, r.stderr)
	}
	i1, i2 := strings.Index(r.stdout, "\nseed1 "), strings.Index(r.stdout, "\nseed2 ")
	if i1 < 0 || i2 < i1 {
		t.Errorf("study runs missing or out of order:\n%s", r.stdout)
	}
	r = sslrun(t, context.Background(), dir, nil, "run", "-var", "epochs=1", "-only", "seed2", p)
	if r.code != exitOK || strings.Contains(r.stdout, "\nseed1 ") || !strings.Contains(r.stdout, "\nseed2 ") {
		t.Errorf("--only seed2: exit %d\n%s", r.code, r.stdout)
	}
}

func TestStudyContinuesAfterFailedRun(t *testing.T) {
	dir, path := tiny(t)
	src, _ := os.ReadFile(path)
	p := filepath.Join(dir, "lrs.hcl")
	if err := os.WriteFile(p, append(src, []byte("\nstudy \"lrs\" {\n  matrix {\n    lr = [1e30, 0.05]\n  }\n}\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	r := sslrun(t, context.Background(), dir, nil, "run", "-var", "epochs=1", p)
	if r.code != exitFailed {
		t.Fatalf("exit %d, want %d\n%s", r.code, exitFailed, r.stderr)
	}
	var statuses []string
	for _, line := range strings.Split(r.stdout, "\n") {
		if f := strings.Fields(line); len(f) > 1 && strings.HasPrefix(f[0], "lr") {
			statuses = append(statuses, f[1])
		}
	}
	if strings.Join(statuses, " ") != "FAILED FINISHED" {
		t.Errorf("statuses %v, want the NaN run FAILED and the next one FINISHED:\n%s", statuses, r.stdout)
	}
}
