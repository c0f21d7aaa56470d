//go:build race

package autodiff

// raceEnabled reports a -race build: sync.Pool then drops items at random,
// so the pools behind core/gemm and core/kernel allocate and allocation
// tests are skipped.
const raceEnabled = true
