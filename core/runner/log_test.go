package runner

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

func TestNewLogger(t *testing.T) {
	for _, tc := range []struct {
		name             string
		console, noColor bool
		env              bool // NO_COLOR set
		wantJSON, colour bool
	}{
		{"json", false, false, false, true, false},
		{"console colour", true, false, false, false, true},
		{"console --no-color", true, true, false, false, false},
		{"console NO_COLOR", true, false, true, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("NO_COLOR", "1") // restored after the test
			if !tc.env {
				os.Unsetenv("NO_COLOR")
			}
			var buf bytes.Buffer
			log := NewLogger(&buf, tc.console, tc.noColor, zerolog.InfoLevel)
			log.Info().Int("epoch", 1).Msg("epoch done")
			out := buf.String()
			var m map[string]any
			isJSON := json.Unmarshal([]byte(out), &m) == nil
			if isJSON != tc.wantJSON || strings.Contains(out, "\x1b[") != tc.colour || !strings.Contains(out, "epoch done") {
				t.Errorf("output %q: json %v colour %v", out, isJSON, strings.Contains(out, "\x1b["))
			}
		})
	}
}
