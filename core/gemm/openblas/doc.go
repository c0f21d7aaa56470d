// Package openblas calls the system OpenBLAS's cblas_sgemm with
// core/gemm.Sgemm's signature, for comparison benchmarks. Its code is only
// built with the openblas tag (and cgo); without the tag the package is
// empty, so the default build needs neither cgo nor OpenBLAS.
package openblas
