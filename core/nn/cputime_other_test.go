//go:build !unix

package nn

import "time"

// processCPU is unavailable here; the benchmarks then skip cpu-img/s.
func processCPU() time.Duration { return 0 }
