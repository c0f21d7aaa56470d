package report

import "testing"

func TestSeedless(t *testing.T) {
	for name, want := range map[string]string{
		"simsiam-seed0":           "simsiam",
		"triplet-residual-seed12": "triplet-residual",
		"simclr-t0.5-seed2":       "simclr-t0.5",
		"quickstart":              "",
		"a-seed":                  "",
		"-seed1":                  "",
		"x-seed1b":                "",
	} {
		if got := seedless(name); got != want {
			t.Errorf("seedless(%q) = %q, want %q", name, got, want)
		}
	}
}
