package augment

// Standard channel statistics used by the SSL recipes.
var (
	// CIFAR10Mean and CIFAR10Std are the per-channel statistics used by
	// solo-learn and lightly for CIFAR.
	CIFAR10Mean = []float32{0.4914, 0.4822, 0.4465}
	CIFAR10Std  = []float32{0.2470, 0.2435, 0.2616}
	// ImageNetMean and ImageNetStd are the usual ImageNet statistics.
	ImageNetMean = []float32{0.485, 0.456, 0.406}
	ImageNetStd  = []float32{0.229, 0.224, 0.225}
	// MNISTMean and MNISTStd are the usual MNIST statistics.
	MNISTMean = []float32{0.1307}
	MNISTStd  = []float32{0.3081}
)

// SimCLRView is the SimSiam/SimCLR CIFAR view: RandomResizedCrop(size,
// scale=(0.2,1)), flip 0.5, ColorJitter(0.4,0.4,0.4,0.1) with p=0.8,
// grayscale p=0.2, normalize. Both views use the same pipeline.
func SimCLRView(size int, mean, std []float32) Pipeline {
	return Pipeline{
		NewRandomResizedCrop(size, 0.2, 1.0),
		&RandomHorizontalFlip{P: 0.5},
		&ColorJitter{Brightness: 0.4, Contrast: 0.4, Saturation: 0.4, Hue: 0.1, P: 0.8},
		&RandomGrayscale{P: 0.2},
		&Normalize{Mean: mean, Std: std},
	}
}

// BYOLViews returns BYOL's two asymmetric views: both crop (scale 0.08-1),
// flip and jitter (0.4, 0.4, 0.2, 0.1, p=0.8), grayscale p=0.2; view one
// always blurs and never solarizes, view two blurs with p=0.1 and solarizes
// with p=0.2. The blur kernel is about a tenth of the size, made odd
// (23 for 224 as in the paper).
func BYOLViews(size int, mean, std []float32) (Pipeline, Pipeline) {
	k := size / 10
	if k%2 == 0 {
		k++
	}
	view := func(blurP, solP float64) Pipeline {
		return Pipeline{
			NewRandomResizedCrop(size, 0.08, 1.0),
			&RandomHorizontalFlip{P: 0.5},
			&ColorJitter{Brightness: 0.4, Contrast: 0.4, Saturation: 0.2, Hue: 0.1, P: 0.8},
			&RandomGrayscale{P: 0.2},
			&GaussianBlur{Kernel: k, SigmaMin: 0.1, SigmaMax: 2.0, P: blurP},
			&RandomSolarize{Threshold: 0.5, P: solP},
			&Normalize{Mean: mean, Std: std},
		}
	}
	return view(1.0, 0), view(0.1, 0.2)
}

// MNISTView is a one-channel view for MNIST-like data:
// RandomResizedCrop(size, scale=(0.3,1)) then normalize; no colour ops and
// no flip (digits are not mirror-symmetric).
func MNISTView(size int) Pipeline {
	return Pipeline{
		NewRandomResizedCrop(size, 0.3, 1.0),
		&Normalize{Mean: MNISTMean, Std: MNISTStd},
	}
}
