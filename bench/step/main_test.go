package main

import (
	"bytes"
	"encoding/json"
	"io"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sslrun/sslrun/core/plugin"
	"github.com/sslrun/sslrun/internal/testenv"
)

// The test binary serves the bundled plugins when re-executed, as the
// command does.
func TestMain(m *testing.M) {
	registerPlugins()
	plugin.ServeIfBundled()
	os.Exit(m.Run())
}

// TestModesAgree runs two W1 steps of every method with the plugins as
// subprocesses and in process (core/train.Step) and requires the same
// losses: the harness trains the reference's model and loss both ways.
func TestModesAgree(t *testing.T) {
	testenv.Long(t)
	for _, method := range []string{"simsiam", "simclr", "byol"} {
		t.Run(method, func(t *testing.T) {
			var losses [2][]float64
			for i, mode := range []string{"", "-in-process"} {
				args := []string{"-workload", "W1", "-method", method, "-threads", "2", "-warmup", "0", "-iters", "2",
					"-gate-timeout", "0", "-max-block-s", "1000", "-foreign-max", "100"}
				if mode != "" {
					args = append(args, mode)
				}
				var out bytes.Buffer
				if err := run(args, &out, io.Discard); err != nil {
					t.Fatal(err)
				}
				var rec record
				if err := json.Unmarshal(out.Bytes(), &rec); err != nil {
					t.Fatalf("output %q: %v", out.String(), err)
				}
				if rec.NSteps != 2 || rec.NClean != 2 || len(rec.Times) != 2 || rec.ImgSMedian <= 0 || rec.PeakRSSMB <= 0 {
					t.Fatalf("%s: record %+v", mode, rec)
				}
				if wantProcs := map[string]int{"": 3, "-in-process": 1}[mode]; len(rec.PerProcessRSSMB) != wantProcs {
					t.Errorf("%s: RSS of %d processes, want %d", mode, len(rec.PerProcessRSSMB), wantProcs)
				}
				for _, s := range rec.Steps {
					losses[i] = append(losses[i], s.Loss)
				}
			}
			for k := range losses[0] {
				if a, b := losses[0][k], losses[1][k]; math.Abs(a-b) > 1e-5*(1+math.Abs(b)) {
					t.Errorf("step %d: loss %v with plugin subprocesses, %v in process", k, a, b)
				}
			}
		})
	}
}

func TestFlagErrors(t *testing.T) {
	for _, args := range [][]string{
		{"-workload", "W4"},
		{"-workload", "W3", "-method", "byol"},
		{"-threads", "0"},
		{"extra"},
	} {
		if err := run(args, io.Discard, io.Discard); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
}

func TestProcParsing(t *testing.T) {
	p := filepath.Join(t.TempDir(), "status")
	if err := os.WriteFile(p, []byte("Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t1024 kB\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := kbFields(p, []string{"VmHWM", "VmRSS", "Pss"})
	if err != nil {
		t.Fatal(err)
	}
	if got["VmHWM"] != 2048 || got["VmRSS"] != 1024 || len(got) != 2 {
		t.Fatalf("kbFields = %v", got)
	}
	if m := treeMemory(nil); m.HWM <= 0 || len(m.PerProcessHWM) != 1 {
		t.Fatalf("treeMemory(self) = %+v", m)
	}
	// 3 CPUs busy for 2 s, 2 of them ours: 1 foreign CPU.
	t0 := time.Now()
	a := cpuSample{t: t0, busy: 1000, own: 500}
	b := cpuSample{t: t0.Add(2 * time.Second), busy: 1000 + 3*2*clkTck, own: 500 + 2*2*clkTck}
	if f := foreign(a, b); math.Abs(f-1) > 1e-9 {
		t.Fatalf("foreign = %v, want 1", f)
	}
}
