package nn

import (
	"fmt"
	"sort"
	"strings"

	"github.com/sslrun/sslrun/core/safetensors"
	"github.com/sslrun/sslrun/core/tensor"
)

// Part is a module stored under a name prefix in a weight file, e.g.
// {"backbone.", m}; a bare module is {"", m}.
type Part struct {
	// Prefix is prepended to every state_dict name, dot included.
	Prefix string
	// Module is the stored module.
	Module Module
}

// StateDict returns the float32 tensors (parameters and running statistics)
// and the int64 counters (num_batches_tracked, shape []) of parts, keyed by
// prefixed state_dict name. The tensors alias the modules' memory.
func StateDict(parts ...Part) (map[string]*tensor.T, map[string]safetensors.Int64, error) {
	f32 := map[string]*tensor.T{}
	i64 := map[string]safetensors.Int64{}
	var dup string
	for _, p := range parts {
		p.Module.Visit(p.Prefix, func(e Entry) {
			if _, ok := f32[e.Name]; ok {
				dup = e.Name
			}
			if _, ok := i64[e.Name]; ok {
				dup = e.Name
			}
			if e.Count != nil {
				i64[e.Name] = safetensors.Int64{Shape: []int{}, Data: []int64{*e.Count}}
				return
			}
			f32[e.Name] = e.Tensor()
		})
	}
	if dup != "" {
		return nil, nil, fmt.Errorf("nn: state dict: name %q appears twice (overlapping part prefixes?)", dup)
	}
	return f32, i64, nil
}

// Save writes m's state_dict to path as safetensors: float32 parameters and
// running statistics, num_batches_tracked as I64 scalars, PyTorch's names
// and shapes, so that in PyTorch
//
//	sd = {k: torch.from_numpy(v) for k, v in safetensors.numpy.load_file(path).items()}
//	model.load_state_dict(sd, strict=True)
//
// restores the same model. metadata is stored in the header.
func Save(path string, m Module, metadata map[string]string) error {
	return SaveParts(path, metadata, Part{Module: m})
}

// SaveParts writes several modules to one file, each under its prefix.
func SaveParts(path string, metadata map[string]string, parts ...Part) error {
	f32, i64, err := StateDict(parts...)
	if err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	if err := safetensors.WriteFileMixed(path, f32, i64, metadata); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	return nil
}

// Load reads a file written by Save (or by PyTorch: a state_dict saved as
// safetensors) into m, strictly: every entry of m must be in the file with
// the same shape, and the file must hold nothing else. Float tensors of any
// stored dtype are converted; num_batches_tracked may be I64, I32 or float.
// It returns the file's metadata. On error m may be partly overwritten.
func Load(path string, m Module) (map[string]string, error) {
	return LoadParts(path, Part{Module: m})
}

// LoadParts is Load for a file holding several modules under prefixes.
func LoadParts(path string, parts ...Part) (map[string]string, error) {
	f, err := safetensors.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	if err := LoadFile(f, parts...); err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	return f.Metadata, nil
}

// LoadFile loads parts from an already parsed safetensors file, strictly
// (see Load).
func LoadFile(f *safetensors.File, parts ...Part) error {
	seen := map[string]bool{}
	var missing, bad []string
	for _, p := range parts {
		p.Module.Visit(p.Prefix, func(e Entry) {
			seen[e.Name] = true
			fe, ok := f.Entry(e.Name)
			if !ok {
				missing = append(missing, e.Name)
				return
			}
			want := e.Shape()
			if !tensor.EqualShapes(fe.Shape, want) {
				// PyTorch writes num_batches_tracked as shape []; accept [1] too.
				if !(e.Count != nil && tensor.Numel(fe.Shape) == 1) {
					bad = append(bad, fmt.Sprintf("%s: file %s%v, model %v", e.Name, fe.DType, fe.Shape, want))
					return
				}
			}
			if e.Count != nil {
				if fe.DType == "I64" || fe.DType == "I32" {
					v, _, err := f.Int64s(e.Name)
					if err != nil {
						bad = append(bad, err.Error())
						return
					}
					*e.Count = v[0]
					return
				}
				t, err := f.Tensor(e.Name)
				if err != nil {
					bad = append(bad, err.Error())
					return
				}
				*e.Count = int64(t.Data[0])
				return
			}
			t, err := f.Tensor(e.Name)
			if err != nil {
				bad = append(bad, err.Error())
				return
			}
			copy(e.Tensor().Data, t.Data)
		})
	}
	var unexpected []string
	for _, n := range f.Names() {
		if !seen[n] {
			unexpected = append(unexpected, n)
		}
	}
	if len(missing)+len(unexpected)+len(bad) == 0 {
		return nil
	}
	sort.Strings(missing)
	var msg []string
	if len(missing) > 0 {
		msg = append(msg, "missing keys: "+strings.Join(missing, ", "))
	}
	if len(unexpected) > 0 {
		msg = append(msg, "unexpected keys: "+strings.Join(unexpected, ", "))
	}
	if len(bad) > 0 {
		msg = append(msg, "mismatches: "+strings.Join(bad, "; "))
	}
	return fmt.Errorf("nn: strict load: %s", strings.Join(msg, "; "))
}

// Save writes the model's three parts to path under "backbone.",
// "projector." and "predictor.", with the spec as JSON in the metadata key
// "spec" (added to metadata).
func (m *Model) Save(path string, metadata map[string]string) error {
	md := map[string]string{}
	for k, v := range metadata {
		md[k] = v
	}
	spec, err := jsonString(m.Spec)
	if err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	md["spec"] = spec
	return SaveParts(path, md, m.Parts()...)
}

// Load restores the model's three parts from a file written by Model.Save
// (strict), returning its metadata.
func (m *Model) Load(path string) (map[string]string, error) {
	return LoadParts(path, m.Parts()...)
}
