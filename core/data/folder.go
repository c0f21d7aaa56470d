package data

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	_ "image/jpeg" // register the JPEG decoder
	_ "image/png"  // register the PNG decoder
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	xdraw "golang.org/x/image/draw"

	"github.com/sslrun/sslrun/core/parallel"
)

// LoadFolder loads PNG/JPEG images from dir into a c x h x w dataset
// (c is 1 for grayscale or 3 for RGB).
//
// If dir has subdirectories, it is labelled like torchvision's ImageFolder:
// each subdirectory (sorted by name) is a class and the images anywhere
// below it are its samples; files directly in dir are ignored. Otherwise
// the images directly in dir form an unlabelled dataset (label -1), in name
// order. Symlinked directories and images are followed, as ImageFolder does;
// a symlink cycle is an error. Images whose header claims more than 32768
// pixels a side or 2^28 pixels are rejected before decoding. Images of
// another size are resized on load with golang.org/x/image/draw's BiLinear
// scaler, which widens its kernel when shrinking (antialiased, like PIL's
// resize). Alpha is composited over black;
// grayscale uses Go's ITU-R 601-2 luma (0.299, 0.587, 0.114).
func LoadFolder(dir string, c, h, w int) (*Dataset, error) {
	if c != 1 && c != 3 {
		return nil, fmt.Errorf("data: folder %s: channels must be 1 or 3, got %d", dir, c)
	}
	if h <= 0 || w <= 0 {
		return nil, fmt.Errorf("data: folder %s: size %dx%d must be positive", dir, h, w)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("data: folder %s: %w", dir, err)
	}
	// Symlinks are followed, as torchvision's ImageFolder does: DirEntry
	// describes the link itself, so a linked class directory would
	// otherwise pass for a file.
	isDir := make([]bool, len(entries))
	var classes []string
	for i, e := range entries {
		if isDir[i], err = entryIsDir(dir, e); err != nil {
			return nil, folderErr(dir, err)
		}
		if isDir[i] && !strings.HasPrefix(e.Name(), ".") {
			classes = append(classes, e.Name())
		}
	}
	sort.Strings(classes)
	var paths []string
	var labels []int32
	if len(classes) > 0 {
		for ci, cl := range classes {
			err := walkImages(filepath.Join(dir, cl), map[string]bool{}, func(p string) {
				paths = append(paths, p)
				labels = append(labels, int32(ci))
			})
			if err != nil {
				return nil, folderErr(dir, err)
			}
		}
	} else {
		for i, e := range entries {
			if !isDir[i] && isImageName(e.Name()) {
				paths = append(paths, filepath.Join(dir, e.Name()))
				labels = append(labels, -1)
			}
		}
	}
	if len(paths) == 0 {
		return nil, &FileError{Path: dir, What: "contents", Expected: "PNG or JPEG files (.png, .jpg, .jpeg), flat or in class subdirectories", Found: "no image files"}
	}
	n := c * h * w
	d := &Dataset{C: c, H: h, W: w, Pix: make([]uint8, len(paths)*n), Labels: labels, Files: make([]FileInfo, len(paths))}
	if len(classes) > 0 {
		d.Classes, d.NumClasses = classes, len(classes)
	}
	errs := make([]error, len(paths))
	// Decoding dominates; spread it over the shared worker pool.
	parallel.For(len(paths), 8, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			d.Files[i], errs[i] = decodeInto(paths[i], d.Pix[i*n:(i+1)*n], c, h, w)
			if rel, err := filepath.Rel(dir, paths[i]); err == nil {
				d.Files[i].Role = filepath.ToSlash(rel)
			}
		}
	})
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	d.Name = fmt.Sprintf("folder:%s", filepath.Base(filepath.Clean(dir)))
	d.computeDigest()
	return d, nil
}

// folderErr returns a FileError as it is (it names the file) and wraps
// other errors with the folder.
func folderErr(dir string, err error) error {
	if fe := (*FileError)(nil); errors.As(err, &fe) {
		return err
	}
	return fmt.Errorf("data: folder %s: %w", dir, err)
}

// entryIsDir reports whether the entry e of dir is a directory, following
// a symlink. A dangling symlink is not a directory; it is an error only
// when its name is an image's, which the caller would otherwise load.
func entryIsDir(dir string, e fs.DirEntry) (bool, error) {
	if e.Type()&fs.ModeSymlink == 0 {
		return e.IsDir(), nil
	}
	p := filepath.Join(dir, e.Name())
	st, err := os.Stat(p)
	if err != nil {
		if isImageName(p) {
			return false, &FileError{Path: p, What: "symlink", Expected: "a link to an existing image", Found: "a dangling link", Err: err}
		}
		return false, nil
	}
	return st.IsDir(), nil
}

// walkImages calls visit for every image file below dir in lexical order
// (the order of filepath.WalkDir), following symlinks to directories and
// files like os.walk(followlinks=True). Paths stay below dir as written, so
// a sample's role names the class it was found under. onPath holds the
// resolved directories being walked, to reject symlink cycles, which
// would otherwise recurse until the path is too long; a directory reached
// twice without a cycle is walked twice, as torchvision does.
func walkImages(dir string, onPath map[string]bool, visit func(path string)) error {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return err
	}
	if onPath[real] {
		return &FileError{Path: dir, What: "directory tree", Expected: "no symlink cycles", Found: fmt.Sprintf("a link back to %s", real)}
	}
	onPath[real] = true
	defer delete(onPath, real)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		isDir, err := entryIsDir(dir, e)
		if err != nil {
			return err
		}
		if isDir {
			if err := walkImages(p, onPath, visit); err != nil {
				return err
			}
		} else if isImageName(p) {
			visit(p)
		}
	}
	return nil
}

// Bounds on an image's header dimensions, checked before decoding: a few
// bytes of PNG can claim gigapixels. 2^28 pixels is 1 GiB as RGBA.
const (
	maxImageSide   = 1 << 15
	maxImagePixels = 1 << 28
)

func isImageName(p string) bool {
	switch strings.ToLower(filepath.Ext(p)) {
	case ".png", ".jpg", ".jpeg":
		return true
	}
	return false
}

// decodeInto decodes one file, resizes it to h x w and stores it CHW.
func decodeInto(path string, dst []uint8, c, h, w int) (FileInfo, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return FileInfo{}, fmt.Errorf("data: read %s: %w", path, err)
	}
	info := FileInfo{Path: path, Size: int64(len(b)), SHA256: sha256Hex(b)}
	badData := func(err error) error {
		found := fmt.Sprintf("%d bytes starting %q", len(b), b[:min(len(b), 8)])
		return &FileError{Path: path, What: "image data", Expected: "a decodable PNG or JPEG image", Found: found, Err: err}
	}
	// Check the header's dimensions before decoding allocates for them.
	cfg, _, err := image.DecodeConfig(bytes.NewReader(b))
	if err != nil {
		return info, badData(err)
	}
	if px := int64(cfg.Width) * int64(cfg.Height); cfg.Width > maxImageSide || cfg.Height > maxImageSide || px > maxImagePixels {
		return info, &FileError{Path: path, What: "image dimensions", Expected: fmt.Sprintf("at most %d pixels per side and %d pixels", maxImageSide, maxImagePixels),
			Found: fmt.Sprintf("%dx%d (%d pixels)", cfg.Width, cfg.Height, px)}
	}
	src, _, err := image.Decode(bytes.NewReader(b))
	if err != nil {
		return info, badData(err)
	}
	rgba := image.NewRGBA(image.Rect(0, 0, w, h))
	// Start from opaque black so transparent pixels composite over black.
	draw.Draw(rgba, rgba.Bounds(), image.NewUniform(color.Black), image.Point{}, draw.Src)
	sb := src.Bounds()
	if sb.Dx() == w && sb.Dy() == h {
		draw.Draw(rgba, rgba.Bounds(), src, sb.Min, draw.Over)
	} else {
		xdraw.BiLinear.Scale(rgba, rgba.Bounds(), src, sb, xdraw.Over, nil)
	}
	plane := h * w
	for y := 0; y < h; y++ {
		row := rgba.Pix[y*rgba.Stride : y*rgba.Stride+4*w]
		for x := 0; x < w; x++ {
			r, g, bb := row[4*x], row[4*x+1], row[4*x+2]
			o := y*w + x
			if c == 3 {
				dst[o], dst[plane+o], dst[2*plane+o] = r, g, bb
			} else {
				dst[o] = color.GrayModel.Convert(color.RGBA{r, g, bb, 255}).(color.Gray).Y
			}
		}
	}
	return info, nil
}
