package augment

import "testing"

func randomImage(c, h, w int, seed uint64) *Image {
	r := NewRNG(seed)
	im := NewImage(c, h, w)
	for i := range im.Pix {
		im.Pix[i] = float32(r.Float64())
	}
	return im
}

// BenchmarkOps times each op on one 3x32x32 image (single goroutine).
func BenchmarkOps(b *testing.B) {
	src := randomImage(3, 32, 32, 1)
	var s Scratch
	ops := []struct {
		name string
		f    func(im *Image)
	}{
		{"ResizedCrop", func(im *Image) { ResizedCrop(&s.img, im, 3, 4, 20, 22, 32, 32, &s) }},
		{"HFlip", HFlip},
		{"Brightness", func(im *Image) { AdjustBrightness(im, 1.2) }},
		{"Contrast", func(im *Image) { AdjustContrast(im, 0.8) }},
		{"Saturation", func(im *Image) { AdjustSaturation(im, 1.3) }},
		{"Hue", func(im *Image) { AdjustHue(im, 0.05) }},
		{"Grayscale", Grayscale},
		{"Blur3", func(im *Image) { Blur(im, 3, 3, 1, 1, &s) }},
		{"Solarize", func(im *Image) { Solarize(im, 0.5) }},
		{"Normalize", func(im *Image) { NormalizeChannels(im, CIFAR10Mean, CIFAR10Std) }},
	}
	im := NewImage(3, 32, 32)
	for _, op := range ops {
		b.Run(op.name, func(b *testing.B) {
			b.ReportAllocs()
			cpuTimed(b, func(int) {
				copy(im.Pix, src.Pix)
				op.f(im)
			})
		})
	}
}

// BenchmarkView times whole view pipelines per image (single goroutine).
func BenchmarkView(b *testing.B) {
	byol1, byol2 := BYOLViews(32, CIFAR10Mean, CIFAR10Std)
	cases := []struct {
		name string
		p    Pipeline
		c, s int
	}{
		{"SimCLR32", SimCLRView(32, CIFAR10Mean, CIFAR10Std), 3, 32},
		{"BYOL32-1", byol1, 3, 32},
		{"BYOL32-2", byol2, 3, 32},
		{"MNIST28", MNISTView(28), 1, 28},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			src := randomImage(tc.c, tc.s, tc.s, 2)
			var (
				im Image
				s  Scratch
				r  RNG
			)
			b.ReportAllocs()
			cpuTimed(b, func(i int) {
				im.CopyFrom(src)
				r = Derive(1, uint64(i))
				tc.p.Apply(&im, &r, &s)
			})
		})
	}
}
