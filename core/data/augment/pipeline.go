package augment

import (
	"fmt"
	"math"
	"strings"
)

// Step is one random transform of a view pipeline. Apply transforms im in
// place, drawing its random parameters from r; out-of-place work (a crop that
// changes the size) goes through s, which the step may swap with im. Steps
// must be safe for concurrent use by several goroutines, each with its own
// image, RNG and Scratch: they hold configuration only.
type Step interface {
	// Apply transforms im using r for randomness and s for temporary space.
	Apply(im *Image, r *RNG, s *Scratch)
	// OutShape returns the shape produced from an input of shape (c,h,w).
	OutShape(c, h, w int) (int, int, int)
	// Validate reports a configuration error, if any.
	Validate() error
	// String describes the step like its torchvision repr, for logs.
	String() string
}

// Pipeline is the list of steps that produces one view. BYOL's two views
// use two different pipelines (asymmetric blur and solarize).
type Pipeline []Step

// Validate checks every step's configuration.
func (p Pipeline) Validate() error {
	for i, s := range p {
		if err := s.Validate(); err != nil {
			return fmt.Errorf("step %d (%s): %w", i, s, err)
		}
	}
	return nil
}

// OutShape returns the output shape for an input of shape (c,h,w).
func (p Pipeline) OutShape(c, h, w int) (int, int, int) {
	for _, s := range p {
		c, h, w = s.OutShape(c, h, w)
	}
	return c, h, w
}

// Apply runs all steps on im in order.
func (p Pipeline) Apply(im *Image, r *RNG, s *Scratch) {
	for _, st := range p {
		st.Apply(im, r, s)
	}
}

// String lists the steps like torchvision's Compose repr.
func (p Pipeline) String() string {
	parts := make([]string, len(p))
	for i, s := range p {
		parts[i] = s.String()
	}
	return "Compose(" + strings.Join(parts, ", ") + ")"
}

// RandomResizedCrop crops a random region of random area fraction in Scale
// and aspect ratio (w/h) in Ratio, then resizes it bilinearly to H x W.
// Parameters are drawn exactly as torchvision's
// RandomResizedCrop.get_params: up to 10 tries of (area uniform in Scale,
// log-aspect uniform in log Ratio, Python round), else a center crop clamped
// to the ratio range.
type RandomResizedCrop struct {
	H, W  int
	Scale [2]float64 // torchvision default (0.08, 1.0)
	Ratio [2]float64 // torchvision default (3/4, 4/3)
}

// NewRandomResizedCrop returns a square crop of the given size with
// torchvision's default ratio range (3/4, 4/3).
func NewRandomResizedCrop(size int, scaleLo, scaleHi float64) *RandomResizedCrop {
	return &RandomResizedCrop{H: size, W: size, Scale: [2]float64{scaleLo, scaleHi}, Ratio: [2]float64{3.0 / 4, 4.0 / 3}}
}

// Params returns (top, left, h, w) for an image of the given size.
func (t *RandomResizedCrop) Params(height, width int, r *RNG) (top, left, h, w int) {
	area := float64(height * width)
	logLo, logHi := math.Log(t.Ratio[0]), math.Log(t.Ratio[1])
	for range 10 {
		target := area * r.Uniform(t.Scale[0], t.Scale[1])
		aspect := math.Exp(r.Uniform(logLo, logHi))
		w = roundHalfEven(math.Sqrt(target * aspect))
		h = roundHalfEven(math.Sqrt(target / aspect))
		if 0 < w && w <= width && 0 < h && h <= height {
			top = r.Intn(height - h + 1)
			left = r.Intn(width - w + 1)
			return top, left, h, w
		}
	}
	inRatio := float64(width) / float64(height)
	lo, hi := min(t.Ratio[0], t.Ratio[1]), max(t.Ratio[0], t.Ratio[1])
	switch {
	case inRatio < lo:
		w = width
		h = roundHalfEven(float64(w) / lo)
	case inRatio > hi:
		h = height
		w = roundHalfEven(float64(h) * hi)
	default:
		w, h = width, height
	}
	return (height - h) / 2, (width - w) / 2, h, w
}

// Apply implements Step.
func (t *RandomResizedCrop) Apply(im *Image, r *RNG, s *Scratch) {
	top, left, h, w := t.Params(im.H, im.W, r)
	ResizedCrop(&s.img, im, top, left, h, w, t.H, t.W, s)
	*im, s.img = s.img, *im
}

// OutShape implements Step.
func (t *RandomResizedCrop) OutShape(c, _, _ int) (int, int, int) { return c, t.H, t.W }

// Validate implements Step.
func (t *RandomResizedCrop) Validate() error {
	if t.H <= 0 || t.W <= 0 {
		return fmt.Errorf("size %dx%d must be positive", t.H, t.W)
	}
	if !(t.Scale[0] > 0 && t.Scale[0] <= t.Scale[1] && t.Scale[1] <= 1) {
		return fmt.Errorf("scale %v must satisfy 0 < lo <= hi <= 1", t.Scale)
	}
	if !(t.Ratio[0] > 0 && t.Ratio[0] <= t.Ratio[1]) {
		return fmt.Errorf("ratio %v must satisfy 0 < lo <= hi", t.Ratio)
	}
	return nil
}

// String implements Step.
func (t *RandomResizedCrop) String() string {
	return fmt.Sprintf("RandomResizedCrop(size=(%d, %d), scale=(%g, %g), ratio=(%.4g, %.4g), interpolation=bilinear, antialias=False)",
		t.H, t.W, t.Scale[0], t.Scale[1], t.Ratio[0], t.Ratio[1])
}

// Resize resizes bilinearly to H x W (antialias=False, like the tensor
// default of torchvision 0.14).
type Resize struct{ H, W int }

// Apply implements Step.
func (t *Resize) Apply(im *Image, _ *RNG, s *Scratch) {
	if im.H == t.H && im.W == t.W {
		return
	}
	ResizeBilinear(&s.img, im, t.H, t.W, s)
	*im, s.img = s.img, *im
}

// OutShape implements Step.
func (t *Resize) OutShape(c, _, _ int) (int, int, int) { return c, t.H, t.W }

// Validate implements Step.
func (t *Resize) Validate() error {
	if t.H <= 0 || t.W <= 0 {
		return fmt.Errorf("size %dx%d must be positive", t.H, t.W)
	}
	return nil
}

// String implements Step.
func (t *Resize) String() string { return fmt.Sprintf("Resize(size=(%d, %d))", t.H, t.W) }

func checkP(p float64) error {
	if !(p >= 0 && p <= 1) {
		return fmt.Errorf("probability %v not in [0,1]", p)
	}
	return nil
}

// RandomHorizontalFlip mirrors the image with probability P.
type RandomHorizontalFlip struct{ P float64 }

// Apply implements Step.
func (t *RandomHorizontalFlip) Apply(im *Image, r *RNG, _ *Scratch) {
	if r.Bernoulli(t.P) {
		HFlip(im)
	}
}

// OutShape implements Step.
func (t *RandomHorizontalFlip) OutShape(c, h, w int) (int, int, int) { return c, h, w }

// Validate implements Step.
func (t *RandomHorizontalFlip) Validate() error { return checkP(t.P) }

// String implements Step.
func (t *RandomHorizontalFlip) String() string { return fmt.Sprintf("RandomHorizontalFlip(p=%g)", t.P) }

// ColorJitter randomly changes brightness, contrast, saturation and hue in a
// random order, as torchvision's ColorJitter: brightness, contrast and
// saturation factors are uniform in [max(0, 1-x), 1+x], the hue shift is
// uniform in [-Hue, Hue]; a zero strength disables that op. P is the
// probability of applying the whole jitter (torchvision's
// RandomApply([ColorJitter(...)], p=P)); use 1 for an unconditional jitter.
type ColorJitter struct {
	Brightness, Contrast, Saturation, Hue float64
	P                                     float64
}

// Factors draws the parameters like ColorJitter.get_params: a random
// permutation of the four ops (0 brightness, 1 contrast, 2 saturation,
// 3 hue), then the factors of the enabled ops in that fixed order.
func (t *ColorJitter) Factors(r *RNG) (order [4]int, b, c, s, h float32) {
	order = [4]int{0, 1, 2, 3}
	for i := 3; i > 0; i-- {
		j := r.Intn(i + 1)
		order[i], order[j] = order[j], order[i]
	}
	b, c, s = 1, 1, 1
	if t.Brightness > 0 {
		b = float32(r.Uniform(max(0, 1-t.Brightness), 1+t.Brightness))
	}
	if t.Contrast > 0 {
		c = float32(r.Uniform(max(0, 1-t.Contrast), 1+t.Contrast))
	}
	if t.Saturation > 0 {
		s = float32(r.Uniform(max(0, 1-t.Saturation), 1+t.Saturation))
	}
	if t.Hue > 0 {
		h = float32(r.Uniform(-t.Hue, t.Hue))
	}
	return
}

// Apply implements Step.
func (t *ColorJitter) Apply(im *Image, r *RNG, _ *Scratch) {
	if !r.Bernoulli(t.P) {
		return
	}
	order, b, c, s, h := t.Factors(r)
	ApplyJitter(im, order, b, c, s, h, t.Brightness > 0, t.Contrast > 0, t.Saturation > 0, t.Hue > 0)
}

// ApplyJitter runs the enabled jitter ops in the given order with fixed
// factors (the deterministic part of ColorJitter.forward).
func ApplyJitter(im *Image, order [4]int, b, c, s, h float32, useB, useC, useS, useH bool) {
	for _, op := range order {
		switch {
		case op == 0 && useB:
			AdjustBrightness(im, b)
		case op == 1 && useC:
			AdjustContrast(im, c)
		case op == 2 && useS:
			AdjustSaturation(im, s)
		case op == 3 && useH:
			AdjustHue(im, h)
		}
	}
}

// OutShape implements Step.
func (t *ColorJitter) OutShape(c, h, w int) (int, int, int) { return c, h, w }

// Validate implements Step.
func (t *ColorJitter) Validate() error {
	if t.Brightness < 0 || t.Contrast < 0 || t.Saturation < 0 {
		return fmt.Errorf("brightness, contrast, saturation (%g, %g, %g) must be non-negative", t.Brightness, t.Contrast, t.Saturation)
	}
	if t.Hue < 0 || t.Hue > 0.5 {
		return fmt.Errorf("hue %g must be in [0, 0.5]", t.Hue)
	}
	return checkP(t.P)
}

// String implements Step.
func (t *ColorJitter) String() string {
	return fmt.Sprintf("RandomApply(ColorJitter(brightness=%g, contrast=%g, saturation=%g, hue=%g), p=%g)",
		t.Brightness, t.Contrast, t.Saturation, t.Hue, t.P)
}

// RandomGrayscale converts to grayscale (keeping the channel count) with
// probability P, using torchvision's tensor luma 0.2989 R + 0.587 G + 0.114 B.
type RandomGrayscale struct{ P float64 }

// Apply implements Step.
func (t *RandomGrayscale) Apply(im *Image, r *RNG, _ *Scratch) {
	if r.Bernoulli(t.P) {
		Grayscale(im)
	}
}

// OutShape implements Step.
func (t *RandomGrayscale) OutShape(c, h, w int) (int, int, int) { return c, h, w }

// Validate implements Step.
func (t *RandomGrayscale) Validate() error { return checkP(t.P) }

// String implements Step.
func (t *RandomGrayscale) String() string { return fmt.Sprintf("RandomGrayscale(p=%g)", t.P) }

// GaussianBlur blurs with probability P using an odd square Kernel and sigma
// uniform in [SigmaMin, SigmaMax] (torchvision GaussianBlur inside
// RandomApply). torchvision's default sigma range is (0.1, 2.0).
type GaussianBlur struct {
	Kernel             int
	SigmaMin, SigmaMax float64
	P                  float64
}

// Apply implements Step.
func (t *GaussianBlur) Apply(im *Image, r *RNG, s *Scratch) {
	if !r.Bernoulli(t.P) {
		return
	}
	sigma := float32(r.Uniform(t.SigmaMin, t.SigmaMax))
	Blur(im, t.Kernel, t.Kernel, sigma, sigma, s)
}

// OutShape implements Step.
func (t *GaussianBlur) OutShape(c, h, w int) (int, int, int) { return c, h, w }

// Validate implements Step.
func (t *GaussianBlur) Validate() error {
	if t.Kernel <= 0 || t.Kernel%2 == 0 {
		return fmt.Errorf("kernel size %d must be odd and positive", t.Kernel)
	}
	if !(t.SigmaMin > 0 && t.SigmaMin <= t.SigmaMax) {
		return fmt.Errorf("sigma range (%g, %g) must satisfy 0 < min <= max", t.SigmaMin, t.SigmaMax)
	}
	return checkP(t.P)
}

// String implements Step.
func (t *GaussianBlur) String() string {
	return fmt.Sprintf("RandomApply(GaussianBlur(kernel_size=%d, sigma=(%g, %g)), p=%g)", t.Kernel, t.SigmaMin, t.SigmaMax, t.P)
}

// RandomSolarize inverts values >= Threshold with probability P
// (torchvision RandomSolarize; BYOL uses threshold 0.5 on [0,1] floats).
type RandomSolarize struct {
	Threshold float32
	P         float64
}

// Apply implements Step.
func (t *RandomSolarize) Apply(im *Image, r *RNG, _ *Scratch) {
	if r.Bernoulli(t.P) {
		Solarize(im, t.Threshold)
	}
}

// OutShape implements Step.
func (t *RandomSolarize) OutShape(c, h, w int) (int, int, int) { return c, h, w }

// Validate implements Step.
func (t *RandomSolarize) Validate() error {
	if t.Threshold < 0 || t.Threshold > 1 {
		return fmt.Errorf("threshold %g not in [0,1]", t.Threshold)
	}
	return checkP(t.P)
}

// String implements Step.
func (t *RandomSolarize) String() string {
	return fmt.Sprintf("RandomSolarize(threshold=%g, p=%g)", t.Threshold, t.P)
}

// Normalize subtracts Mean and divides by Std per channel. It is
// deterministic and draws nothing from the RNG.
type Normalize struct{ Mean, Std []float32 }

// Apply implements Step.
func (t *Normalize) Apply(im *Image, _ *RNG, _ *Scratch) { NormalizeChannels(im, t.Mean, t.Std) }

// OutShape implements Step.
func (t *Normalize) OutShape(c, h, w int) (int, int, int) { return c, h, w }

// Validate implements Step.
func (t *Normalize) Validate() error {
	if len(t.Mean) == 0 || len(t.Mean) != len(t.Std) {
		return fmt.Errorf("mean (%d values) and std (%d values) must be non-empty and equal length", len(t.Mean), len(t.Std))
	}
	for _, s := range t.Std {
		if !(s > 0) {
			return fmt.Errorf("std %v must be positive", t.Std)
		}
	}
	return nil
}

// String implements Step.
func (t *Normalize) String() string { return fmt.Sprintf("Normalize(mean=%v, std=%v)", t.Mean, t.Std) }
