// Package runner trains the runs of a pipeline: it turns a resolved
// pipeline.Run into data loading (core/data), a training step driven
// through plugins (core/plugin: the encoder, the loss and the analyzers),
// the learning-rate and EMA-momentum schedules, evaluations (kNN at epoch 0
// and every N epochs, linear probe at the end, via core/eval on the
// encoder's Embed) and checkpoints, and records what happens through a
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
// *StepError is a failed step (a plugin failure wraps its
// *plugin.CallError; a NaN/Inf loss wraps
// *train.NonFiniteLossError and names the step and the last finite loss);
// ErrInterrupted (wrapped) is a run stopped by its context or by
// Options.StopAfterSteps, with a checkpoint: Resume continues it; a
// *CollapseError stops a run when Options.StopOnCollapse is set.
//
// # Plugins
//
// Core must not import plugins/. The runner starts plugins by name: the
// encoder ("encoder", EncoderPlugin), the loss and the analyzers the
// pipeline's blocks name. A name in plugin.Bundled (filled by the binary:
// cmd/sslrun/bundled.go) is started as a subprocess re-executing the binary
// (plugin.Bundled, plugin.ServeIfBundled) or, with Options.InProcess, in
// this process through the same interfaces (Host.InProcess). Any other name
// is an external executable (a path, or sslrun-plugin-NAME in a plugins
// directory: Options.PluginDirs, then ./plugins beside the pipeline) whose
// sha256 must be pinned in the lock file beside the pipeline
// (plugin.LockPath; `sslrun plugins lock`) and is verified before exec.
// Pipelines are validated against the plugins' own schemas (Schemas, a
// pipeline.SchemaProvider over their ConfigSchema calls).
//
// A step is Encoder.Forward on the two views (copied once into the host's
// shared arena), Loss.Compute on the outputs the loss's spec names,
// Analyzer.Observe (when due) on the outputs and the loss's gradients
// ("grad/<name>"), and Encoder.Backward with those gradients carrying the
// optimizer step (plugin.BackwardStep) with the host's lr (GroupLR fixes
// the predictor's, SimSiam's recipe) and, for an EMA target, tau: one RPC
// per plugin per step, two for the encoder, whose forward and backward
// straddle the loss. The host owns the schedules, the data order, the
// checkpoints (Encoder.Save/Load plus the position in run.json) and the
// evaluations. A plugin that fails, exits or hangs (Options.CallTimeout)
// fails the run with a *StepError wrapping the plugin.CallError (plugin,
// pid, call, step); every plugin process and the arena are released when a
// run ends, however it ends.
//
// # Determinism and resuming
//
// The model is initialised from the run seed, the loader's order and
// augmentations are functions of (seed, epoch, sample, view), and the
// schedules are functions of the step, so the same pipeline and seed give
// bit-identical losses and weights, in process or with subprocess plugins
// (which get the host's thread count, plugin.EnvThreads). A checkpoint
// holds the encoder's weights, EMA target and optimizer state; with the
// position (epoch, batch, step) from run.json, resuming reproduces the
// uninterrupted run bit for bit, also from the middle of an epoch.
//
// # Run directory
//
// Each run gets <dir of database>/<checkpoint.dir>/<run-id>/ with run.json
// (status, position, latest checkpoint; rewritten atomically, the commit
// point), a snapshot of the pipeline files (resume re-parses it and checks
// the configuration hash) and the checkpoints ckpt-<epoch>.safetensors
// (ckpt-<epoch>-<batch>.safetensors when stopped mid-epoch).
//
// # Recording
//
// A Recorder receives metrics (train/loss, train/lr, train/tau per step,
// analyzer metrics with their context), evaluations with their protocol,
// checkpoint artifacts and the final status (RUNNING, FINISHED, FAILED,
// KILLED). LogRecorder writes them to zerolog; DBRecorders writes them to
// core/rundb's run database (and to the log) through a RecorderFactory.
package runner
