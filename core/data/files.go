package data

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
)

// FileError reports a dataset file that is missing, truncated, corrupt or in
// the wrong format: which file, what was checked, what was expected and what
// was found.
type FileError struct {
	Path     string
	What     string // the property checked, e.g. "size", "sha256", "magic"
	Expected string
	Found    string
	Err      error // underlying error, if any
}

// Error formats "data: path: what: expected X, found Y[: cause]".
func (e *FileError) Error() string {
	s := fmt.Sprintf("data: %s: %s: expected %s, found %s", e.Path, e.What, e.Expected, e.Found)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the underlying error, if any.
func (e *FileError) Unwrap() error { return e.Err }

// readContent reads path, transparently decompressing gzip (recognised by
// its magic bytes, not the name). sizeHint, when positive, is the expected
// decompressed size and sizes the buffer up front.
func readContent(path string, sizeHint int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, &FileError{Path: path, What: "file", Expected: "an existing file", Found: "none", Err: err}
		}
		return nil, fmt.Errorf("data: open %s: %w", path, err)
	}
	defer f.Close()
	var head [2]byte
	n, _ := io.ReadFull(f, head[:])
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("data: seek %s: %w", path, err)
	}
	var r io.Reader = f
	gz := n == 2 && head[0] == 0x1f && head[1] == 0x8b
	if gz {
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil, &FileError{Path: path, What: "gzip stream", Expected: "a valid gzip header", Found: "a corrupt one", Err: err}
		}
		defer zr.Close()
		r = zr
	}
	var buf bytes.Buffer
	if sizeHint > 0 {
		buf.Grow(int(sizeHint) + bytes.MinRead)
	} else if st, err := f.Stat(); err == nil && !gz {
		buf.Grow(int(st.Size()) + bytes.MinRead)
	}
	if _, err := buf.ReadFrom(r); err != nil {
		if gz {
			return nil, &FileError{Path: path, What: "gzip stream", Expected: "complete, valid gzip data", Found: fmt.Sprintf("an error after %d decompressed bytes", buf.Len()), Err: err}
		}
		return nil, fmt.Errorf("data: read %s: %w", path, err)
	}
	return buf.Bytes(), nil
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// existing returns the first of the candidate paths that exists.
func existing(cands ...string) (string, bool) {
	for _, c := range cands {
		if st, err := os.Stat(c); err == nil && !st.IsDir() {
			return c, true
		}
	}
	return "", false
}
