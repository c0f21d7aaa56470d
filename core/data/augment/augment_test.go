package augment

import (
	"math"
	"strings"
	"testing"
)

func TestRNG(t *testing.T) {
	a, b := Derive(1, 2, 3, 4), Derive(1, 2, 3, 4)
	if a.Uint64() != b.Uint64() {
		t.Fatal("Derive not deterministic")
	}
	seen := map[uint64]bool{}
	for _, keys := range [][]uint64{{0, 0, 0}, {0, 0, 1}, {0, 1, 0}, {1, 0, 0}, {0, 0}, {0}} {
		r := Derive(9, keys...)
		v := r.Uint64()
		if seen[v] {
			t.Errorf("Derive(9, %v) collides", keys)
		}
		seen[v] = true
	}
	r := NewRNG(5)
	var counts [7]int
	for range 70000 {
		counts[r.Intn(7)]++
	}
	for i, c := range counts {
		if c < 9400 || c > 10600 {
			t.Errorf("Intn(7) bucket %d has %d of 70000", i, c)
		}
	}
	var sum float64
	for range 10000 {
		f := r.Float64()
		if f < 0 || f >= 1 {
			t.Fatalf("Float64 = %v", f)
		}
		sum += f
	}
	if m := sum / 10000; math.Abs(m-0.5) > 0.01 {
		t.Errorf("Float64 mean %v", m)
	}
}

func TestRandomResizedCropParams(t *testing.T) {
	tests := []struct {
		name          string
		h, w          int
		scale         [2]float64
		ratio         [2]float64
		wantFallback  [4]int // (top, left, h, w) when every try must fail
		checkFallback bool
	}{
		{name: "cifar", h: 32, w: 32, scale: [2]float64{0.2, 1}, ratio: [2]float64{3.0 / 4, 4.0 / 3}},
		{name: "mnist", h: 28, w: 28, scale: [2]float64{0.3, 1}, ratio: [2]float64{3.0 / 4, 4.0 / 3}},
		{name: "wide", h: 20, w: 60, scale: [2]float64{0.08, 1}, ratio: [2]float64{3.0 / 4, 4.0 / 3}},
		// A 10x100 strip cannot hold a near-square crop of >= 90% area:
		// torchvision falls back to a centred crop of ratio max(ratio),
		// h = 10, w = round(13.33) = 13.
		{name: "fallback wide", h: 10, w: 100, scale: [2]float64{0.9, 1}, ratio: [2]float64{3.0 / 4, 4.0 / 3}, wantFallback: [4]int{0, 43, 10, 13}, checkFallback: true},
		// Tall strip: w = 10, h = round(10 / 0.75) = 13.
		{name: "fallback tall", h: 100, w: 10, scale: [2]float64{0.9, 1}, ratio: [2]float64{3.0 / 4, 4.0 / 3}, wantFallback: [4]int{43, 0, 13, 10}, checkFallback: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &RandomResizedCrop{H: 8, W: 8, Scale: tc.scale, Ratio: tc.ratio}
			r := NewRNG(3)
			var areaSum float64
			const n = 4000
			for range n {
				top, left, h, w := c.Params(tc.h, tc.w, &r)
				if top < 0 || left < 0 || h <= 0 || w <= 0 || top+h > tc.h || left+w > tc.w {
					t.Fatalf("crop (%d,%d,%d,%d) outside %dx%d", top, left, h, w, tc.h, tc.w)
				}
				if tc.checkFallback {
					if got := [4]int{top, left, h, w}; got != tc.wantFallback {
						t.Fatalf("fallback %v, want %v", got, tc.wantFallback)
					}
					continue
				}
				frac := float64(h*w) / float64(tc.h*tc.w)
				// Rounding h and w moves the area a little off the range.
				if frac < tc.scale[0]*0.7 || frac > tc.scale[1]*1.15 {
					t.Fatalf("area fraction %v outside %v", frac, tc.scale)
				}
				areaSum += frac
			}
			if !tc.checkFallback {
				mean := areaSum / n
				t.Logf("mean area fraction %.3f for scale %v", mean, tc.scale)
				if mean < tc.scale[0] || mean > tc.scale[1] {
					t.Errorf("mean area fraction %v outside %v", mean, tc.scale)
				}
			}
		})
	}
}

func TestColorJitterFactors(t *testing.T) {
	j := &ColorJitter{Brightness: 0.4, Contrast: 0.4, Saturation: 0.4, Hue: 0.1, P: 1}
	r := NewRNG(11)
	orders := map[[4]int]int{}
	for range 5000 {
		o, b, c, s, h := j.Factors(&r)
		orders[o]++
		for _, f := range []float32{b, c, s} {
			if f < 0.6 || f > 1.4 {
				t.Fatalf("factor %v outside [0.6, 1.4]", f)
			}
		}
		if h < -0.1 || h > 0.1 {
			t.Fatalf("hue %v outside [-0.1, 0.1]", h)
		}
	}
	if len(orders) != 24 {
		t.Errorf("saw %d of 24 op orders", len(orders))
	}
	// Brightness 0.9 gives the range [max(0, 0.1), 1.9]; a disabled op
	// keeps the neutral factor.
	j = &ColorJitter{Brightness: 0.9, P: 1}
	for range 1000 {
		_, b, c, s, h := j.Factors(&r)
		if b < 0.1 || b > 1.9 || c != 1 || s != 1 || h != 0 {
			t.Fatalf("factors %v %v %v %v", b, c, s, h)
		}
	}
}

func TestPipelines(t *testing.T) {
	byol1, byol2 := BYOLViews(32, CIFAR10Mean, CIFAR10Std)
	tests := []struct {
		name    string
		p       Pipeline
		c, h, w int
		want    [3]int
	}{
		{"simclr", SimCLRView(32, CIFAR10Mean, CIFAR10Std), 3, 32, 32, [3]int{3, 32, 32}},
		{"byol1", byol1, 3, 40, 36, [3]int{3, 32, 32}},
		{"byol2", byol2, 3, 32, 32, [3]int{3, 32, 32}},
		{"mnist", MNISTView(28), 1, 28, 28, [3]int{1, 28, 28}},
		{"resize", Pipeline{&Resize{H: 5, W: 7}}, 1, 9, 9, [3]int{1, 5, 7}},
		{"empty", nil, 3, 4, 4, [3]int{3, 4, 4}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.p.Validate(); err != nil {
				t.Fatal(err)
			}
			c, h, w := tc.p.OutShape(tc.c, tc.h, tc.w)
			if [3]int{c, h, w} != tc.want {
				t.Fatalf("OutShape %v, want %v", [3]int{c, h, w}, tc.want)
			}
			src := randomImage(tc.c, tc.h, tc.w, 4)
			var im Image
			var s Scratch
			for i := range 20 {
				im.CopyFrom(src)
				r := Derive(0, uint64(i))
				tc.p.Apply(&im, &r, &s)
				if [3]int{im.C, im.H, im.W} != tc.want {
					t.Fatalf("Apply gave %v", &im)
				}
			}
			// Steady state allocates nothing (r lives outside the closure:
			// its address passes through interface calls, so a per-call
			// variable would escape).
			var r RNG
			allocs := testing.AllocsPerRun(50, func() {
				im.CopyFrom(src)
				r = Derive(0, 1)
				tc.p.Apply(&im, &r, &s)
			})
			if allocs > 0 {
				t.Errorf("%v allocations per view", allocs)
			}
		})
	}
	if s := byol2.String(); !strings.Contains(s, "RandomSolarize(threshold=0.5, p=0.2)") || !strings.Contains(s, "GaussianBlur(kernel_size=3, sigma=(0.1, 2)), p=0.1") {
		t.Errorf("BYOL view 2 = %s", s)
	}
}

func TestValidate(t *testing.T) {
	bad := []Step{
		&RandomResizedCrop{H: 0, W: 8, Scale: [2]float64{0.2, 1}, Ratio: [2]float64{0.75, 1.33}},
		&RandomResizedCrop{H: 8, W: 8, Scale: [2]float64{0.5, 0.2}, Ratio: [2]float64{0.75, 1.33}},
		&RandomResizedCrop{H: 8, W: 8, Scale: [2]float64{0.2, 1}, Ratio: [2]float64{0, 1.33}},
		&RandomHorizontalFlip{P: 1.5},
		&ColorJitter{Hue: 0.6, P: 1},
		&ColorJitter{Brightness: -1, P: 1},
		&RandomGrayscale{P: -0.1},
		&GaussianBlur{Kernel: 4, SigmaMin: 0.1, SigmaMax: 2, P: 1},
		&GaussianBlur{Kernel: 3, SigmaMin: 0, SigmaMax: 2, P: 1},
		&RandomSolarize{Threshold: 2, P: 0.2},
		&Normalize{Mean: []float32{0.5}, Std: []float32{0.5, 0.5}},
		&Normalize{Mean: []float32{0.5}, Std: []float32{0}},
		&Resize{H: 3, W: -1},
	}
	for _, s := range bad {
		if err := (Pipeline{s}).Validate(); err == nil {
			t.Errorf("%s: accepted", s)
		}
	}
}

// TestOpsEdgeCases covers behaviour torchvision rejects or that the golden
// images do not reach.
func TestOpsEdgeCases(t *testing.T) {
	// Reflection beyond one image width (torch refuses padding >= size).
	for _, c := range []struct{ i, n, want int }{{-1, 4, 1}, {4, 4, 2}, {-4, 4, 2}, {7, 4, 1}, {-7, 4, 1}, {5, 1, 0}} {
		if got := reflect(c.i, c.n); got != c.want {
			t.Errorf("reflect(%d, %d) = %d, want %d", c.i, c.n, got, c.want)
		}
	}
	im := randomImage(3, 2, 2, 8)
	Blur(im, 9, 9, 2, 2, nil) // kernel larger than the image
	for _, v := range im.Pix {
		if v < 0 || v > 1 || math.IsNaN(float64(v)) {
			t.Fatalf("blur of tiny image gave %v", v)
		}
	}
	// Hue on gray pixels is the identity; a full turn likewise.
	g := NewImage(3, 1, 2)
	copy(g.Pix, []float32{0.3, 0.8, 0.3, 0.8, 0.3, 0.8})
	AdjustHue(g, 0.37)
	if g.Pix[0] != 0.3 || g.Pix[5] != 0.8 {
		t.Errorf("hue changed gray: %v", g.Pix)
	}
	// ToTensor conversion is exact.
	u := new(Image)
	u.FromUint8(1, 1, 3, []uint8{0, 128, 255})
	if u.Pix[0] != 0 || u.Pix[1] != float32(128)/255 || u.Pix[2] != 1 {
		t.Errorf("FromUint8 %v", u.Pix)
	}
}
