package safetensors

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/sslrun/sslrun/core/tensor"
)

// TestWriteFileModeAndAtomicity: checkpoints must be 0644 like other
// outputs (they were 0600 from os.CreateTemp), replace an existing file and
// leave no temporary file behind, also when the rename fails.
func TestWriteFileModeAndAtomicity(t *testing.T) {
	a, _ := tensor.FromSlice([]float32{1, 2}, 2)
	tests := []struct {
		name    string
		setup   func(t *testing.T, path string)
		wantErr bool
	}{
		{"new file", func(*testing.T, string) {}, false},
		{"replaces an existing 0600 file", func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"path is a directory", func(t *testing.T, path string) {
			if err := os.MkdirAll(filepath.Join(path, "sub"), 0o755); err != nil {
				t.Fatal(err)
			}
		}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "w.safetensors")
			tc.setup(t, path)
			err := WriteFile(path, map[string]*tensor.T{"a": a}, nil)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v, want error %v", err, tc.wantErr)
			}
			if es, _ := os.ReadDir(dir); len(es) != 1 {
				var names []string
				for _, e := range es {
					names = append(names, e.Name())
				}
				t.Errorf("directory holds %v, want only w.safetensors", names)
			}
			if tc.wantErr {
				return
			}
			st, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if runtime.GOOS != "windows" && st.Mode().Perm() != 0o644 {
				t.Errorf("mode %v, want -rw-r--r--", st.Mode().Perm())
			}
			f, err := ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := f.Tensor("a"); err != nil || got.Data[1] != 2 {
				t.Errorf("read back %v, %v", got, err)
			}
		})
	}
}
