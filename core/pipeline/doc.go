// Package pipeline reads sslrun pipeline files: HCL (or HCL's JSON syntax)
// describing a training run or a study of several runs, and resolves them
// into typed Go values the runner uses directly.
//
// Decoding has two phases, like Terraform and Nomad. The host's own blocks
// (run, dataset, augment, encoder, optimizer, schedule, evaluate,
// checkpoint, study) are decoded with gohcl into this package's types;
// plugin blocks (`loss "simsiam" {}`, `analyzer "decompose" {}`) are handed
// to hcldec with the spec the plugin declares, obtained from a
// SchemaProvider. Either way every error carries its source range, and a
// whole file is checked in one pass.
//
// Variables (`-var`, `-var-file`), locals and go-cty's stdlib functions are
// available to every expression. A study expands into one Run per variant
// (named runs crossed with a matrix), each with its canonical JSON, sha256
// hash and flattened params for the run database.
//
// docs/pipelines.md is the reference of every block and argument.
package pipeline
