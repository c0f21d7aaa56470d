// Package kernel holds sslrun's heavy neural-network kernels as plain
// functions over row-major []float32 slices: 2-D convolution (forward,
// backward-data, backward-filter), batch normalization (training and
// evaluation, forward and backward, and fused with a following ReLU), ReLU,
// max/average pooling and global average pooling. Images are NCHW,
// contiguous. The batch-norm loops have AVX2 versions on amd64.
//
// The kernels are written for the training loop's hot path:
//
//   - Callers pass every output and saved-state buffer. Scratch memory for
//     convolutions (im2col matrices) comes from a reusable Workspace that
//     grows on first use, so steady-state calls allocate nothing.
//   - Work is split across core/parallel's workers with Task values that
//     live in the Workspace or in parallel.FreeLists, never in per-call closures.
//   - Backward functions take an accumulate flag: false overwrites the
//     gradient buffers, true adds into them (what reverse-mode autodiff
//     needs when a tensor feeds several consumers).
//
// Shape mismatches (a slice shorter than its geometry says, a non-positive
// dimension) are programmer errors and panic with a message naming the
// argument; nothing here returns errors.
package kernel
