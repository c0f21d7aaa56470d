//go:build !race

package autodiff

// raceEnabled reports a -race build (see race_test.go).
const raceEnabled = false
