//go:build amd64 && !purego

package kernel

import "golang.org/x/sys/cpu"

// bnAsm reports whether the AVX2 batch-norm loops in bn_amd64.s can run.
var bnAsm = cpu.X86.HasAVX2 && cpu.X86.HasFMA

// The routines below are documented in bn_amd64.s. n must be a positive
// multiple of 8 and every element they touch in bounds.

//go:noescape
func bnSumsAVX(x *float32, n int, shift float64) (s1, s2 float64)

//go:noescape
func bnNormAVX(x, y *float32, n int, m *bnMap, relu bool)

//go:noescape
func bnGradSumsAVX(dy, x *float32, n int, mean float64, m *bnMap) (s1, s2, s3 float64)

//go:noescape
func bnDxAVX(dx, dy, x *float32, n int, k *bnDx, m *bnMap, acc bool)
