package runner

import (
	"io"
	"os"
	"time"

	"github.com/rs/zerolog"
)

// NewLogger returns the runner's logger writing to w: zerolog's
// ConsoleWriter (human-readable, coloured unless noColor) when console is
// true (a terminal), JSON lines otherwise. NO_COLOR in the environment
// (https://no-color.org) also turns colour off. Pass an *mpb.Progress as w
// when bars are shown, so that lines print above them.
func NewLogger(w io.Writer, console, noColor bool, level zerolog.Level) zerolog.Logger {
	if _, ok := os.LookupEnv("NO_COLOR"); ok {
		noColor = true
	}
	if console {
		w = zerolog.ConsoleWriter{Out: w, NoColor: noColor, TimeFormat: time.TimeOnly}
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger()
}
