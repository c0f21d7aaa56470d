package plugin

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// TestLineWriterBounded writes lines longer than maxLine, in small chunks
// and without a newline for a long time: the buffer must stay bounded, every
// piece must be marked as split, and joining the pieces must give back the
// text. Before the bound, the buffer grew with everything written.
func TestLineWriterBounded(t *testing.T) {
	tests := []struct {
		name  string
		text  string // written in chunks, then a newline
		chunk int
	}{
		{"short", "hello", 3},
		{"exactly max", strings.Repeat("a", maxLine), 1000},
		{"ascii", strings.Repeat("0123456789", 3*maxLine/10+7), 1000},
		{"one write", strings.Repeat("x", 5*maxLine+1), 5*maxLine + 1},
		{"multibyte", strings.Repeat("é€😀", maxLine/4), 777},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			w := &lineWriter{emit: func(s string) { got = append(got, s) }}
			for i := 0; i < len(tc.text); i += tc.chunk {
				if _, err := w.Write([]byte(tc.text[i:min(i+tc.chunk, len(tc.text))])); err != nil {
					t.Fatal(err)
				}
				if n := w.buf.Len(); n > maxLine {
					t.Fatalf("after %d bytes the writer buffers %d > %d", i+tc.chunk, n, maxLine)
				}
			}
			w.Write([]byte("\nnext line\n"))
			if len(got) == 0 || got[len(got)-1] != "next line" {
				t.Fatalf("last emitted %q, want the next line", got[len(got)-1:])
			}
			pieces := got[:len(got)-1]
			var joined strings.Builder
			for i, p := range pieces {
				if i > 0 {
					var ok bool
					if p, ok = strings.CutPrefix(p, splitPrefix); !ok {
						t.Fatalf("piece %d lacks %q", i, splitPrefix)
					}
				}
				if i < len(pieces)-1 {
					var ok bool
					if p, ok = strings.CutSuffix(p, splitSuffix); !ok {
						t.Fatalf("piece %d lacks %q", i, splitSuffix)
					}
				}
				if len(p) > maxLine {
					t.Errorf("piece %d has %d bytes", i, len(p))
				}
				if !utf8.ValidString(p) {
					t.Errorf("piece %d splits a rune", i)
				}
				joined.WriteString(p)
			}
			if joined.String() != tc.text {
				t.Errorf("pieces join to %d bytes, want the %d written", joined.Len(), len(tc.text))
			}
			if want := (len(tc.text) + maxLine - 1) / maxLine; len(tc.text) > maxLine && len(pieces) < want {
				t.Errorf("%d pieces, want at least %d", len(pieces), want)
			}
		})
	}
}
