package data

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestFolderSymlinks: class directories, subdirectories and images that
// are symlinks are followed, as torchvision's ImageFolder (os.walk with
// followlinks=True) does; samples keep their paths below dir.
func TestFolderSymlinks(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("symlinks need privileges on Windows")
	}
	solid := func(v uint8) func(x, y int) color.RGBA {
		return func(int, int) color.RGBA { return color.RGBA{v, v, v, 255} }
	}
	symlink := func(t *testing.T, target, link string) {
		t.Helper()
		if err := os.Symlink(target, link); err != nil {
			t.Skipf("symlinks unsupported: %v", err)
		}
	}
	tests := []struct {
		name      string
		build     func(t *testing.T, dir, elsewhere string)
		wantRoles []string
		wantLabel []int32
		wantErr   string
	}{
		{"symlinked class dir", func(t *testing.T, dir, elsewhere string) {
			os.MkdirAll(filepath.Join(dir, "ant"), 0o755)
			writeImage(t, filepath.Join(dir, "ant", "a.png"), 4, 4, solid(10))
			os.MkdirAll(filepath.Join(elsewhere, "bees"), 0o755)
			writeImage(t, filepath.Join(elsewhere, "bees", "b.png"), 4, 4, solid(20))
			symlink(t, filepath.Join(elsewhere, "bees"), filepath.Join(dir, "bee"))
		}, []string{"ant/a.png", "bee/b.png"}, []int32{0, 1}, ""},
		{"only symlinked class dirs", func(t *testing.T, dir, elsewhere string) {
			os.MkdirAll(filepath.Join(elsewhere, "x"), 0o755)
			writeImage(t, filepath.Join(elsewhere, "x", "b.png"), 4, 4, solid(20))
			symlink(t, filepath.Join(elsewhere, "x"), filepath.Join(dir, "cls"))
		}, []string{"cls/b.png"}, []int32{0}, ""},
		{"symlinked subdirectory", func(t *testing.T, dir, elsewhere string) {
			os.MkdirAll(filepath.Join(dir, "ant"), 0o755)
			os.MkdirAll(filepath.Join(elsewhere, "more"), 0o755)
			writeImage(t, filepath.Join(elsewhere, "more", "c.png"), 4, 4, solid(30))
			symlink(t, filepath.Join(elsewhere, "more"), filepath.Join(dir, "ant", "more"))
		}, []string{"ant/more/c.png"}, []int32{0}, ""},
		{"symlinked image in a class", func(t *testing.T, dir, elsewhere string) {
			os.MkdirAll(filepath.Join(dir, "ant"), 0o755)
			writeImage(t, filepath.Join(elsewhere, "real.png"), 4, 4, solid(40))
			symlink(t, filepath.Join(elsewhere, "real.png"), filepath.Join(dir, "ant", "link.png"))
		}, []string{"ant/link.png"}, []int32{0}, ""},
		{"symlinked image, flat", func(t *testing.T, dir, elsewhere string) {
			writeImage(t, filepath.Join(elsewhere, "real.png"), 4, 4, solid(40))
			symlink(t, filepath.Join(elsewhere, "real.png"), filepath.Join(dir, "link.png"))
		}, []string{"link.png"}, []int32{-1}, ""},
		{"symlink cycle", func(t *testing.T, dir, elsewhere string) {
			os.MkdirAll(filepath.Join(dir, "ant"), 0o755)
			writeImage(t, filepath.Join(dir, "ant", "a.png"), 4, 4, solid(10))
			symlink(t, filepath.Join(dir, "ant"), filepath.Join(dir, "ant", "loop"))
		}, nil, nil, "no symlink cycles"},
		{"broken image symlink", func(t *testing.T, dir, elsewhere string) {
			os.MkdirAll(filepath.Join(dir, "ant"), 0o755)
			writeImage(t, filepath.Join(dir, "ant", "a.png"), 4, 4, solid(10))
			symlink(t, filepath.Join(elsewhere, "gone.png"), filepath.Join(dir, "ant", "b.png"))
		}, nil, nil, "b.png"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir, elsewhere := t.TempDir(), t.TempDir()
			tc.build(t, dir, elsewhere)
			d, err := LoadFolder(dir, 1, 4, 4)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var roles []string
			for _, f := range d.Files {
				roles = append(roles, f.Role)
			}
			if strings.Join(roles, " ") != strings.Join(tc.wantRoles, " ") {
				t.Errorf("files %v, want %v", roles, tc.wantRoles)
			}
			if len(d.Labels) != len(tc.wantLabel) {
				t.Fatalf("labels %v, want %v", d.Labels, tc.wantLabel)
			}
			for i := range tc.wantLabel {
				if d.Labels[i] != tc.wantLabel[i] {
					t.Errorf("labels %v, want %v", d.Labels, tc.wantLabel)
					break
				}
			}
		})
	}
}

// pngHeaderOnly returns a PNG signature and IHDR chunk claiming w x h
// 8-bit grayscale pixels, with no image data: what a hostile file needs to
// make a decoder allocate w*h bytes.
func pngHeaderOnly(w, h uint32) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8] = 8 // bit depth; colour type 0 (gray), no interlace
	chunk := append([]byte("IHDR"), ihdr...)
	binary.Write(&b, binary.BigEndian, uint32(len(ihdr)))
	b.Write(chunk)
	binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(chunk))
	return b.Bytes()
}

// TestFolderImageSizeLimit: image dimensions are checked from the header
// (image.DecodeConfig) before the pixels are decoded, so a small file
// claiming a huge image is a FileError naming it, not a huge allocation.
func TestFolderImageSizeLimit(t *testing.T) {
	// A real, decodable image one pixel wider than the per-side limit.
	var wide bytes.Buffer
	if err := png.Encode(&wide, image.NewGray(image.Rect(0, 0, maxImageSide+1, 1))); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		data    []byte
		wantErr string // "" for success
	}{
		{"at the side limit", func() []byte {
			var b bytes.Buffer
			png.Encode(&b, image.NewGray(image.Rect(0, 0, maxImageSide, 1)))
			return b.Bytes()
		}(), ""},
		{"one past the side limit", wide.Bytes(), "expected at most 32768 pixels per side and 268435456 pixels, found 32769x1"},
		{"too many pixels", pngHeaderOnly(20000, 20000), "found 20000x20000 (400000000 pixels)"},
		{"absurd header", pngHeaderOnly(1<<30, 1), "found 1073741824x1 "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "x.png")
			if err := os.WriteFile(path, tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := LoadFolder(dir, 1, 4, 4)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var fe *FileError
			if !errors.As(err, &fe) || fe.Path != path || fe.What != "image dimensions" || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err %v, want a FileError on the image dimensions of %s containing %q", err, path, tc.wantErr)
			}
		})
	}
}
