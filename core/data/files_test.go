package data

import (
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeGzip writes n zero bytes, gzipped, to a file in a temporary
// directory: a tiny file that inflates a lot (a small gzip bomb).
func writeGzip(t *testing.T, n int) string {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write(make([]byte, n)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "bomb.gz")
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestReadContentDecompressionLimit: gzip content is kept up to the
// expected size (sizeHint) or, without one, up to maxDecompressed; more is
// a FileError naming the file (with the true size when it is at most
// maxDecompressed), not an unbounded allocation.
func TestReadContentDecompressionLimit(t *testing.T) {
	defer func(old int64) { maxDecompressed = old }(maxDecompressed)
	maxDecompressed = 1 << 20
	tests := []struct {
		name     string
		content  int   // decompressed bytes in the file
		sizeHint int64 // 0: unknown
		truncate bool  // drop the gzip trailer: invalid after all data
		wantErr  string
	}{
		{"exactly the hint", 4096, 4096, false, ""},
		{"less than the hint", 100, 4096, false, ""}, // the caller reports the size
		{"over the hint, then corrupt", 300000, 4096, true, "decompressed size: expected 4096 bytes, found more than 4096 bytes, then invalid gzip data"},
		{"one byte over the hint", 4097, 4096, false, "decompressed size: expected 4096 bytes, found 4097 bytes"},
		{"over the hint, under the cap", 300000, 4096, false, "decompressed size: expected 4096 bytes, found 300000 bytes"},
		{"bomb over the hint and the cap", 8 << 20, 1000, false, "decompressed size: expected 1000 bytes, found content that decompressed to more than 1048576 bytes"},
		{"no hint, under the cap", 1 << 20, 0, false, ""},
		{"no hint, over the cap", 2 << 20, 0, false, "expected at most 1048576 bytes (the limit for content of unknown size), found content that decompressed to more than 1048576 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := writeGzip(t, tc.content)
			if tc.truncate {
				b, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, b[:len(b)-8], 0o644); err != nil {
					t.Fatal(err)
				}
			}
			b, err := readContent(path, tc.sizeHint)
			if tc.wantErr == "" {
				if err != nil || len(b) != tc.content {
					t.Fatalf("got %d bytes, %v; want %d", len(b), err, tc.content)
				}
				return
			}
			var fe *FileError
			if !errors.As(err, &fe) || fe.Path != path || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err %v, want a FileError for %s containing %q", err, path, tc.wantErr)
			}
		})
	}
}
