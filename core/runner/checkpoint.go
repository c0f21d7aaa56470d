package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/sslrun/sslrun/core/plugin"
)

// A run directory holds:
//
//	run.json                 the run's state (runState), rewritten atomically:
//	                         the data-order state (epoch, batch, step) and
//	                         the latest checkpoint's name
//	pipeline/<file>          copies of the pipeline files (and their lock
//	                         files), for resume and the record
//	ckpt-<E>.safetensors     the encoder plugin's Save after epoch E: its
//	                         weights (PyTorch state_dict names under
//	                         backbone., projector., predictor.), the EMA
//	                         target (target.), the optimizer state (optim.)
//	ckpt-<E>-<B>.safetensors the same for a run stopped mid-epoch E+1 after
//	                         B batches
//
// The loader's order and augmentations are functions of (seed, epoch,
// sample, view) and the schedules of the step, so the position in run.json
// is all the host state a resumed run needs. run.json is the commit point:
// the checkpoint is written before run.json names it, so a crash at any
// moment leaves run.json pointing at a complete checkpoint.

const (
	stateFile     = "run.json"
	stateVersion  = 2
	weightsSuffix = ".safetensors"
	// oldStateSuffix is the optimizer-state file of version 1 run
	// directories, removed with their checkpoints.
	oldStateSuffix = ".state.safetensors"
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

// saveCheckpoint has the encoder save a checkpoint at p into dir and
// returns its base name.
func saveCheckpoint(ctx context.Context, enc plugin.Encoder, dir string, p position) (string, error) {
	name := ckptName(p)
	if err := enc.Save(ctx, filepath.Join(dir, name+weightsSuffix)); err != nil {
		return "", fmt.Errorf("checkpoint %s: %w", name, err)
	}
	return name, nil
}

// loadCheckpoint has the encoder load checkpoint name of dir.
func loadCheckpoint(ctx context.Context, enc plugin.Encoder, dir, name string) error {
	if err := enc.Load(ctx, filepath.Join(dir, name+weightsSuffix)); err != nil {
		return fmt.Errorf("checkpoint %s: %w", name, err)
	}
	return nil
}

// removeCheckpoint deletes a checkpoint's files; missing files are not an
// error.
func removeCheckpoint(dir, name string) error {
	var errs []error
	for _, suf := range []string{weightsSuffix, oldStateSuffix} {
		if err := os.Remove(filepath.Join(dir, name+suf)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
