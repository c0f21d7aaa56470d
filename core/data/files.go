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

// maxDecompressed bounds gzip content whose size is not known in advance,
// so a corrupt or hostile file cannot exhaust memory. A variable so tests
// can lower it.
var maxDecompressed int64 = 4 << 30

// readContent reads path, transparently decompressing gzip (recognised by
// its magic bytes, not the name). sizeHint, when positive, is the expected
// decompressed size: it sizes the buffer up front and bounds gzip content,
// which is otherwise bounded by maxDecompressed. Gzip content over the
// bound is a FileError. Uncompressed files are bounded by their size on
// disk and read whole, so callers still report a size mismatch themselves.
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
	var limit int64 // of the decompressed size, for gzip
	gz := n == 2 && head[0] == 0x1f && head[1] == 0x8b
	if gz {
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil, &FileError{Path: path, What: "gzip stream", Expected: "a valid gzip header", Found: "a corrupt one", Err: err}
		}
		defer zr.Close()
		// Read one byte past the limit to tell "exactly the limit" from
		// "more": a few hundred bytes of gzip can inflate to gigabytes.
		limit = maxDecompressed
		if sizeHint > 0 {
			limit = sizeHint
		}
		r = io.LimitReader(zr, limit+1)
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
	if gz && int64(buf.Len()) > limit {
		return nil, overLimit(path, r, limit, sizeHint > 0)
	}
	return buf.Bytes(), nil
}

// overLimit describes gzip content over its limit. r has the rest of the
// limited stream; the true size is counted without keeping the data, up to
// maxDecompressed, because "expected 10008 bytes, found 7840016" tells a
// user which file they swapped.
func overLimit(path string, r io.Reader, limit int64, known bool) error {
	if lr, ok := r.(*io.LimitedReader); ok {
		lr.N = max(limit, maxDecompressed) - limit // limit+1 bytes were read
	}
	rest, err := io.Copy(io.Discard, r)
	total := limit + 1 + rest
	found := fmt.Sprintf("%d bytes", total)
	switch {
	case err != nil:
		found = fmt.Sprintf("more than %d bytes, then invalid gzip data", limit)
	case total > max(limit, maxDecompressed):
		found = fmt.Sprintf("content that decompressed to more than %d bytes", max(limit, maxDecompressed))
	}
	expected := fmt.Sprintf("%d bytes", limit)
	if !known {
		expected = fmt.Sprintf("at most %d bytes (the limit for content of unknown size)", limit)
	}
	return &FileError{Path: path, What: "decompressed size", Expected: expected, Found: found, Err: err}
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
