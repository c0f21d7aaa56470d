package data

import (
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeImage(t *testing.T, path string, w, h int, fill func(x, y int) color.RGBA) {
	t.Helper()
	im := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			im.SetRGBA(x, y, fill(x, y))
		}
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if strings.HasSuffix(path, ".png") {
		err = png.Encode(f, im)
	} else {
		err = jpeg.Encode(f, im, &jpeg.Options{Quality: 95})
	}
	if err != nil {
		t.Fatal(err)
	}
}

func TestFolderLabelled(t *testing.T) {
	dir := t.TempDir()
	for _, cl := range []string{"zebra", "ant", "cat"} {
		os.MkdirAll(filepath.Join(dir, cl, "sub"), 0o755)
	}
	solid := func(c color.RGBA) func(x, y int) color.RGBA { return func(int, int) color.RGBA { return c } }
	writeImage(t, filepath.Join(dir, "ant", "a.png"), 8, 8, func(x, y int) color.RGBA { return color.RGBA{uint8(x * 30), uint8(y * 30), 7, 255} })
	writeImage(t, filepath.Join(dir, "ant", "sub", "b.jpg"), 20, 13, solid(color.RGBA{200, 100, 50, 255}))
	writeImage(t, filepath.Join(dir, "cat", "c.JPEG"), 3, 5, solid(color.RGBA{10, 250, 90, 255}))
	writeImage(t, filepath.Join(dir, "zebra", "d.png"), 64, 48, solid(color.RGBA{0, 0, 255, 255}))
	os.WriteFile(filepath.Join(dir, "zebra", "notes.txt"), []byte("ignored"), 0o644)
	writeImage(t, filepath.Join(dir, "top.png"), 8, 8, solid(color.RGBA{}))

	d, err := LoadFolder(dir, 3, 8, 8)
	if err != nil {
		t.Fatal(err)
	}
	if d.Len() != 4 || d.NumClasses != 3 || strings.Join(d.Classes, ",") != "ant,cat,zebra" {
		t.Fatalf("n=%d classes=%v", d.Len(), d.Classes)
	}
	wantLabels := []int32{0, 0, 1, 2}
	for i, l := range wantLabels {
		if d.Labels[i] != l {
			t.Errorf("labels %v, want %v", d.Labels, wantLabels)
			break
		}
	}
	// The same-size PNG is exact; planes are CHW.
	a := d.Bytes(0)
	if a[3*8+5] != 5*30 || a[64+3*8+5] != 3*30 || a[128+3*8+5] != 7 {
		t.Errorf("ant/a.png pixel (y=3,x=5) = %d,%d,%d", a[3*8+5], a[64+3*8+5], a[128+3*8+5])
	}
	// Resized solid images stay (nearly, for JPEG) solid.
	checks := []struct {
		i       int
		r, g, b int
		tol     int
	}{{1, 200, 100, 50, 4}, {2, 10, 250, 90, 6}, {3, 0, 0, 255, 0}}
	for _, c := range checks {
		p := d.Bytes(c.i)
		for k, want := range []int{c.r, c.g, c.b} {
			for _, v := range p[k*64 : (k+1)*64] {
				if dv := int(v) - want; dv > c.tol || dv < -c.tol {
					t.Fatalf("sample %d channel %d = %d, want %d±%d", c.i, k, v, want, c.tol)
				}
			}
		}
	}
	if d.Files[1].Role != "ant/sub/b.jpg" {
		t.Errorf("role %q", d.Files[1].Role)
	}
	g, err := LoadFolder(dir, 1, 4, 4)
	if err != nil {
		t.Fatal(err)
	}
	// Go's luma of pure blue: 7471*65535 + 1<<15 >> 24 = 29.
	if g.C != 1 || g.Bytes(3)[0] != 29 {
		t.Errorf("gray blue = %d", g.Bytes(3)[0])
	}
	if g.Digest == d.Digest {
		t.Error("digest ignores the decoded shape")
	}
}

func TestFolderFlatAndErrors(t *testing.T) {
	dir := t.TempDir()
	writeImage(t, filepath.Join(dir, "b.png"), 5, 5, func(x, y int) color.RGBA { return color.RGBA{1, 2, 3, 255} })
	writeImage(t, filepath.Join(dir, "a.jpg"), 9, 4, func(x, y int) color.RGBA { return color.RGBA{128, 128, 128, 255} })
	d, err := LoadFolder(dir, 3, 6, 6)
	if err != nil {
		t.Fatal(err)
	}
	if d.Len() != 2 || d.NumClasses != 0 || d.Labels[0] != -1 || d.Files[0].Role != "a.jpg" {
		t.Fatalf("flat: n=%d classes=%d labels=%v files=%v", d.Len(), d.NumClasses, d.Labels, d.Files)
	}

	os.WriteFile(filepath.Join(dir, "c.png"), []byte("GIF89a not a png"), 0o644)
	_, err = LoadFolder(dir, 3, 6, 6)
	for _, s := range []string{"c.png", "expected a decodable PNG or JPEG image", "found 16 bytes starting \"GIF89a n\""} {
		if err == nil || !strings.Contains(err.Error(), s) {
			t.Errorf("error %v lacks %q", err, s)
		}
	}
	_, err = LoadFolder(t.TempDir(), 3, 6, 6)
	if err == nil || !strings.Contains(err.Error(), "found no image files") {
		t.Errorf("empty folder: %v", err)
	}
	if _, err := LoadFolder(dir, 2, 6, 6); err == nil {
		t.Error("2 channels accepted")
	}
}
