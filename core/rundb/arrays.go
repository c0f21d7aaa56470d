package rundb

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"time"
)

// ArrayRecord is an analyzer array read back from the database.
type ArrayRecord struct {
	RunID   int64
	Key     string
	Context Context
	Step    int64
	Epoch   float64
	Shape   []int
	DType   string    // "float32", "float64" or "int64"
	Data    any       // []float32, []float64 or []int64
	Time    time.Time // when it was logged
}

// encodeArray stores data little-endian, the byte order numpy's "<f4" and
// Python's struct "<f" read, so the blobs are usable outside Go.
func encodeArray(data any) (dtype string, blob []byte, n int, err error) {
	switch x := data.(type) {
	case []float32:
		blob = make([]byte, 4*len(x))
		for i, v := range x {
			binary.LittleEndian.PutUint32(blob[4*i:], math.Float32bits(v))
		}
		return "float32", blob, len(x), nil
	case []float64:
		blob = make([]byte, 8*len(x))
		for i, v := range x {
			binary.LittleEndian.PutUint64(blob[8*i:], math.Float64bits(v))
		}
		return "float64", blob, len(x), nil
	case []int64:
		blob = make([]byte, 8*len(x))
		for i, v := range x {
			binary.LittleEndian.PutUint64(blob[8*i:], uint64(v))
		}
		return "int64", blob, len(x), nil
	}
	return "", nil, 0, fmt.Errorf("unsupported array type %T (want []float32, []float64 or []int64)", data)
}

func decodeArray(dtype string, blob []byte) (any, error) {
	switch dtype {
	case "float32":
		if len(blob)%4 != 0 {
			break
		}
		out := make([]float32, len(blob)/4)
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(blob[4*i:]))
		}
		return out, nil
	case "float64", "int64":
		if len(blob)%8 != 0 {
			break
		}
		if dtype == "int64" {
			out := make([]int64, len(blob)/8)
			for i := range out {
				out[i] = int64(binary.LittleEndian.Uint64(blob[8*i:]))
			}
			return out, nil
		}
		out := make([]float64, len(blob)/8)
		for i := range out {
			out[i] = math.Float64frombits(binary.LittleEndian.Uint64(blob[8*i:]))
		}
		return out, nil
	}
	return nil, fmt.Errorf("bad array: dtype %q with %d bytes", dtype, len(blob))
}

// Arrays returns a run's arrays with the given key, in step order.
func (db *DB) Arrays(ctx context.Context, runID int64, key string) ([]ArrayRecord, error) {
	rows, err := db.sql.QueryContext(ctx, `SELECT context, step, epoch, dtype, shape, data, time FROM arrays
		WHERE run_id = ? AND key = ? ORDER BY step, id`, runID, key)
	if err != nil {
		return nil, db.wrap(err, "read arrays %s of run %d", key, runID)
	}
	defer rows.Close()
	var out []ArrayRecord
	for rows.Next() {
		a := ArrayRecord{RunID: runID, Key: key}
		var c, shape string
		var blob []byte
		var t int64
		if err := rows.Scan(&c, &a.Step, &a.Epoch, &a.DType, &shape, &blob, &t); err != nil {
			return nil, db.wrap(err, "read arrays %s of run %d", key, runID)
		}
		if c != "{}" {
			a.Context = Context(c)
		}
		if err := json.Unmarshal([]byte(shape), &a.Shape); err != nil {
			return nil, db.wrap(err, "read arrays %s of run %d: shape", key, runID)
		}
		if a.Data, err = decodeArray(a.DType, blob); err != nil {
			return nil, db.wrap(err, "read arrays %s of run %d", key, runID)
		}
		a.Time = fromMillis(t)
		out = append(out, a)
	}
	return out, db.wrap(rows.Err(), "read arrays %s of run %d", key, runID)
}
