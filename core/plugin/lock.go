package plugin

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/sslrun/sslrun/internal/atomicfile"
)

// Lock is the checksum lock file beside a pipeline: the sha256 of every
// external plugin executable the pipeline uses, verified before exec.
type Lock struct {
	Plugins map[string]LockEntry `json:"plugins"`
}

// LockEntry pins one external plugin.
type LockEntry struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
}

// LockPath is the lock file that belongs to a pipeline file:
// dir/name.hcl -> dir/name.lock.json.
func LockPath(pipeline string) string {
	return strings.TrimSuffix(pipeline, filepath.Ext(pipeline)) + ".lock.json"
}

// ReadLock reads a lock file; a missing file is an empty lock.
func ReadLock(path string) (*Lock, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &Lock{Plugins: map[string]LockEntry{}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read lock file %s: %w", path, err)
	}
	var l Lock
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("parse lock file %s: %w", path, err)
	}
	if l.Plugins == nil {
		l.Plugins = map[string]LockEntry{}
	}
	return &l, nil
}

// Write writes the lock file with sorted keys, so that it diffs cleanly. It
// replaces path atomically (see internal/atomicfile) with mode 0644.
func (l *Lock) Write(path string) error {
	names := make([]string, 0, len(l.Plugins))
	for n := range l.Plugins {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	buf.WriteString("{\n  \"plugins\": {")
	for i, n := range names {
		if i > 0 {
			buf.WriteByte(',')
		}
		k, _ := json.Marshal(n)
		v, _ := json.Marshal(l.Plugins[n])
		fmt.Fprintf(&buf, "\n    %s: %s", k, v)
	}
	buf.WriteString("\n  }\n}\n")
	// Atomic: a crash mid-write must not leave a truncated lock file, which
	// would make every pinned plugin fail its checksum.
	if err := atomicfile.Write(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write lock file %s: %w", path, err)
	}
	return nil
}

// Pin records the current sha256 of the executable at path under name.
func (l *Lock) Pin(name, path string) error {
	sum, err := HashFile(path)
	if err != nil {
		return err
	}
	l.Plugins[name] = LockEntry{Path: path, SHA256: hex.EncodeToString(sum)}
	return nil
}

// Checksum returns the pinned sha256 of the plugin called name.
func (l *Lock) Checksum(name string) ([]byte, error) {
	e, ok := l.Plugins[name]
	if !ok {
		return nil, fmt.Errorf("plugin %q is not in the lock file", name)
	}
	sum, err := hex.DecodeString(e.SHA256)
	if err != nil || len(sum) != sha256.Size {
		return nil, fmt.Errorf("plugin %q: bad sha256 %q in lock file", name, e.SHA256)
	}
	return sum, nil
}

// HashFile returns the sha256 of a file.
func HashFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("hash %s: %w", path, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, fmt.Errorf("hash %s: %w", path, err)
	}
	return h.Sum(nil), nil
}

// ErrChecksum is matched (errors.Is) by every checksum mismatch.
var ErrChecksum = errors.New("plugin checksum mismatch")

// ChecksumError reports an external plugin executable whose sha256 is not
// the one pinned in the lock file.
type ChecksumError struct {
	Plugin   string
	Path     string
	Expected []byte
	Actual   []byte
}

// Error names the executable and both checksums.
func (e *ChecksumError) Error() string {
	return fmt.Sprintf("plugin %q: executable %s has sha256 %x, the lock file expects %x (rebuilt or replaced? re-pin it if that was intended)",
		e.Plugin, e.Path, e.Actual, e.Expected)
}

// Unwrap makes errors.Is(err, ErrChecksum) hold.
func (e *ChecksumError) Unwrap() error { return ErrChecksum }

// VerifyChecksum checks that the file at path has sha256 want.
func VerifyChecksum(name, path string, want []byte) error {
	got, err := HashFile(path)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, want) {
		return &ChecksumError{Plugin: name, Path: path, Expected: want, Actual: got}
	}
	return nil
}
