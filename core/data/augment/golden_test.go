package augment

import (
	"encoding/json"
	"math"
	"path/filepath"
	"sort"
	"testing"

	"github.com/sslrun/sslrun/core/safetensors"
	"github.com/sslrun/sslrun/core/tensor"
)

// goldenCase is the JSON description that tools/golden/gen_augment.py stores
// in the fixture metadata for every output tensor.
type goldenCase struct {
	Op        string    `json:"op"`
	Input     string    `json:"input"`
	Top       int       `json:"top"`
	Left      int       `json:"left"`
	H         int       `json:"h"`
	W         int       `json:"w"`
	OH        int       `json:"oh"`
	OW        int       `json:"ow"`
	Factor    float32   `json:"factor"`
	KX        int       `json:"kx"`
	KY        int       `json:"ky"`
	SX        float32   `json:"sx"`
	SY        float32   `json:"sy"`
	Threshold float32   `json:"threshold"`
	Mean      []float32 `json:"mean"`
	Std       []float32 `json:"std"`
	Order     [4]int    `json:"order"`
	B         float32   `json:"b"`
	C         float32   `json:"c"`
	S         float32   `json:"s"`
	Hue       float32   `json:"hue"`
}

// goldenTol is the maximum absolute difference accepted per op against
// torchvision. The ops replicate torchvision's float32 formulas, so the
// residual is float32 rounding (summation order, the separable blur).
var goldenTol = map[string]float64{
	"resized_crop": 2e-6,
	"hflip":        0,
	"brightness":   1e-6,
	"contrast":     1e-6,
	"saturation":   1e-6,
	"hue":          1e-6,
	"grayscale":    1e-6,
	"blur":         2e-6,
	"solarize":     0,
	"normalize":    1e-6,
	"jitter":       2e-6,
}

func imageFrom(t *testing.T, x *tensor.T) *Image {
	t.Helper()
	if len(x.Shape) != 3 {
		t.Fatalf("fixture tensor shape %v, want CHW", x.Shape)
	}
	im := NewImage(x.Shape[0], x.Shape[1], x.Shape[2])
	copy(im.Pix, x.Data)
	return im
}

func replay(t *testing.T, gc goldenCase, in *Image) *Image {
	t.Helper()
	im := new(Image)
	im.CopyFrom(in)
	var s Scratch
	switch gc.Op {
	case "resized_crop":
		out := new(Image)
		ResizedCrop(out, im, gc.Top, gc.Left, gc.H, gc.W, gc.OH, gc.OW, &s)
		return out
	case "hflip":
		HFlip(im)
	case "brightness":
		AdjustBrightness(im, gc.Factor)
	case "contrast":
		AdjustContrast(im, gc.Factor)
	case "saturation":
		AdjustSaturation(im, gc.Factor)
	case "hue":
		AdjustHue(im, gc.Factor)
	case "grayscale":
		Grayscale(im)
	case "blur":
		Blur(im, gc.KX, gc.KY, gc.SX, gc.SY, &s)
	case "solarize":
		Solarize(im, gc.Threshold)
	case "normalize":
		NormalizeChannels(im, gc.Mean, gc.Std)
	case "jitter":
		ApplyJitter(im, gc.Order, gc.B, gc.C, gc.S, gc.Hue, true, true, true, true)
	default:
		t.Fatalf("unknown op %q", gc.Op)
	}
	return im
}

func TestGoldenTorchvision(t *testing.T) {
	for _, file := range []string{"augment_geom.safetensors", "augment_color.safetensors"} {
		f, err := safetensors.ReadFile(filepath.Join("testdata", file))
		if err != nil {
			t.Fatal(err)
		}
		names := make([]string, 0, len(f.Metadata))
		for k := range f.Metadata {
			names = append(names, k)
		}
		sort.Strings(names)
		cases := 0
		for _, name := range names {
			var raw map[string]any
			if json.Unmarshal([]byte(f.Metadata[name]), &raw) != nil || raw["op"] == nil {
				continue // generator/version metadata
			}
			var gc goldenCase
			if err := json.Unmarshal([]byte(f.Metadata[name]), &gc); err != nil {
				t.Fatalf("%s: metadata %s: %v", file, name, err)
			}
			cases++
			t.Run(name, func(t *testing.T) {
				inT, err := f.Tensor(gc.Input)
				if err != nil {
					t.Fatal(err)
				}
				want, err := f.Tensor(name)
				if err != nil {
					t.Fatal(err)
				}
				got := replay(t, gc, imageFrom(t, inT))
				if got.C != want.Shape[0] || got.H != want.Shape[1] || got.W != want.Shape[2] {
					t.Fatalf("shape %v, torchvision %v", got, want.Shape)
				}
				var maxd float64
				at := 0
				for i, w := range want.Data {
					if d := math.Abs(float64(got.Pix[i] - w)); d > maxd {
						maxd, at = d, i
					}
				}
				tol := goldenTol[gc.Op]
				t.Logf("%s: max |go - torchvision| = %.3g (tol %.0g)", gc.Op, maxd, tol)
				if maxd > tol {
					t.Errorf("%s: max abs diff %.3g at %d (go %v, torchvision %v) > tol %g", name, maxd, at, got.Pix[at], want.Data[at], tol)
				}
			})
		}
		if cases == 0 {
			t.Fatalf("%s: no golden cases found in metadata", file)
		}
	}
}

// TestGoldenCropDistribution compares the distribution of
// RandomResizedCrop.Params with torchvision's get_params: the RNG streams
// differ, so means are compared with a two-sample z-test (|z| < 4) and
// standard deviations within 5%.
func TestGoldenCropDistribution(t *testing.T) {
	f, err := safetensors.ReadFile(filepath.Join("testdata", "augment_params.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	type statCase struct {
		Op    string     `json:"op"`
		H     int        `json:"h"`
		W     int        `json:"w"`
		Scale [2]float64 `json:"scale"`
		Ratio [2]float64 `json:"ratio"`
		N     int        `json:"n"`
	}
	cols := []string{"h", "w", "area", "top", "left"}
	found := 0
	for _, name := range f.Names() {
		var sc statCase
		if err := json.Unmarshal([]byte(f.Metadata[name]), &sc); err != nil || sc.Op != "rrc_stats" {
			continue
		}
		found++
		want, err := f.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		c := &RandomResizedCrop{H: 1, W: 1, Scale: sc.Scale, Ratio: sc.Ratio}
		r := NewRNG(77)
		var sum, sq [5]float64
		for range sc.N {
			top, left, h, w := c.Params(sc.H, sc.W, &r)
			v := [5]float64{float64(h), float64(w), float64(h*w) / float64(sc.H*sc.W), float64(top), float64(left)}
			for k := range v {
				sum[k] += v[k]
				sq[k] += v[k] * v[k]
			}
		}
		n := float64(sc.N)
		for k, col := range cols {
			mean := sum[k] / n
			std := math.Sqrt((sq[k] - n*mean*mean) / (n - 1))
			tm, ts := float64(want.Data[k]), float64(want.Data[5+k])
			z := (mean - tm) / math.Sqrt((std*std+ts*ts)/n)
			t.Logf("%s %-4s: go mean %.4f std %.4f | torchvision mean %.4f std %.4f | z %.2f", name, col, mean, std, tm, ts, z)
			if math.Abs(z) > 4 || math.Abs(std-ts) > 0.05*ts {
				t.Errorf("%s %s: distribution differs from torchvision (z=%.2f, std %.4f vs %.4f)", name, col, z, std, ts)
			}
		}
	}
	if found == 0 {
		t.Fatal("no rrc_stats in fixture")
	}
}
