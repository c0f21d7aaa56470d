// Package data loads the datasets sslrun trains on (MNIST, Fashion-MNIST,
// CIFAR-10/100 binary, PNG/JPEG folders) into memory and feeds augmented
// multi-view batches to training through a deterministic, prefetching
// Loader. The augmentations themselves live in package
// github.com/sslrun/sslrun/core/data/augment.
//
// See docs/data.md for where the files go, the lookup order and the
// checksums.
package data

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"

	"github.com/sslrun/sslrun/core/data/augment"
)

// Source is what the Loader draws samples from. Implementations must be
// safe for concurrent Load calls (the Loader's workers call it in parallel).
type Source interface {
	// Len is the number of samples.
	Len() int
	// Shape is the (channels, height, width) of every sample.
	Shape() (c, h, w int)
	// Load writes sample i into dst as float32 CHW in [0,1] and returns its
	// label (-1 when unlabelled).
	Load(i int, dst *augment.Image) (label int)
}

// Split selects the training or test part of a dataset.
type Split int

// The dataset splits.
const (
	Train Split = iota
	Test
)

// String returns "train" or "test", as used in dataset names.
func (s Split) String() string {
	if s == Test {
		return "test"
	}
	return "train"
}

// FileInfo records one file a dataset was read from, for provenance.
type FileInfo struct {
	Path   string // path as opened
	Role   string // location-independent name: base name, or path relative to an image folder
	Size   int64  // size of the (decompressed) content in bytes
	SHA256 string // hex sha256 of the (decompressed) content
}

// Dataset is an in-memory image dataset stored as bytes (CHW per image,
// images back to back), converted to float32 in [0,1] on Load exactly as
// torchvision's ToTensor does (v/255).
type Dataset struct {
	Name       string   // e.g. "mnist/train"
	C, H, W    int      // shape of every image
	Pix        []uint8  // N*C*H*W bytes
	Labels     []int32  // N labels; -1 for unlabelled samples
	NumClasses int      // number of classes (0 when unlabelled)
	Classes    []string // class names when known
	Files      []FileInfo
	// Digest identifies the content: sha256 over the name, shape and the
	// role, sha256 and size of every file read (not where it was found). The run database stores it so a
	// run can be traced to the exact data.
	Digest string
}

// Len implements Source.
func (d *Dataset) Len() int { return len(d.Labels) }

// Shape implements Source.
func (d *Dataset) Shape() (int, int, int) { return d.C, d.H, d.W }

// Load implements Source.
func (d *Dataset) Load(i int, dst *augment.Image) int {
	n := d.C * d.H * d.W
	dst.FromUint8(d.C, d.H, d.W, d.Pix[i*n:(i+1)*n])
	return int(d.Labels[i])
}

// Bytes returns the raw bytes of image i (CHW).
func (d *Dataset) Bytes(i int) []uint8 {
	n := d.C * d.H * d.W
	return d.Pix[i*n : (i+1)*n]
}

// computeDigest fills d.Digest from the name, shape and file hashes. Roles
// rather than paths enter the digest so it does not depend on the directory
// the data was found in, nor on gzip versus raw.
func (d *Dataset) computeDigest() {
	lines := make([]string, len(d.Files))
	for i, f := range d.Files {
		lines[i] = fmt.Sprintf("%s %s %d", f.Role, f.SHA256, f.Size)
	}
	sort.Strings(lines)
	h := sha256.New()
	fmt.Fprintf(h, "sslrun-dataset v1\n%s\n%dx%dx%d n=%d\n%s\n", d.Name, d.C, d.H, d.W, d.Len(), strings.Join(lines, "\n"))
	d.Digest = hex.EncodeToString(h.Sum(nil))
}
