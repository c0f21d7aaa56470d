package report

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestWriteFileAtomic: the report is written 0644 through a temporary file;
// a failed render leaves an existing report untouched and no temporary
// file behind.
func TestWriteFileAtomic(t *testing.T) {
	db := fixture(t)
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	tests := []struct {
		name    string
		ctx     context.Context
		old     string // existing report content; "" for none
		wantErr bool
	}{
		{"new report", ctx, "", false},
		{"replaces a 0600 report", ctx, "old report", false},
		{"failed render keeps the old report", cancelled, "old report", true},
		{"failed render creates nothing", cancelled, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "report.html")
			if tc.old != "" {
				if err := os.WriteFile(path, []byte(tc.old), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			err := WriteFile(tc.ctx, path, db, Options{Study: "cifar"})
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v, want error %v", err, tc.wantErr)
			}
			if tc.wantErr && !errors.Is(err, context.Canceled) {
				t.Errorf("err %v does not wrap context.Canceled", err)
			}
			es, _ := os.ReadDir(dir)
			for _, e := range es {
				if e.Name() != "report.html" {
					t.Errorf("temporary file %s left behind", e.Name())
				}
			}
			got, rerr := os.ReadFile(path)
			switch {
			case tc.wantErr && tc.old == "":
				if !errors.Is(rerr, os.ErrNotExist) {
					t.Errorf("a failed render created %s", path)
				}
				return
			case tc.wantErr:
				if string(got) != tc.old {
					t.Errorf("old report changed to %.40q", got)
				}
				return
			}
			if !strings.Contains(string(got), "</html>") {
				t.Errorf("report is not a complete page: %.80q", got)
			}
			st, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if runtime.GOOS != "windows" && st.Mode().Perm() != 0o644 {
				t.Errorf("mode %v, want -rw-r--r--", st.Mode().Perm())
			}
		})
	}
}
