package data

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// loadOrSkip loads a real dataset or skips the test when (and only when)
// the files are genuinely absent.
func loadOrSkip(t *testing.T, what string, load func() (*Dataset, error)) *Dataset {
	t.Helper()
	d, err := load()
	if err != nil {
		if IsNotFound(err) {
			t.Skipf("%s files absent: %v", what, err)
		}
		t.Fatal(err)
	}
	return d
}

func TestRealIDXDatasets(t *testing.T) {
	tests := []struct {
		name             string
		load             func() (*Dataset, error)
		n                int
		label0           int
		wantDigestStable bool
		classes0         string
	}{
		{"mnist/train", func() (*Dataset, error) { return LoadMNIST("", Train) }, 60000, 5, true, "0"},
		{"mnist/test", func() (*Dataset, error) { return LoadMNIST("", Test) }, 10000, 7, true, "0"},
		{"fashion-mnist/train", func() (*Dataset, error) { return LoadFashionMNIST("", Train) }, 60000, 9, true, "T-shirt/top"},
		{"fashion-mnist/test", func() (*Dataset, error) { return LoadFashionMNIST("", Test) }, 10000, 9, true, "T-shirt/top"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := loadOrSkip(t, tc.name, tc.load)
			if d.Name != tc.name || d.Len() != tc.n || d.C != 1 || d.H != 28 || d.W != 28 || d.NumClasses != 10 {
				t.Fatalf("got %s n=%d %dx%dx%d classes=%d", d.Name, d.Len(), d.C, d.H, d.W, d.NumClasses)
			}
			if got := int(d.Labels[0]); got != tc.label0 {
				t.Errorf("label[0] = %d, want %d", got, tc.label0)
			}
			if d.Classes[0] != tc.classes0 {
				t.Errorf("class 0 = %q, want %q", d.Classes[0], tc.classes0)
			}
			var counts [10]int
			for _, l := range d.Labels {
				counts[l]++
			}
			for c, k := range counts {
				if k < tc.n/20 {
					t.Errorf("class %d has only %d samples", c, k)
				}
			}
			if len(d.Digest) != 64 || len(d.Files) != 2 {
				t.Errorf("digest %q, files %v", d.Digest, d.Files)
			}
			t.Logf("%s: %d images from %s, digest %s", d.Name, d.Len(), filepath.Dir(d.Files[0].Path), d.Digest)
		})
	}
}

// copyFile copies src to dst, optionally transforming the bytes.
func copyFile(t *testing.T, src, dst string, edit func([]byte) []byte) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		b = edit(append([]byte(nil), b...))
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if _, err := out.ReadFrom(zr); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// TestMNISTResolution checks the lookup order (explicit dir, $SSLRUN_DATA,
// module cache), raw versus gzipped files giving the same digest, and the
// errors for missing, truncated and corrupt files.
func TestMNISTResolution(t *testing.T) {
	modDir, err := GoMNISTDataDir()
	if err != nil {
		t.Skipf("GoMNIST module data absent: %v", err)
	}
	ref, err := LoadMNIST(modDir, Test)
	if err != nil {
		t.Fatal(err)
	}
	imgGz := filepath.Join(modDir, "t10k-images-idx3-ubyte.gz")
	lblGz := filepath.Join(modDir, "t10k-labels-idx1-ubyte.gz")

	// $SSLRUN_DATA/mnist with raw (decompressed) files takes precedence over
	// the module cache and yields the same digest.
	root := t.TempDir()
	mn := filepath.Join(root, "mnist")
	if err := os.Mkdir(mn, 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile(t, imgGz, filepath.Join(mn, "t10k-images-idx3-ubyte"), func(b []byte) []byte { return gunzip(t, b) })
	copyFile(t, lblGz, filepath.Join(mn, "t10k-labels-idx1-ubyte"), func(b []byte) []byte { return gunzip(t, b) })
	t.Setenv(DataEnv, root)
	d, err := LoadMNIST("", Test)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(d.Files[0].Path, mn) {
		t.Errorf("loaded from %s, want $%s/mnist", d.Files[0].Path, DataEnv)
	}
	if d.Digest != ref.Digest {
		t.Errorf("raw digest %s != gz digest %s", d.Digest, ref.Digest)
	}
	// An empty $SSLRUN_DATA falls through to the module cache.
	t.Setenv(DataEnv, t.TempDir())
	if d, err := LoadMNIST("", Test); err != nil || d.Digest != ref.Digest {
		t.Errorf("fallback to module cache: %v", err)
	}

	type broken struct {
		name   string
		img    func([]byte) []byte // edit of the gzipped image file; nil: copy
		lbl    func([]byte) []byte
		noLbl  bool
		expect []string // substrings of the error
	}
	cases := []broken{
		{name: "missing labels", noLbl: true, expect: []string{"t10k-labels-idx1-ubyte", "expected an existing file", "found none"}},
		{name: "truncated gzip", img: func(b []byte) []byte { return b[:len(b)/2] }, expect: []string{"t10k-images-idx3-ubyte.gz", "gzip stream", "expected complete, valid gzip data", "found an error after"}},
		{name: "not gzip, truncated raw", img: func(b []byte) []byte { return gunzip(t, b)[:5000] }, expect: []string{"t10k-images-idx3-ubyte.gz", "decompressed size", "expected 7840016 bytes", "found 5000 bytes"}},
		{name: "corrupt byte", img: func(b []byte) []byte { r := gunzip(t, b); r[1000] ^= 0xff; return r }, expect: []string{"sha256", "expected 0fa7898d", "found "}},
		{name: "labels are images", lbl: func([]byte) []byte { b, _ := os.ReadFile(imgGz); return b }, expect: []string{"t10k-labels-idx1-ubyte.gz", "decompressed size", "expected 10008 bytes", "found 7840016 bytes"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			copyFile(t, imgGz, filepath.Join(dir, "t10k-images-idx3-ubyte.gz"), tc.img)
			if !tc.noLbl {
				copyFile(t, lblGz, filepath.Join(dir, "t10k-labels-idx1-ubyte.gz"), tc.lbl)
			}
			_, err := LoadMNIST(dir, Test)
			if err == nil {
				t.Fatal("no error")
			}
			for _, s := range tc.expect {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q lacks %q", err, s)
				}
			}
		})
	}
}

// idx builds an IDX file.
func idx(magic uint32, dims []uint32, payload []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, magic)
	for _, d := range dims {
		b = binary.BigEndian.AppendUint32(b, d)
	}
	return append(b, payload...)
}

func TestLoadIDXFormatErrors(t *testing.T) {
	img := idx(0x803, []uint32{3, 2, 2}, []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11})
	lbl := idx(0x801, []uint32{3}, []byte{0, 1, 2})
	tests := []struct {
		name     string
		img, lbl []byte
		classes  int
		expect   []string // empty: success
	}{
		{"ok", img, lbl, 3, nil},
		{"wrong image magic", idx(0x801, []uint32{3, 2, 2}, img[16:]), lbl, 3, []string{"images", "IDX magic", "expected 0x00000803", "found 0x00000801"}},
		{"wrong label magic", img, idx(0x803, []uint32{3}, lbl[8:]), 3, []string{"labels", "IDX magic", "expected 0x00000801", "found 0x00000803"}},
		{"truncated images", img[:20], lbl, 3, []string{"images", "size", "expected 28 bytes", "found 20 bytes"}},
		{"short header", img[:10], lbl, 3, []string{"images", "IDX header", "expected at least 16 bytes", "found 10 bytes"}},
		{"count mismatch", img, idx(0x801, []uint32{2}, []byte{0, 1}), 3, []string{"labels", "label count", "expected 3", "found 2"}},
		{"label out of range", img, lbl, 2, []string{"labels", "label of sample 2", "expected < 2", "found 2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			ip, lp := filepath.Join(dir, "images"), filepath.Join(dir, "labels")
			os.WriteFile(ip, tc.img, 0o644)
			os.WriteFile(lp, tc.lbl, 0o644)
			d, err := LoadIDX("toy", ip, lp, tc.classes)
			if tc.expect == nil {
				if err != nil {
					t.Fatal(err)
				}
				if d.Len() != 3 || d.H != 2 || d.W != 2 || d.Bytes(2)[3] != 11 || d.Labels[1] != 1 {
					t.Fatalf("bad parse: %+v", d)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, s := range tc.expect {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q lacks %q", err, s)
				}
			}
		})
	}
}
