package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sslrun/sslrun/core/plugin"
)

// TestExternalPluginRun builds plugins/vicreg as its own executable into
// the plugins directory beside a pipeline that names it, and runs the
// pipeline as a user would: refused until pinned, pinned with `sslrun
// plugins lock`, trained, and refused again once the executable changes.
func TestExternalPluginRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the vicreg plugin; skipped with -short")
	}
	dir, path := tiny(t)
	exe := filepath.Join(dir, "plugins", plugin.ExternalPrefix+"vicreg")
	if out, err := exec.Command("go", "build", "-o", exe, "github.com/sslrun/sslrun/plugins/vicreg").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	src, _ := os.ReadFile(path)
	p := filepath.Join(dir, "vicreg.hcl")
	text := strings.Replace(string(src), `loss "simsiam" {}`, "loss \"vicreg\" {\n  cov_loss_weight = 2\n}", 1)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	// Diagnostics wrap long lines: compare with single spaces.
	flat := func(s string) string { return strings.Join(strings.Fields(s), " ") }
	r := sslrun(t, ctx, dir, nil, "run", "-var", "epochs=1", p)
	if msg := flat(r.stderr); r.code != exitUsage || !strings.Contains(msg, "is not pinned in") || !strings.Contains(msg, "sslrun plugins lock "+p+" vicreg") || !strings.Contains(msg, "vicreg.hcl:62") {
		t.Fatalf("run without a lock entry: exit %d\n%s", r.code, r.stderr)
	}
	if r = sslrun(t, ctx, dir, nil, "plugins", "lock", p, "vicreg"); r.code != exitOK || !strings.Contains(r.stdout, "vicreg.lock.json") {
		t.Fatalf("plugins lock: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if r = sslrun(t, ctx, dir, nil, "plugins", "schema", "vicreg", "--plugin-dir", filepath.Dir(exe)); r.code == exitOK {
		t.Errorf("plugins schema of an external plugin pinned only beside a pipeline: exit 0\n%s", r.stdout)
	}
	r = sslrun(t, ctx, dir, nil, "run", "-var", "epochs=1", p)
	if r.code != exitOK || !strings.Contains(r.stdout, "FINISHED") {
		t.Fatalf("run with the pinned plugin: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr, `"loss":"vicreg"`) {
		t.Errorf("the run does not log the vicreg loss:\n%s", r.stderr)
	}

	// A rebuilt or replaced executable no longer matches the lock file.
	f, err := os.OpenFile(exe, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{0})
	f.Close()
	r = sslrun(t, ctx, dir, nil, "run", "-var", "epochs=1", p)
	if r.code != exitUsage || !strings.Contains(flat(r.stderr), "the lock file expects") {
		t.Fatalf("run with a changed executable: exit %d\n%s", r.code, r.stderr)
	}
}

// TestShippedPipelinesValidate runs `sslrun validate` on every shipped
// pipeline: each plugin block is checked against the schema the plugin
// itself serves from its subprocess.
func TestShippedPipelinesValidate(t *testing.T) {
	paths, _ := filepath.Glob("../../pipelines/*.hcl")
	json, _ := filepath.Glob("../../pipelines/*.hcl.json")
	paths = append(paths, json...)
	if len(paths) < 6 {
		t.Fatalf("found only %d pipelines", len(paths))
	}
	for _, p := range paths {
		t.Run(filepath.Base(p), func(t *testing.T) {
			r := sslrun(t, context.Background(), t.TempDir(), nil, "validate", p)
			if r.code != exitOK || !strings.Contains(r.stdout, "Success!") {
				t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
			}
		})
	}
}
