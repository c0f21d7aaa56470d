// Package augment implements the torchvision-style image augmentations used by
// self-supervised views: RandomResizedCrop, horizontal flip, ColorJitter,
// random grayscale, Gaussian blur, solarize and normalize.
//
// Images are float32 CHW in [0,1] (the layout of torchvision's tensor
// backend after ToTensor). Every deterministic op matches
// torchvision.transforms.functional (0.14, tensor backend) on float tensors;
// the random steps sample their parameters with the same distributions and
// the same logic as the corresponding torchvision get_params, from an explicit
// RNG so that results do not depend on goroutine scheduling.
package augment

import "fmt"

// Image is a float32 image in CHW layout with values nominally in [0,1].
// Pix holds C*H*W values; its capacity may be larger so buffers can be
// reused for images of varying size without allocating.
type Image struct {
	C, H, W int
	Pix     []float32
}

// NewImage returns a zeroed image of the given shape.
func NewImage(c, h, w int) *Image {
	return &Image{C: c, H: h, W: w, Pix: make([]float32, c*h*w)}
}

// Reshape sets the shape of im, growing Pix only when its capacity is too
// small. The contents are unspecified afterwards.
func (im *Image) Reshape(c, h, w int) {
	n := c * h * w
	if cap(im.Pix) < n {
		im.Pix = make([]float32, n)
	}
	im.C, im.H, im.W = c, h, w
	im.Pix = im.Pix[:n]
}

// CopyFrom makes im a copy of src, reusing im's buffer when possible.
func (im *Image) CopyFrom(src *Image) {
	im.Reshape(src.C, src.H, src.W)
	copy(im.Pix, src.Pix)
}

// Len returns C*H*W.
func (im *Image) Len() int { return im.C * im.H * im.W }

// String describes the shape, for error messages.
func (im *Image) String() string { return fmt.Sprintf("image[%dx%dx%d]", im.C, im.H, im.W) }

// u8ToF32 is the exact float32 value of ToTensor's v/255 for every byte, so
// that conversions are table lookups and match torchvision bit for bit.
var u8ToF32 = func() (t [256]float32) {
	for i := range t {
		t[i] = float32(i) / 255
	}
	return t
}()

// FromUint8 fills im (shape c,h,w) from CHW bytes, scaling by 1/255 exactly as
// torchvision's ToTensor does.
func (im *Image) FromUint8(c, h, w int, src []uint8) {
	im.Reshape(c, h, w)
	p := im.Pix
	_ = p[len(src)-1]
	for i, v := range src {
		p[i] = u8ToF32[v]
	}
}
