package rundb

import (
	"bytes"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Table is a generic result: named columns and rows of int64, float64,
// string, bool, []byte or nil values. Query returns one; RunsTable and
// CompareTable build them; Format prints them.
type Table struct {
	Columns []string
	Rows    [][]any
}

// Formats accepted by Format.
var Formats = []string{"table", "csv", "json"}

// Format writes t as "table" (aligned text for terminals), "csv" (RFC 4180
// with a header line) or "json" (an array of objects whose keys keep the
// column order). NULL is empty in table and CSV, null in JSON; NaN and
// infinities are the strings "NaN", "+Inf", "-Inf" in JSON; blobs are
// "<blob N bytes>" in table and CSV and base64 in JSON.
func Format(w io.Writer, t *Table, format string) error {
	switch format {
	case "table", "":
		return formatTable(w, t)
	case "csv":
		cw := csv.NewWriter(w)
		if err := cw.Write(t.Columns); err != nil {
			return err
		}
		rec := make([]string, len(t.Columns))
		for _, row := range t.Rows {
			for i := range rec {
				rec[i] = cellText(row[i], false)
			}
			if err := cw.Write(rec); err != nil {
				return err
			}
		}
		cw.Flush()
		return cw.Error()
	case "json":
		return formatJSON(w, t)
	}
	return fmt.Errorf("unknown output format %q (want one of %s)", format, strings.Join(Formats, ", "))
}

// cellText renders a value for table and CSV output. Floats use the
// shortest representation that round-trips, or 4 significant digits in
// pretty mode.
func cellText(v any, pretty bool) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case []byte:
		if utf8.Valid(x) && !bytes.ContainsRune(x, 0) {
			return string(x)
		}
		return fmt.Sprintf("<blob %d bytes>", len(x))
	case float64:
		if pretty {
			return strconv.FormatFloat(x, 'g', 4, 64)
		}
		return strconv.FormatFloat(x, 'g', -1, 64)
	case float32:
		return cellText(float64(x), pretty)
	case int64:
		return strconv.FormatInt(x, 10)
	case int:
		return strconv.Itoa(x)
	case bool:
		return strconv.FormatBool(x)
	}
	return fmt.Sprint(v)
}

func formatTable(w io.Writer, t *Table) error {
	cells := make([][]string, 0, len(t.Rows)+1)
	cells = append(cells, t.Columns)
	numeric := make([]bool, len(t.Columns))
	for i := range numeric {
		numeric[i] = len(t.Rows) > 0
	}
	for _, row := range t.Rows {
		r := make([]string, len(t.Columns))
		for i := range r {
			r[i] = strings.ReplaceAll(cellText(row[i], true), "\n", " ")
			switch row[i].(type) {
			case int64, int, float64, float32, nil:
			default:
				numeric[i] = false
			}
		}
		cells = append(cells, r)
	}
	width := make([]int, len(t.Columns))
	for _, r := range cells {
		for i, c := range r {
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	var b strings.Builder
	for ri, r := range cells {
		for i, c := range r {
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(c))
			if numeric[i] && ri > 0 {
				b.WriteString(pad + c)
			} else if i < len(r)-1 {
				b.WriteString(c + pad)
			} else {
				b.WriteString(c)
			}
			if i < len(r)-1 {
				b.WriteString("  ")
			}
		}
		b.WriteString("\n")
		if ri == 0 {
			for i := range width {
				b.WriteString(strings.Repeat("-", width[i]))
				if i < len(width)-1 {
					b.WriteString("  ")
				}
			}
			b.WriteString("\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func formatJSON(w io.Writer, t *Table) error {
	var b bytes.Buffer
	b.WriteString("[")
	for ri, row := range t.Rows {
		if ri > 0 {
			b.WriteString(",")
		}
		b.WriteString("\n  {")
		for i, c := range t.Columns {
			if i > 0 {
				b.WriteString(", ")
			}
			k, _ := json.Marshal(c)
			b.Write(k)
			b.WriteString(": ")
			v := row[i]
			switch x := v.(type) {
			case float64:
				if math.IsNaN(x) || math.IsInf(x, 0) {
					v = cellText(x, false)
					if x > 0 {
						v = "+Inf"
					}
				}
			case []byte:
				v = base64.StdEncoding.EncodeToString(x)
			}
			enc, err := json.Marshal(v)
			if err != nil {
				return err
			}
			b.Write(enc)
		}
		b.WriteString("}")
	}
	if len(t.Rows) > 0 {
		b.WriteString("\n")
	}
	b.WriteString("]\n")
	_, err := w.Write(b.Bytes())
	return err
}

func jsonUnmarshalString(s string, v any) error { return json.Unmarshal([]byte(s), v) }
