package plugin_test

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/sslrun/sslrun/core/plugin"
)

// TestLockWriteReplacesAtomically: Lock.Write must replace the lock file by
// renaming a complete new file over it, not rewrite it in place (a crash
// or a full disk mid-write would leave a truncated lock, and a concurrent
// reader could see half of it). A hard link to the old file tells the two
// apart: an in-place write changes what the link sees, a rename does not.
func TestLockWriteReplacesAtomically(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("hard links and modes differ on Windows")
	}
	tests := []struct {
		name string
		old  map[string]plugin.LockEntry // nil: no lock file yet
	}{
		{"first write", nil},
		{"replace", map[string]plugin.LockEntry{"old": {Path: "/bin/old", SHA256: strings.Repeat("0", 64)}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "p.lock.json")
			link := filepath.Join(t.TempDir(), "old.lock.json")
			var oldBytes []byte
			if tc.old != nil {
				if err := (&plugin.Lock{Plugins: tc.old}).Write(path); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(path, 0o600); err != nil {
					t.Fatal(err)
				}
				var err error
				if oldBytes, err = os.ReadFile(path); err != nil {
					t.Fatal(err)
				}
				if err := os.Link(path, link); err != nil {
					t.Skipf("hard links unsupported here: %v", err)
				}
			}
			l := &plugin.Lock{Plugins: map[string]plugin.LockEntry{"new": {Path: "/bin/new", SHA256: strings.Repeat("1", 64)}}}
			if err := l.Write(path); err != nil {
				t.Fatal(err)
			}
			got, err := plugin.ReadLock(path)
			if err != nil || got.Plugins["new"].Path != "/bin/new" || len(got.Plugins) != 1 {
				t.Fatalf("read back %+v, %v", got, err)
			}
			if tc.old != nil {
				if b, err := os.ReadFile(link); err != nil || string(b) != string(oldBytes) {
					t.Errorf("the old lock file was rewritten in place: a hard link to it now reads %q, %v", b, err)
				}
			}
			st, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != 0o644 {
				t.Errorf("mode %v, want -rw-r--r--", st.Mode().Perm())
			}
			if es, _ := os.ReadDir(dir); len(es) != 1 {
				t.Errorf("directory holds %d entries, want only the lock file", len(es))
			}
		})
	}
}
