package augment

import (
	"fmt"
	"math"
)

// This file holds the deterministic functional ops. Each matches the
// corresponding torchvision.transforms.functional op on float32 CHW tensors
// (tensor backend of torchvision 0.14); see tools/golden/gen_augment.py for
// the fixtures that pin this down.

// lerpIndex holds the two source taps and weights for one output coordinate
// of a bilinear resize.
type lerpIndex struct {
	i0, i1 int
	l0, l1 float32
}

// bilinearIndices computes the taps exactly as PyTorch's CPU
// upsample_bilinear2d with align_corners=False and no explicit scale factor:
// scale = in/out in float32, src = max(scale*(dst+0.5)-0.5, 0), the second
// tap clamped to the last input pixel.
func bilinearIndices(dst []lerpIndex, in, out int) {
	scale := float32(in) / float32(out)
	for o := range dst[:out] {
		src := scale*(float32(o)+0.5) - 0.5
		if src < 0 {
			src = 0
		}
		i0 := int(src)
		off := 0
		if i0 < in-1 {
			off = 1
		}
		l1 := src - float32(i0)
		dst[o] = lerpIndex{i0: i0, i1: i0 + off, l0: 1 - l1, l1: l1}
	}
}

// Scratch holds reusable buffers for the ops that need temporary storage, so
// that steady-state augmentation does not allocate. The zero value is ready
// to use; a Scratch must not be shared between goroutines.
type Scratch struct {
	xs, ys []lerpIndex
	tmp    []float32
	kx, ky []float32
	img    Image
}

func growLerp(s []lerpIndex, n int) []lerpIndex {
	if cap(s) < n {
		return make([]lerpIndex, n)
	}
	return s[:n]
}

func growF32(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n)
	}
	return s[:n]
}

// ResizedCrop writes into dst (reshaped to src.C x outH x outW) the region
// rows [top, top+h) and columns [left, left+w) of src resized with bilinear
// interpolation. It equals torchvision's F.resized_crop(img, top, left, h, w,
// [outH, outW], BILINEAR, antialias=False) on tensors, which is also the
// tensor default (antialias=None means False) in torchvision 0.14, for both
// up- and downscaling. dst must not alias src. The region must lie inside
// src; a region outside is a programmer error and panics (RandomResizedCrop
// never produces one).
func ResizedCrop(dst, src *Image, top, left, h, w, outH, outW int, s *Scratch) {
	if top < 0 || left < 0 || h <= 0 || w <= 0 || top+h > src.H || left+w > src.W || outH <= 0 || outW <= 0 {
		panic(fmt.Sprintf("augment: ResizedCrop region (%d,%d,%d,%d)->%dx%d outside %v", top, left, h, w, outH, outW, src))
	}
	if s == nil {
		s = new(Scratch)
	}
	dst.Reshape(src.C, outH, outW)
	s.xs = growLerp(s.xs, outW)
	s.ys = growLerp(s.ys, outH)
	bilinearIndices(s.xs, w, outW)
	bilinearIndices(s.ys, h, outH)
	xs, ys := s.xs, s.ys
	for c := 0; c < src.C; c++ {
		plane := src.Pix[c*src.H*src.W : (c+1)*src.H*src.W]
		out := dst.Pix[c*outH*outW : (c+1)*outH*outW]
		for oy, y := range ys {
			r0 := plane[(top+y.i0)*src.W+left : (top+y.i0)*src.W+left+w]
			r1 := plane[(top+y.i1)*src.W+left : (top+y.i1)*src.W+left+w]
			row := out[oy*outW : (oy+1)*outW]
			for ox, x := range xs {
				// Same association as PyTorch's Interpolate<2>: the width
				// interpolation inside, the height weights outside.
				t0 := float32(r0[x.i0]*x.l0) + float32(r0[x.i1]*x.l1)
				t1 := float32(r1[x.i0]*x.l0) + float32(r1[x.i1]*x.l1)
				row[ox] = float32(t0*y.l0) + float32(t1*y.l1)
			}
		}
	}
}

// ResizeBilinear is ResizedCrop over the whole image.
func ResizeBilinear(dst, src *Image, outH, outW int, s *Scratch) {
	ResizedCrop(dst, src, 0, 0, src.H, src.W, outH, outW, s)
}

// HFlip mirrors im left to right in place (F.hflip).
func HFlip(im *Image) {
	for r := 0; r < im.C*im.H; r++ {
		row := im.Pix[r*im.W : (r+1)*im.W]
		for i, j := 0, len(row)-1; i < j; i, j = i+1, j-1 {
			row[i], row[j] = row[j], row[i]
		}
	}
}

// clamp01 clamps to [0,1]. The min/max builtins compile to branch-free
// code; clamping random pixels with branches mispredicts heavily.
func clamp01(v float32) float32 { return max(0, min(1, v)) }

// AdjustBrightness multiplies by factor and clamps to [0,1]
// (F.adjust_brightness: blend with black).
func AdjustBrightness(im *Image, factor float32) {
	// _blend computes ratio*img + (1-ratio)*0.
	for i, v := range im.Pix {
		im.Pix[i] = clamp01(factor*v + 0)
	}
}

// Grayscale luma weights of torchvision's tensor rgb_to_grayscale
// (ITU-R 601-2 with the red weight written as 0.2989).
const (
	lumaR = 0.2989
	lumaG = 0.587
	lumaB = 0.114
)

// AdjustContrast blends im with the mean of its grayscale version
// (F.adjust_contrast). For one channel the mean of the image is used.
func AdjustContrast(im *Image, factor float32) {
	n := im.H * im.W
	var sum float64
	if im.C == 3 {
		r, g, b := im.Pix[:n], im.Pix[n:2*n], im.Pix[2*n:3*n]
		for i := range r {
			sum += float64(float32(lumaR*r[i]) + float32(lumaG*g[i]) + float32(lumaB*b[i]))
		}
		sum /= float64(n)
	} else {
		for _, v := range im.Pix {
			sum += float64(v)
		}
		sum /= float64(len(im.Pix))
	}
	mean := float32(sum)
	off := (1 - factor) * mean
	for i, v := range im.Pix {
		im.Pix[i] = clamp01(factor*v + off)
	}
}

// AdjustSaturation blends im with its grayscale version
// (F.adjust_saturation). One-channel images are returned unchanged, as in
// torchvision.
func AdjustSaturation(im *Image, factor float32) {
	if im.C != 3 {
		return
	}
	n := im.H * im.W
	r, g, b := im.Pix[:n], im.Pix[n:2*n], im.Pix[2*n:3*n]
	inv := 1 - factor
	for i := range r {
		l := float32(lumaR*r[i]) + float32(lumaG*g[i]) + float32(lumaB*b[i])
		gl := inv * l
		r[i] = clamp01(factor*r[i] + gl)
		g[i] = clamp01(factor*g[i] + gl)
		b[i] = clamp01(factor*b[i] + gl)
	}
}

// Grayscale replaces every channel by the luma (F.rgb_to_grayscale with
// num_output_channels equal to the input channels, as RandomGrayscale
// does). One-channel images are unchanged.
func Grayscale(im *Image) {
	if im.C != 3 {
		return
	}
	n := im.H * im.W
	r, g, b := im.Pix[:n], im.Pix[n:2*n], im.Pix[2*n:3*n]
	for i := range r {
		l := float32(lumaR*r[i]) + float32(lumaG*g[i]) + float32(lumaB*b[i])
		r[i], g[i], b[i] = l, l, l
	}
}

// AdjustHue shifts the hue by factor in [-0.5, 0.5] through HSV, following
// torchvision's tensor _rgb2hsv / _hsv2rgb formulas in float32. One-channel
// images are unchanged. A factor outside [-0.5, 0.5] is a programmer error
// and panics.
func AdjustHue(im *Image, factor float32) {
	if !(factor >= -0.5 && factor <= 0.5) {
		panic(fmt.Sprintf("augment: hue factor %v not in [-0.5, 0.5]", factor))
	}
	if im.C != 3 {
		return
	}
	n := im.H * im.W
	rs, gs, bs := im.Pix[:n], im.Pix[n:2*n], im.Pix[2*n:3*n]
	for i := range rs {
		r, g, b := rs[i], gs[i], bs[i]
		maxc := max(r, g, b)
		minc := min(r, g, b)
		cr := maxc - minc
		var s, h float32
		if maxc != minc {
			s = cr / maxc
			rc := (maxc - r) / cr
			gc := (maxc - g) / cr
			bc := (maxc - b) / cr
			switch {
			case maxc == r:
				h = bc - gc
			case maxc == g:
				h = 2 + rc - bc
			default:
				h = 4 + gc - rc
			}
		} else {
			// torchvision divides by 1 instead of 0 here; every term
			// cancels to h = 0 (r == max) and s = 0.
			h = 0
		}
		// torch.fmod(h/6 + 1, 1): the argument lies in [5/6, 11/6], where
		// subtracting 1 is exact, so this equals fmod bit for bit.
		h = h/6 + 1
		if h >= 1 {
			h -= 1
		}
		// (h + hue_factor) % 1.0 is a floored modulo in torch: fmod, then
		// + 1 for negative results (which can round to exactly 1; hsv2rgb
		// maps 1 and 0 to the same sector, as torch does via i % 6).
		h += factor
		if h < 0 {
			h += 1
		} else if h >= 1 {
			h -= 1
		}
		v := maxc
		h6 := h * 6
		fi := float32(int32(h6)) // h6 >= 0, so truncation is floor
		f := h6 - fi
		p := clamp01(v * (1 - s))
		q := clamp01(v * (1 - s*f))
		t := clamp01(v * (1 - s*(1-f)))
		// Sector i picks (r,g,b) among (v,p,q,t) as torch's a1..a3 stacks
		// do; table lookups avoid an unpredictable six-way branch.
		sel := hueSectors[int32(fi)%6]
		vals := [4]float32{v, p, q, t}
		r, g, b = vals[sel[0]&3], vals[sel[1]&3], vals[sel[2]&3]
		rs[i], gs[i], bs[i] = r, g, b
	}
}

// hueSectors lists, per HSV sector, which of (v, p, q, t) becomes r, g, b
// (torchvision's _hsv2rgb: a1 = (v,q,p,p,t,v), a2 = (t,v,v,q,p,p),
// a3 = (p,p,t,v,v,q)).
var hueSectors = [6][3]uint8{
	{0, 3, 1}, // v, t, p
	{2, 0, 1}, // q, v, p
	{1, 0, 3}, // p, v, t
	{1, 2, 0}, // p, q, v
	{3, 1, 0}, // t, p, v
	{0, 1, 2}, // v, p, q
}

// Solarize inverts every value >= threshold (F.solarize on float tensors).
func Solarize(im *Image, threshold float32) {
	for i, v := range im.Pix {
		if v >= threshold {
			im.Pix[i] = 1 - v
		}
	}
}

// NormalizeChannels applies (x - mean[c]) / std[c] per channel (F.normalize).
// mean and std must have im.C entries (programmer error otherwise).
func NormalizeChannels(im *Image, mean, std []float32) {
	if len(mean) != im.C || len(std) != im.C {
		panic(fmt.Sprintf("augment: NormalizeChannels with %d means and %d stds for %d channels", len(mean), len(std), im.C))
	}
	n := im.H * im.W
	for c := 0; c < im.C; c++ {
		m, sd := mean[c], std[c]
		p := im.Pix[c*n : (c+1)*n]
		for i, v := range p {
			p[i] = (v - m) / sd
		}
	}
}

// gaussianKernel1D fills k (odd length) like torchvision's
// _get_gaussian_kernel1d: x = linspace(-(k-1)/2, (k-1)/2),
// pdf = exp(-0.5 (x/sigma)^2), normalised to sum 1, in float32.
func gaussianKernel1D(k []float32, sigma float32) {
	half := float32(len(k)-1) * 0.5
	var sum float32
	for i := range k {
		x := (-half + float32(i)) / sigma
		k[i] = float32(math.Exp(float64(-0.5 * x * x)))
		sum += k[i]
	}
	for i := range k {
		k[i] /= sum
	}
}

// reflect maps an out-of-range index into [0,n) by mirror reflection without
// repeating the edge (PyTorch's "reflect" padding). PyTorch rejects padding
// >= n; here the reflection is iterated, which agrees whenever PyTorch
// accepts the input.
func reflect(i, n int) int {
	if uint(i) < uint(n) {
		return i
	}
	if n == 1 {
		return 0
	}
	period := 2 * (n - 1)
	i %= period
	if i < 0 {
		i += period
	}
	if i >= n {
		i = period - i
	}
	return i
}

// Blur blurs im in place with an odd kx x ky Gaussian kernel with
// standard deviations sigmaX, sigmaY and reflect padding, like
// F.gaussian_blur(img, [kx, ky], [sigmaX, sigmaY]). The 2D kernel of
// torchvision is the outer product of the two 1D kernels, so the
// convolution is done separably (same result up to float32 rounding).
// Even or non-positive kernel sizes are programmer errors and panic.
func Blur(im *Image, kx, ky int, sigmaX, sigmaY float32, s *Scratch) {
	if kx <= 0 || ky <= 0 || kx%2 == 0 || ky%2 == 0 {
		panic(fmt.Sprintf("augment: Blur kernel %dx%d must be odd and positive", kx, ky))
	}
	if s == nil {
		s = new(Scratch)
	}
	s.kx = growF32(s.kx, kx)
	s.ky = growF32(s.ky, ky)
	gaussianKernel1D(s.kx, sigmaX)
	gaussianKernel1D(s.ky, sigmaY)
	H, W := im.H, im.W
	hx, hy := kx/2, ky/2
	s.tmp = growF32(s.tmp, H*W+W+2*hx)
	tmp, pad := s.tmp[:H*W], s.tmp[H*W:]
	kxs, kys := s.kx, s.ky
	for c := 0; c < im.C; c++ {
		p := im.Pix[c*H*W : (c+1)*H*W]
		// Horizontal pass into tmp through a reflect-padded copy of the row.
		for y := 0; y < H; y++ {
			row := p[y*W : (y+1)*W]
			for i := range pad {
				pad[i] = row[reflect(i-hx, W)]
			}
			out := tmp[y*W : (y+1)*W]
			for x := range out {
				seg := pad[x : x+kx]
				var acc float32
				for t, kv := range kxs {
					acc += kv * seg[t]
				}
				out[x] = acc
			}
		}
		// Vertical pass back into p, row by row.
		for y := 0; y < H; y++ {
			out := p[y*W : (y+1)*W]
			src := tmp[reflect(y-hy, H)*W:]
			src = src[:len(out)]
			k0 := kys[0]
			for x, v := range src {
				out[x] = k0 * v
			}
			for t := 1; t < ky; t++ {
				kv := kys[t]
				src := tmp[reflect(y-hy+t, H)*W:]
				src = src[:len(out)]
				for x, v := range src {
					out[x] += kv * v
				}
			}
		}
	}
}
