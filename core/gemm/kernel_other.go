//go:build !amd64 || purego

package gemm

// hasAsm is false where there is no assembly micro-kernel: Sgemm always
// uses kernGo.
const hasAsm = false

// kernAsm is never called when hasAsm is false; it exists so that the
// driver compiles unchanged on every architecture.
func kernAsm(k int, a, b, c *float32, ldc int, beta float32) {
	panic("gemm: no assembly kernel on this architecture")
}

// The assembly packing routines likewise only exist on amd64.

func packAN(kb8 int, src *float32, lda int, dst *float32, alpha float32) { panic("gemm: no asm") }
func packAT(kb int, src *float32, lda int, dst *float32, npan, pstride int, alpha float32) {
	panic("gemm: no asm")
}
func packBN(kb int, src *float32, ldb int, dst *float32)  { panic("gemm: no asm") }
func packBT(kb8 int, src *float32, ldb int, dst *float32) { panic("gemm: no asm") }
