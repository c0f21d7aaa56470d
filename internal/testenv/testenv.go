// Package testenv holds helpers shared by sslrun's tests.
package testenv

import (
	"os"
	"testing"
)

// LongEnv is the environment variable that enables the long test suite.
const LongEnv = "SSLRUN_LONG"

// Long skips t unless the long suite was asked for with SSLRUN_LONG=1, so that
// `go test ./...` stays within the CI budget.
func Long(t testing.TB) {
	t.Helper()
	if os.Getenv(LongEnv) == "" {
		t.Skipf("long test: run with %s=1", LongEnv)
	}
}
