package runner

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/sslrun/sslrun/core/nn"
	"github.com/sslrun/sslrun/core/safetensors"
	"github.com/sslrun/sslrun/core/tensor"
	"github.com/sslrun/sslrun/core/train"
)

// A run directory holds:
//
//	run.json                      the run's state (runState), rewritten atomically
//	pipeline/<file>               copies of the pipeline files, for the record
//	ckpt-<E>.safetensors          model weights after epoch E (nn.Model.Save:
//	                              loads in PyTorch with load_state_dict strict)
//	ckpt-<E>.state.safetensors    optimizer state ("optim."), EMA target
//	                              ("target."), and the position counters
//	ckpt-<E>-<B>[.state].safetensors  the same for a run stopped mid-epoch
//	                              E+1 after B batches
//
// run.json is the commit point: both files of a checkpoint are written
// (each atomically, state first) before run.json names them, so a crash at
// any moment leaves run.json pointing at a complete checkpoint.

const (
	stateFile     = "run.json"
	stateVersion  = 1
	weightsSuffix = ".safetensors"
	extraSuffix   = ".state.safetensors"
	optimPrefix   = "optim."
	targetPrefix  = "target."
)

// Counter names in the state file (int64, shape [1]).
const (
	ctrStep  = "run.step"
	ctrEpoch = "run.epoch"
	ctrBatch = "run.batch"
)

// runState is run.json: what `sslrun resume` needs to continue a run.
type runState struct {
	Version int    `json:"version"`
	ID      string `json:"id"`
	Study   string `json:"study,omitempty"`
	Name    string `json:"name"`
	// Files are the pipeline files (absolute paths) and the variables the
	// run was parsed with: resume parses them again and checks Hash.
	Files    []string          `json:"files"`
	Vars     map[string]string `json:"vars,omitempty"`
	VarFiles []string          `json:"var_files,omitempty"`
	Hash     string            `json:"hash"`
	Seed     int64             `json:"seed"`
	// WorkDir is the directory relative pipeline paths were resolved
	// against; resume uses it again.
	WorkDir string `json:"workdir"`
	Status  Status `json:"status"`
	// Host and PID identify the process training the run (the last one
	// to start or resume it): resume refuses a RUNNING run whose process
	// is alive.
	Host string `json:"host,omitempty"`
	PID  int    `json:"pid,omitempty"`
	// Resumable is true for a run stopped on request with a checkpoint.
	Resumable bool `json:"resumable"`
	// RecorderID is the Recorder's id of the run (a database run id).
	RecorderID string `json:"recorder_id,omitempty"`
	// Checkpoint is the latest checkpoint's base name ("ckpt-2"), empty
	// before the first; Epoch, Batch and Step are its position: Epoch
	// completed epochs plus Batch batches of the next, Step optimizer steps.
	Checkpoint string `json:"checkpoint,omitempty"`
	Epoch      int    `json:"epoch"`
	Batch      int    `json:"batch"`
	Step       int64  `json:"step"`
	// EpochLossSum and EpochLossCount accumulate the losses of the
	// interrupted epoch's first Batch steps, so that a resumed run logs the
	// same epoch mean as an uninterrupted one.
	EpochLossSum   float64 `json:"epoch_loss_sum,omitempty"`
	EpochLossCount int     `json:"epoch_loss_count,omitempty"`
	// Periodic lists the periodic checkpoints still on disk, oldest first
	// (checkpoint.keep prunes it).
	Periodic []string  `json:"periodic,omitempty"`
	Error    string    `json:"error,omitempty"`
	Created  time.Time `json:"created"`
	Updated  time.Time `json:"updated"`
}

// writeState writes run.json atomically.
func writeState(dir string, st *runState) error {
	st.Version = stateVersion
	st.Updated = time.Now().UTC()
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("write run state: %w", err)
	}
	return writeAtomic(filepath.Join(dir, stateFile), append(b, '\n'))
}

// readState reads a run directory's run.json.
func readState(dir string) (*runState, error) {
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return nil, fmt.Errorf("read run state: %w", err)
	}
	var st runState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("read run state %s: %w", filepath.Join(dir, stateFile), err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("run state %s: version %d, this binary reads %d", filepath.Join(dir, stateFile), st.Version, stateVersion)
	}
	return &st, nil
}

// writeAtomic writes b to path through a synced temporary file and a rename.
func writeAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// position is where training stands: epoch completed epochs plus batch
// batches of the next one, step optimizer steps in all.
type position struct {
	Epoch, Batch int
	Step         int64
}

// ckptName is the base name of the checkpoint at p.
func ckptName(p position) string {
	if p.Batch == 0 {
		return "ckpt-" + strconv.Itoa(p.Epoch)
	}
	return fmt.Sprintf("ckpt-%d-%d", p.Epoch, p.Batch)
}

// saveCheckpoint writes the two files of a checkpoint at p into dir and
// returns its base name.
func saveCheckpoint(dir string, s *train.Step, p position, meta map[string]string) (string, error) {
	name := ckptName(p)
	md := map[string]string{
		"step": strconv.FormatInt(p.Step, 10), "epoch": strconv.Itoa(p.Epoch), "batch": strconv.Itoa(p.Batch),
	}
	for k, v := range meta {
		md[k] = v
	}
	f32, i64 := s.Opt.Save(optimPrefix)
	if f32 == nil {
		f32 = map[string]*tensor.T{}
	}
	if s.Target != nil {
		tf, ti, err := nn.StateDict(targetParts(s.Target)...)
		if err != nil {
			return "", fmt.Errorf("checkpoint %s: %w", name, err)
		}
		for k, v := range tf {
			f32[k] = v
		}
		for k, v := range ti {
			i64[k] = v
		}
	}
	i64[ctrStep] = safetensors.Int64{Shape: []int{1}, Data: []int64{p.Step}}
	i64[ctrEpoch] = safetensors.Int64{Shape: []int{1}, Data: []int64{int64(p.Epoch)}}
	i64[ctrBatch] = safetensors.Int64{Shape: []int{1}, Data: []int64{int64(p.Batch)}}
	if err := safetensors.WriteFileMixed(filepath.Join(dir, name+extraSuffix), f32, i64, md); err != nil {
		return "", fmt.Errorf("checkpoint %s: %w", name, err)
	}
	if err := s.Model.Save(filepath.Join(dir, name+weightsSuffix), md); err != nil {
		return "", fmt.Errorf("checkpoint %s: %w", name, err)
	}
	return name, nil
}

// targetParts are the EMA target's modules under the "target." prefix (it
// has no predictor).
func targetParts(t *nn.Model) []nn.Part {
	return []nn.Part{{Prefix: targetPrefix + "backbone.", Module: t.Backbone}, {Prefix: targetPrefix + "projector.", Module: t.Projector}}
}

// loadWeights restores model weights from a checkpoint (strict).
func loadWeights(dir, name string, m *nn.Model) error {
	if _, err := m.Load(filepath.Join(dir, name+weightsSuffix)); err != nil {
		return fmt.Errorf("checkpoint %s: %w", name, err)
	}
	return nil
}

// loadState restores the optimizer and the EMA target from a checkpoint's
// state file and returns its position.
func loadState(dir, name string, s *train.Step) (position, error) {
	path := filepath.Join(dir, name+extraSuffix)
	f, err := safetensors.ReadFile(path)
	if err != nil {
		return position{}, fmt.Errorf("checkpoint %s: %w", name, err)
	}
	var p position
	for _, c := range []struct {
		name string
		set  func(int64)
	}{
		{ctrStep, func(v int64) { p.Step = v }},
		{ctrEpoch, func(v int64) { p.Epoch = int(v) }},
		{ctrBatch, func(v int64) { p.Batch = int(v) }},
	} {
		v, _, err := f.Int64s(c.name)
		if err != nil || len(v) != 1 {
			return position{}, fmt.Errorf("checkpoint %s: counter %s: missing or malformed (%v)", name, c.name, err)
		}
		c.set(v[0])
	}
	if err := s.Opt.Load(f, optimPrefix); err != nil {
		return position{}, fmt.Errorf("checkpoint %s: %w", name, err)
	}
	if s.Target != nil {
		if err := loadSubset(f, targetParts(s.Target)...); err != nil {
			return position{}, fmt.Errorf("checkpoint %s: target network: %w", name, err)
		}
	}
	return p, nil
}

// loadSubset copies parts' entries from f, which may hold other entries
// too (nn.LoadFile is strict about extra names, and the state file holds
// the optimizer's state next to the target network).
func loadSubset(f *safetensors.File, parts ...nn.Part) error {
	for _, p := range parts {
		for _, e := range nn.Entries(p.Module, p.Prefix) {
			if e.Count != nil {
				v, _, err := f.Int64s(e.Name)
				if err != nil {
					return err
				}
				if len(v) != 1 {
					return fmt.Errorf("%s: %d values, want 1", e.Name, len(v))
				}
				*e.Count = v[0]
				continue
			}
			dst := e.Tensor()
			t, err := f.Tensor(e.Name)
			if err != nil {
				return err
			}
			if len(t.Data) != len(dst.Data) {
				return fmt.Errorf("%s: %d values, want %d", e.Name, len(t.Data), len(dst.Data))
			}
			copy(dst.Data, t.Data)
		}
	}
	return nil
}

// removeCheckpoint deletes both files of a checkpoint; missing files are
// not an error.
func removeCheckpoint(dir, name string) error {
	var errs []error
	for _, suf := range []string{weightsSuffix, extraSuffix} {
		if err := os.Remove(filepath.Join(dir, name+suf)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
