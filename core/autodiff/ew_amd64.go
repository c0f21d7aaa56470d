//go:build amd64 && !purego

package autodiff

import "golang.org/x/sys/cpu"

// ewAsm reports whether the AVX2 loops of ew_amd64.s can run.
var ewAsm = cpu.X86.HasAVX2

// reluAVX and reluGradAVX are documented in ew_amd64.s; n must be a
// positive multiple of 8 and every element in bounds.

//go:noescape
func reluAVX(dst, a, b *float32, n int)

//go:noescape
func reluGradAVX(dst, grad, y *float32, n int, acc bool)
