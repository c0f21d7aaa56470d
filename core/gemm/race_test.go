//go:build race

package gemm

// raceEnabled is true under -race, where sync.Pool deliberately drops
// items and allocation counts mean nothing.
const raceEnabled = true
