//go:build !amd64 || purego

package autodiff

// ewAsm is false: the portable loops run everywhere but amd64.
var ewAsm = false

func reluAVX(dst, a, b *float32, n int) { panic("autodiff: no AVX2") }

func reluGradAVX(dst, grad, y *float32, n int, acc bool) { panic("autodiff: no AVX2") }
