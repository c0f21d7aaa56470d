// Package safetensors reads and writes the safetensors format
// (https://github.com/huggingface/safetensors): an 8-byte little-endian
// header length, a JSON header naming each tensor's dtype, shape and byte
// range, then the raw little-endian data. PyTorch, NumPy and sslrun read the
// same files, which is why weights, checkpoints and golden fixtures use it.
package safetensors

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"sort"

	"github.com/sslrun/sslrun/core/tensor"
	"github.com/sslrun/sslrun/internal/atomicfile"
)

// maxHeader bounds the JSON header so that a corrupt length cannot make
// ReadFile allocate gigabytes.
const maxHeader = 100 << 20

// Entry describes one stored tensor.
type Entry struct {
	DType       string `json:"dtype"`
	Shape       []int  `json:"shape"`
	DataOffsets [2]int `json:"data_offsets"`
}

// File is a parsed safetensors file held in memory.
type File struct {
	// Metadata is the free-form string map stored under "__metadata__".
	Metadata map[string]string
	entries  map[string]Entry
	data     []byte
	path     string
}

// ReadFile reads and validates a safetensors file.
func ReadFile(path string) (*File, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	f, err := Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %s: %w", path, err)
	}
	f.path = path
	return f, nil
}

// Parse parses a safetensors file held in raw. The returned File refers to raw.
func Parse(raw []byte) (*File, error) {
	if len(raw) < 8 {
		return nil, fmt.Errorf("file is %d bytes, shorter than the 8-byte header length", len(raw))
	}
	n := binary.LittleEndian.Uint64(raw[:8])
	if n > maxHeader || n > uint64(len(raw)-8) {
		return nil, fmt.Errorf("header length %d does not fit in a %d-byte file", n, len(raw))
	}
	var header map[string]json.RawMessage
	if err := json.Unmarshal(raw[8:8+n], &header); err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	f := &File{entries: make(map[string]Entry, len(header)), data: raw[8+n:]}
	for name, msg := range header {
		if name == "__metadata__" {
			if err := json.Unmarshal(msg, &f.Metadata); err != nil {
				return nil, fmt.Errorf("__metadata__: %w", err)
			}
			continue
		}
		var e Entry
		if err := json.Unmarshal(msg, &e); err != nil {
			return nil, fmt.Errorf("tensor %q: %w", name, err)
		}
		size, ok := dtypeSize[e.DType]
		if !ok {
			return nil, fmt.Errorf("tensor %q: unsupported dtype %q", name, e.DType)
		}
		n := tensor.Numel(e.Shape)
		if n < 0 || n > len(f.data)/size {
			return nil, fmt.Errorf("tensor %q: shape %v does not fit in %d data bytes", name, e.Shape, len(f.data))
		}
		want := size * n
		b, end := e.DataOffsets[0], e.DataOffsets[1]
		if b < 0 || end < b || end > len(f.data) || end-b != want {
			return nil, fmt.Errorf("tensor %q: byte range %v does not hold %s%v (%d bytes) within %d data bytes",
				name, e.DataOffsets, e.DType, e.Shape, want, len(f.data))
		}
		f.entries[name] = e
	}
	if f.Metadata == nil {
		f.Metadata = map[string]string{}
	}
	return f, nil
}

var dtypeSize = map[string]int{"F32": 4, "F64": 8, "I64": 8, "I32": 4, "F16": 2, "BF16": 2, "U8": 1, "I8": 1, "BOOL": 1}

// Names lists the stored tensors in sorted order.
func (f *File) Names() []string {
	names := make([]string, 0, len(f.entries))
	for n := range f.entries {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Entry returns the description of the named tensor.
func (f *File) Entry(name string) (Entry, bool) {
	e, ok := f.entries[name]
	return e, ok
}

// Tensor returns the named tensor as float32, converting F64 and integer
// data. The result owns its memory.
func (f *File) Tensor(name string) (*tensor.T, error) {
	e, ok := f.entries[name]
	if !ok {
		return nil, fmt.Errorf("safetensors: %s: no tensor %q", f.where(), name)
	}
	b := f.data[e.DataOffsets[0]:e.DataOffsets[1]]
	t := tensor.New(e.Shape...)
	switch e.DType {
	case "F32":
		for i := range t.Data {
			t.Data[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
	case "F64":
		for i := range t.Data {
			t.Data[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:])))
		}
	case "I64":
		for i := range t.Data {
			t.Data[i] = float32(int64(binary.LittleEndian.Uint64(b[8*i:])))
		}
	case "I32":
		for i := range t.Data {
			t.Data[i] = float32(int32(binary.LittleEndian.Uint32(b[4*i:])))
		}
	default:
		return nil, fmt.Errorf("safetensors: %s: tensor %q has dtype %s, cannot convert to float32", f.where(), name, e.DType)
	}
	return t, nil
}

// Int64s returns the named integer tensor (I64 or I32) and its shape.
func (f *File) Int64s(name string) ([]int64, []int, error) {
	e, ok := f.entries[name]
	if !ok {
		return nil, nil, fmt.Errorf("safetensors: %s: no tensor %q", f.where(), name)
	}
	b := f.data[e.DataOffsets[0]:e.DataOffsets[1]]
	out := make([]int64, tensor.Numel(e.Shape))
	switch e.DType {
	case "I64":
		for i := range out {
			out[i] = int64(binary.LittleEndian.Uint64(b[8*i:]))
		}
	case "I32":
		for i := range out {
			out[i] = int64(int32(binary.LittleEndian.Uint32(b[4*i:])))
		}
	default:
		return nil, nil, fmt.Errorf("safetensors: %s: tensor %q has dtype %s, want an integer type", f.where(), name, e.DType)
	}
	return out, append([]int(nil), e.Shape...), nil
}

func (f *File) where() string {
	if f.path == "" {
		return "<memory>"
	}
	return f.path
}

// Int64 is an integer tensor to store beside float32 ones, such as
// PyTorch's BatchNorm num_batches_tracked counter or step counters.
type Int64 struct {
	Shape []int
	Data  []int64
}

// Encode serializes float32 tensors and metadata. Tensors are laid out in
// sorted name order so that equal inputs give byte-identical files.
func Encode(tensors map[string]*tensor.T, metadata map[string]string) ([]byte, error) {
	return EncodeMixed(tensors, nil, metadata)
}

// EncodeMixed serializes float32 and int64 tensors (names must not repeat
// across the two maps) and metadata, in sorted name order.
func EncodeMixed(f32 map[string]*tensor.T, i64 map[string]Int64, metadata map[string]string) ([]byte, error) {
	names := make([]string, 0, len(f32)+len(i64))
	for n, t := range f32 {
		if tensor.Numel(t.Shape) != len(t.Data) {
			return nil, fmt.Errorf("safetensors: tensor %q: shape %v does not match %d values", n, t.Shape, len(t.Data))
		}
		names = append(names, n)
	}
	for n, t := range i64 {
		if _, dup := f32[n]; dup {
			return nil, fmt.Errorf("safetensors: tensor %q given twice", n)
		}
		if tensor.Numel(t.Shape) != len(t.Data) {
			return nil, fmt.Errorf("safetensors: tensor %q: shape %v does not match %d values", n, t.Shape, len(t.Data))
		}
		names = append(names, n)
	}
	sort.Strings(names)
	header := make(map[string]any, len(names)+1)
	if len(metadata) > 0 {
		header["__metadata__"] = metadata
	}
	off := 0
	for _, n := range names {
		if n == "__metadata__" {
			return nil, fmt.Errorf("safetensors: %q is reserved", n)
		}
		e := Entry{DType: "F32"}
		size := 0
		if t, ok := f32[n]; ok {
			e.Shape, size = t.Shape, 4*len(t.Data)
		} else {
			t := i64[n]
			e.DType, e.Shape, size = "I64", t.Shape, 8*len(t.Data)
		}
		if e.Shape == nil {
			e.Shape = []int{}
		}
		e.DataOffsets = [2]int{off, off + size}
		header[n] = e
		off += size
	}
	h, err := json.Marshal(header)
	if err != nil {
		return nil, fmt.Errorf("safetensors: header: %w", err)
	}
	// Pad the header with spaces so the data starts 8-byte aligned, as the
	// reference implementation does; readers may then map it directly.
	for (8+len(h))%8 != 0 {
		h = append(h, ' ')
	}
	out := make([]byte, 8+len(h)+off)
	binary.LittleEndian.PutUint64(out, uint64(len(h)))
	copy(out[8:], h)
	p := out[8+len(h):]
	for _, n := range names {
		if t, ok := f32[n]; ok {
			for _, v := range t.Data {
				binary.LittleEndian.PutUint32(p, math.Float32bits(v))
				p = p[4:]
			}
			continue
		}
		for _, v := range i64[n].Data {
			binary.LittleEndian.PutUint64(p, uint64(v))
			p = p[8:]
		}
	}
	return out, nil
}

// WriteFile writes tensors and metadata to path atomically (see
// internal/atomicfile), so a crash or a full disk never leaves a
// half-written file under path. The file gets mode 0644.
func WriteFile(path string, tensors map[string]*tensor.T, metadata map[string]string) error {
	return WriteFileMixed(path, tensors, nil, metadata)
}

// WriteFileMixed is WriteFile for float32 and int64 tensors together.
func WriteFileMixed(path string, f32 map[string]*tensor.T, i64 map[string]Int64, metadata map[string]string) error {
	b, err := EncodeMixed(f32, i64, metadata)
	if err != nil {
		return err
	}
	// 0644 like any other output file: checkpoints and weights are meant
	// to be read by other tools and users.
	if err := atomicfile.Write(path, b, 0o644); err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	return nil
}
