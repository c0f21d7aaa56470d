package plugin

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/hashicorp/go-hclog"
	"github.com/rs/zerolog"
)

// hclogAdapter routes go-plugin's logging, including the plugin's own
// structured log lines and its raw stderr (panics), into zerolog. The
// zerolog logger carries the plugin's name.
type hclogAdapter struct {
	l       zerolog.Logger
	name    string
	implied []any
	level   hclog.Level
}

func newHCLogAdapter(l zerolog.Logger) hclog.Logger {
	return &hclogAdapter{l: l, level: hclog.Trace}
}

func (a *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	if level < a.level {
		return
	}
	var ev *zerolog.Event
	switch level {
	case hclog.Trace:
		ev = a.l.Trace()
	case hclog.Debug, hclog.NoLevel:
		ev = a.l.Debug()
	case hclog.Info:
		ev = a.l.Info()
	case hclog.Warn:
		ev = a.l.Warn()
	default:
		ev = a.l.Error()
	}
	if a.name != "" {
		ev = ev.Str("logger", a.name)
	}
	kv := append(append([]any(nil), a.implied...), args...)
	for i := 0; i+1 < len(kv); i += 2 {
		k := fmt.Sprint(kv[i])
		if k == "timestamp" { // the host stamps its own time
			continue
		}
		ev = ev.Interface(k, kv[i+1])
	}
	if len(kv)%2 == 1 {
		ev = ev.Interface("extra", kv[len(kv)-1])
	}
	ev.Msg(msg)
}

func (a *hclogAdapter) Trace(msg string, args ...any) { a.Log(hclog.Trace, msg, args...) }
func (a *hclogAdapter) Debug(msg string, args ...any) { a.Log(hclog.Debug, msg, args...) }
func (a *hclogAdapter) Info(msg string, args ...any)  { a.Log(hclog.Info, msg, args...) }
func (a *hclogAdapter) Warn(msg string, args ...any)  { a.Log(hclog.Warn, msg, args...) }
func (a *hclogAdapter) Error(msg string, args ...any) { a.Log(hclog.Error, msg, args...) }
func (a *hclogAdapter) IsTrace() bool                 { return a.level <= hclog.Trace }
func (a *hclogAdapter) IsDebug() bool                 { return a.level <= hclog.Debug }
func (a *hclogAdapter) IsInfo() bool                  { return a.level <= hclog.Info }
func (a *hclogAdapter) IsWarn() bool                  { return a.level <= hclog.Warn }
func (a *hclogAdapter) IsError() bool                 { return a.level <= hclog.Error }
func (a *hclogAdapter) ImpliedArgs() []any            { return a.implied }
func (a *hclogAdapter) Name() string                  { return a.name }
func (a *hclogAdapter) SetLevel(l hclog.Level)        { a.level = l }
func (a *hclogAdapter) GetLevel() hclog.Level         { return a.level }

func (a *hclogAdapter) With(args ...any) hclog.Logger {
	b := *a
	b.implied = append(append([]any(nil), a.implied...), args...)
	return &b
}

func (a *hclogAdapter) Named(name string) hclog.Logger {
	b := *a
	if b.name != "" {
		name = b.name + "." + name
	}
	b.name = name
	return &b
}

func (a *hclogAdapter) ResetNamed(name string) hclog.Logger {
	b := *a
	b.name = name
	return &b
}

func (a *hclogAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(a.StandardWriter(opts), "", 0)
}

func (a *hclogAdapter) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return &lineWriter{emit: func(line string) { a.Info(line) }}
}

// maxLine bounds how much of one line lineWriter buffers. A plugin that
// never writes a newline (a progress bar, a binary dump) would otherwise
// grow the buffer without limit in the host.
const maxLine = 64 << 10

// Markers on the pieces of a line longer than maxLine, so that a reader of
// the log sees that the line was split rather than losing text.
const (
	splitSuffix = " [line continues]"
	splitPrefix = "[continued] "
)

// lineWriter splits a byte stream into lines and emits each one; it backs
// the plugin's forwarded stdout and stderr. A line longer than maxLine is
// emitted in pieces of at most maxLine bytes, each but the last marked with
// splitSuffix and each but the first with splitPrefix.
type lineWriter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	cont bool // the buffered text continues a line already partly emitted
	emit func(string)
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for {
		b := w.buf.Bytes()
		i := bytes.IndexByte(b, '\n')
		if i >= 0 && i <= maxLine {
			line := strings.TrimRight(string(w.buf.Next(i+1)), "\r\n")
			if w.cont {
				line = splitPrefix + line
			}
			w.cont = false
			if line != "" {
				w.emit(line)
			}
			continue
		}
		if len(b) <= maxLine {
			break // an incomplete line that still fits: wait for more
		}
		// Cut at a rune boundary so that neither piece holds half a
		// UTF-8 sequence.
		cut := maxLine
		for k := 0; k < utf8.UTFMax-1 && cut > 0 && !utf8.RuneStart(b[cut]); k++ {
			cut--
		}
		if cut == 0 {
			cut = maxLine
		}
		piece := string(w.buf.Next(cut)) + splitSuffix
		if w.cont {
			piece = splitPrefix + piece
		}
		w.cont = true
		w.emit(piece)
	}
	return len(p), nil
}
