// Package runner trains the runs of a pipeline: it turns a resolved
// pipeline.Run into data loading (core/data), a model (core/nn), an
// in-process training step (core/train: loss, optimizer, EMA target), the
// learning-rate and EMA-momentum schedules, analyzers every N steps,
// evaluations (kNN at epoch 0 and every N epochs, linear probe at the end,
// via core/eval) and checkpoints, and records what happens through a
// Recorder. The `sslrun` command (cmd/sslrun) is a thin layer over it.
//
// # Entry points
//
//	pl, err := runner.ParsePipeline(src, nil, os.Stderr) // diagnostics with file:line:col
//	results, err := runner.RunPipeline(ctx, pl, src, opts) // a run, or a study's runs in order
//	res, err := runner.Train(ctx, pl.Runs[0], src, opts)   // one run
//	res, err := runner.Resume(ctx, "checkpoints/<run-id>", opts, os.Stderr)
//	rec, err := runner.Evaluate(ctx, "<run-id>", "knn", opts, os.Stderr)
//
// Errors: a *ConfigError is the user's to fix (exit code 2 in the CLI); a
// *StepError is a failed step (a NaN/Inf loss wraps
// *train.NonFiniteLossError and names the step and the last finite loss);
// ErrInterrupted (wrapped) is a run stopped by its context or by
// Options.StopAfterSteps, with a checkpoint: Resume continues it; a
// *CollapseError stops a run when Options.StopOnCollapse is set.
//
// # Methods are registered, not imported
//
// Core must not import plugins/. Losses and analyzers are looked up by the
// pipeline's block label in a registry filled by the binary (RegisterLoss,
// RegisterAnalyzer; cmd/sslrun/bundled.go registers the bundled ones). A
// LossFactory turns the block's decoded cty configuration into a LossSpec
// (needs a predictor? an EMA target with which tau?) and a train.LossFunc.
// This is the seam for core/plugin: PluginLoss(host, client) is a
// LossFactory over a core/plugin loss client (a go-plugin subprocess or
// Host.InProcess) that forwards each step through the shared arena and
// carries the returned gradients into the host's backward pass;
// registering it under a name is all it takes.
//
// # Determinism and resuming
//
// The model is initialised from the run seed, the loader's order and
// augmentations are functions of (seed, epoch, sample, view), and the
// schedules are functions of the step, so the same pipeline and seed give
// bit-identical losses and weights. A checkpoint holds the weights (a
// PyTorch-loadable safetensors file), the optimizer state, the EMA target
// and the position (epoch, batch, step); resuming from it reproduces the
// uninterrupted run bit for bit, also from the middle of an epoch.
//
// # Run directory
//
// Each run gets <dir of database>/<checkpoint.dir>/<run-id>/ with run.json
// (status, position, latest checkpoint; rewritten atomically, the commit
// point), a snapshot of the pipeline files (resume re-parses it and checks
// the configuration hash) and the checkpoints ckpt-<epoch>.safetensors +
// ckpt-<epoch>.state.safetensors (ckpt-<epoch>-<batch>.* when stopped
// mid-epoch).
//
// # Recording
//
// A Recorder receives metrics (train/loss, train/lr, train/tau per step,
// analyzer metrics with their context), evaluations with their protocol,
// checkpoint artifacts and the final status (RUNNING, FINISHED, FAILED,
// KILLED). LogRecorder writes them to zerolog; DBRecorders writes them to
// core/rundb's run database (and to the log) through a RecorderFactory.
package runner
