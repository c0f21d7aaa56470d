//go:build !unix

package train

import "time"

// processCPU is unavailable here; BenchmarkStep then omits cpu-s/op.
func processCPU() time.Duration { return 0 }
