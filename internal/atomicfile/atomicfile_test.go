package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// entries lists dir's file names, to catch temporary files left behind.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestWrite(t *testing.T) {
	tests := []struct {
		name    string
		old     string // existing content; "" for none
		data    string
		perm    os.FileMode
		wantErr bool
	}{
		{"new file 0644", "", "hello", 0o644, false},
		{"new file 0600", "", "secret", 0o600, false},
		{"replace keeps nothing of the old", "old content that is longer", "new", 0o644, false},
		{"empty", "x", "", 0o644, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "f.bin")
			if tc.old != "" {
				if err := os.WriteFile(path, []byte(tc.old), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if err := Write(path, []byte(tc.data), tc.perm); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(path)
			if err != nil || string(got) != tc.data {
				t.Fatalf("content %q, %v; want %q", got, err, tc.data)
			}
			st, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if runtime.GOOS != "windows" && st.Mode().Perm() != tc.perm {
				t.Errorf("mode %v, want %v", st.Mode().Perm(), tc.perm)
			}
			if names := entries(t, dir); len(names) != 1 || names[0] != "f.bin" {
				t.Errorf("directory holds %v, want only f.bin", names)
			}
		})
	}
}

func TestWriteFuncErrorKeepsOldFile(t *testing.T) {
	errBoom := errors.New("boom")
	tests := []struct {
		name  string
		old   string // "" for no existing file
		write func(io.Writer) error
	}{
		{"error before writing", "old", func(io.Writer) error { return errBoom }},
		{"error after a partial write", "old", func(w io.Writer) error {
			// More than the buffer, so part of it reaches the temp file.
			if _, err := w.Write([]byte(strings.Repeat("x", 1<<17))); err != nil {
				return err
			}
			return errBoom
		}},
		{"no old file", "", func(w io.Writer) error {
			io.WriteString(w, "partial")
			return errBoom
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "f.bin")
			if tc.old != "" {
				if err := os.WriteFile(path, []byte(tc.old), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			err := WriteFunc(path, 0o644, tc.write)
			if !errors.Is(err, errBoom) || !strings.Contains(err.Error(), path) {
				t.Fatalf("err %v, want boom naming %s", err, path)
			}
			got, rerr := os.ReadFile(path)
			switch {
			case tc.old == "" && !errors.Is(rerr, os.ErrNotExist):
				t.Errorf("path exists after a failed first write: %q, %v", got, rerr)
			case tc.old != "" && string(got) != tc.old:
				t.Errorf("old file changed to %q, %v", got, rerr)
			}
			want := 0
			if tc.old != "" {
				want = 1
			}
			if names := entries(t, dir); len(names) != want {
				t.Errorf("directory holds %v: temporary file left behind", names)
			}
		})
	}
}

func TestWriteMissingDir(t *testing.T) {
	path := filepath.Join(t.TempDir(), "no", "such", "f")
	if err := Write(path, []byte("x"), 0o644); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("err %v, want one naming %s", err, path)
	}
}

func TestWriteRelativePath(t *testing.T) {
	t.Chdir(t.TempDir())
	if err := Write("rel.txt", []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile("rel.txt"); err != nil || string(got) != "x" {
		t.Fatalf("%q, %v", got, err)
	}
}
