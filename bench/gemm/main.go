// Command gemm times core/gemm.Sgemm for bench/gemm/compare.py, outside
// `go test` so that the comparison with PyTorch runs interleaved in one
// window.
//
// It reads requests from stdin, one per line,
//
//	tA tB m n k threads seconds
//
// (tA, tB are 0 or 1), runs one warm-up call and then bursts of identical
// calls lasting about the given seconds, and answers each request with one
// line "ok <wall seconds per call> <calls> <CPU seconds per call>" (or
// "err <message>"); CPU time is the whole process's user+system time, so on
// a shared machine it shows the work done apart from time spent descheduled.
package main

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"time"

	"github.com/sslrun/sslrun/core/gemm"
	"github.com/sslrun/sslrun/core/parallel"
)

type key struct {
	tA, tB  bool
	m, n, k int
}

// operands caches the inputs of the last shape so that a shape measured
// repeatedly does not pay for allocation and page faults each time.
type operands struct {
	key
	a, b, c []float32
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	out := bufio.NewWriter(os.Stdout)
	var ops operands
	for in.Scan() {
		var tA, tB, m, n, k, threads int
		var secs float64
		if _, err := fmt.Sscan(in.Text(), &tA, &tB, &m, &n, &k, &threads, &secs); err != nil {
			fmt.Fprintf(out, "err parse %q: %v\n", in.Text(), err)
			out.Flush()
			continue
		}
		key := key{tA == 1, tB == 1, m, n, k}
		if ops.key != key || ops.a == nil {
			ops = newOperands(key)
		}
		perCall, calls, cpu := measure(&ops, threads, secs)
		fmt.Fprintf(out, "ok %.9g %d %.9g\n", perCall, calls, cpu)
		out.Flush()
	}
	if err := in.Err(); err != nil {
		fmt.Fprintf(os.Stderr, "gemm bench: read stdin: %v\n", err)
		os.Exit(1)
	}
}

func newOperands(k key) operands {
	rng := rand.New(rand.NewPCG(1, 2))
	fill := func(n int) []float32 {
		s := make([]float32, n)
		for i := range s {
			s[i] = float32(rng.NormFloat64())
		}
		return s
	}
	return operands{key: k, a: fill(k.m * k.k), b: fill(k.k * k.n), c: fill(k.m * k.n)}
}

func (o *operands) call() {
	lda, ldb := o.k, o.n
	if o.tA {
		lda = o.m
	}
	if o.tB {
		ldb = o.k
	}
	gemm.Sgemm(o.tA, o.tB, o.m, o.n, o.k, 1, o.a, lda, o.b, ldb, 0, o.c, o.n)
}

// measure returns the mean wall and CPU time per call over a burst of
// about secs, and the number of calls.
func measure(o *operands, threads int, secs float64) (wall float64, reps int, cpu float64) {
	defer parallel.SetThreads(parallel.SetThreads(threads))
	t0 := time.Now()
	o.call()
	one := time.Since(t0).Seconds()
	reps = max(1, int(secs/max(one, 1e-7)))
	c0 := cpuSeconds()
	t0 = time.Now()
	for i := 0; i < reps; i++ {
		o.call()
	}
	wall = time.Since(t0).Seconds() / float64(reps)
	return wall, reps, (cpuSeconds() - c0) / float64(reps)
}
