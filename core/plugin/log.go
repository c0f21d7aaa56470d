package plugin

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"strings"
	"sync"

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

// lineWriter splits a byte stream into lines and emits each one; it backs
// the plugin's forwarded stdout and stderr.
type lineWriter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	emit func(string)
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for {
		i := bytes.IndexByte(w.buf.Bytes(), '\n')
		if i < 0 {
			break
		}
		line := strings.TrimRight(string(w.buf.Next(i+1)), "\r\n")
		if line != "" {
			w.emit(line)
		}
	}
	return len(p), nil
}
