package main

import (
	"context"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sslrun/sslrun/core/plugin"
	"github.com/sslrun/sslrun/core/rundb"
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
	if r = sslrun(t, ctx, dir, nil, "plugins", "schema", "vicreg", "--plugin-dir", filepath.Dir(exe)); r.code == exitOK || !strings.Contains(flat(r.stderr), "--pipeline") {
		t.Errorf("plugins schema of an external plugin pinned only beside a pipeline: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// With the pipeline, its lock file pins the plugin: by name or by path.
	for _, name := range []string{"vicreg", exe} {
		if r = sslrun(t, ctx, dir, nil, "plugins", "schema", name, "--pipeline", p); r.code != exitOK || !strings.Contains(r.stdout, `loss "`+name+`" {`) || !strings.Contains(r.stdout, "cov_loss_weight") {
			t.Errorf("plugins schema %s --pipeline: exit %d\n%s%s", name, r.code, r.stdout, r.stderr)
		}
	}
	if r = sslrun(t, ctx, dir, nil, "plugins", "list", "--pipeline", p); r.code != exitOK || !strings.Contains(flat(r.stdout), "vicreg loss 0.1.0 "+exe) {
		t.Errorf("plugins list --pipeline: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = sslrun(t, ctx, dir, nil, "run", "-var", "epochs=1", p)
	if r.code != exitOK || !strings.Contains(r.stdout, "FINISHED") {
		t.Fatalf("run with the pinned plugin: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr, `"loss":"vicreg"`) {
		t.Errorf("the run does not log the vicreg loss:\n%s", r.stderr)
	}
	// The run database records the plugin's version and the checksum the
	// lock file pinned and the host verified; bundled plugins the sha256 of
	// the binary re-executed for them (this test binary).
	lock, err := plugin.ReadLock(plugin.LockPath(p))
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	selfSum, err := plugin.HashFile(self)
	if err != nil {
		t.Fatal(err)
	}
	db, err := rundb.OpenReadOnly(filepath.Join(dir, "sslrun.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	runs, err := db.ListRuns(ctx, rundb.RunFilter{})
	if err != nil || len(runs) != 1 {
		t.Fatalf("runs in the database: %d, %v", len(runs), err)
	}
	d, err := db.ShowRun(ctx, strconv.FormatInt(runs[0].ID, 10))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]rundb.Plugin{}
	for _, pl := range d.Plugins {
		got[pl.Role+"/"+pl.Name] = pl
	}
	if pl := got["loss/vicreg"]; pl.Version != "0.1.0" || pl.SHA256 != lock.Plugins["vicreg"].SHA256 {
		t.Errorf("recorded loss plugin %+v, want version 0.1.0 and sha256 %s", pl, lock.Plugins["vicreg"].SHA256)
	}
	if pl := got["encoder/encoder"]; pl.Version == "" || pl.Version == "bundled" || pl.SHA256 != hex.EncodeToString(selfSum) {
		t.Errorf("recorded encoder plugin %+v, want its version and sha256 %x", pl, selfSum)
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
