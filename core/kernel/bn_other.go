//go:build !amd64 || purego

package kernel

// bnAsm is false: the portable loops in batchnorm.go run everywhere but
// amd64.
var bnAsm = false

func bnSumsAVX(*float32, int, float64) (float64, float64) { panic("kernel: no AVX2") }

func bnNormAVX(*float32, *float32, int, *bnMap, bool) { panic("kernel: no AVX2") }

func bnGradSumsAVX(*float32, *float32, int, float64, *bnMap) (float64, float64, float64) {
	panic("kernel: no AVX2")
}

func bnDxAVX(*float32, *float32, *float32, int, *bnDx, *bnMap, bool) { panic("kernel: no AVX2") }
