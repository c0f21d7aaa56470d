package pipeline

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestShippedPipelines parses every file under pipelines/: this is what
// keeps `sslrun validate` passing on them in CI.
func TestShippedPipelines(t *testing.T) {
	paths, err := filepath.Glob("../../pipelines/*.hcl")
	if err != nil {
		t.Fatal(err)
	}
	json, _ := filepath.Glob("../../pipelines/*.hcl.json")
	paths = append(paths, json...)
	if len(paths) < 6 {
		t.Fatalf("found only %d pipelines: %v", len(paths), paths)
	}
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			p := NewParser(Options{})
			pl, diags := p.ParseFiles(path)
			if diags.HasErrors() {
				var buf bytes.Buffer
				p.WriteDiagnostics(&buf, diags, 0)
				t.Fatalf("%s", buf.String())
			}
			if len(pl.Runs) == 0 {
				t.Fatal("no runs")
			}
			for _, r := range pl.Runs {
				if r.Hash == "" || len(r.JSON) == 0 {
					t.Errorf("run %s: no hash/json", r.Name)
				}
				for i, v := range r.Config.Augment.Views {
					if err := v.Pipeline().Validate(); err != nil {
						t.Errorf("run %s view %d: %v", r.Name, i, err)
					}
				}
			}
			if strings.HasSuffix(path, ".json") {
				return
			}
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			out, err := Format(src)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out, src) {
				t.Errorf("%s is not formatted (sslrun fmt would change it)", path)
			}
		})
	}
}
