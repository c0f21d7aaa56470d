package runner

import (
	"fmt"
	"sort"
	"sync"

	"github.com/zclconf/go-cty/cty"

	"github.com/sslrun/sslrun/core/tensor"
	"github.com/sslrun/sslrun/core/train"
)

// This file is the seam between the runner and the methods it trains. Core
// must not import plugins/, so the bundled losses and analyzers are
// registered by the binary (cmd/sslrun/bundled.go) through RegisterLoss and
// RegisterAnalyzer. Today a registry entry is an in-process Go function;
// when core/plugin's go-plugin transport is wired in, an entry becomes a
// factory that launches (or reuses) a plugin subprocess and returns a
// LossFunc / Analyzer that forwards each step over shared memory + gRPC.
// The runner does not change: it only sees LossFactory and
// AnalyzerFactory.

// TargetKind says whether a loss needs a target network.
type TargetKind int

// Target networks.
const (
	// TargetNone: the loss reads only the online network (SimSiam, SimCLR).
	TargetNone TargetKind = iota
	// TargetEMA: the loss reads an exponential-moving-average copy of the
	// backbone and projector (BYOL); Outputs.T1 and T2 are set.
	TargetEMA
)

// LossSpec is what a loss declares about the network and step it needs.
type LossSpec struct {
	// NeedsPredictor makes the run fail early when the encoder has no
	// predictor (SimSiam, BYOL).
	NeedsPredictor bool
	// Target asks for a target network.
	Target TargetKind
	// TauBase is the EMA momentum at step 0 (TargetEMA only); it follows
	// optim.Tau's cosine schedule to TauFinal over the run.
	TauBase float64
	// TauFinal is the momentum at the end of training (0 means 1).
	TauFinal float64
}

// LossFactory builds a loss from the plugin block's decoded configuration
// (pipeline.Plugin.Config, defaults filled in by the plugin's schema).
type LossFactory func(cfg cty.Value) (LossSpec, train.LossFunc, error)

// Metric is one scalar an analyzer measured. Keys carry the analyzer's
// prefix ("decompose/m_o"); Context says what was measured ({"tensor": "z",
// "scope": "batch", "batch": "256"}) and must be treated as read-only.
type Metric struct {
	Key     string
	Value   float64
	Context map[string]string
}

// StepTensors are the tensors of one training step an analyzer reads. They
// are valid only during the Analyze call (the tape reuses its memory).
type StepTensors struct {
	// Step is the 0-based optimizer step just taken, Epoch its 0-based
	// epoch.
	Step  int64
	Epoch int
	// Z1, Z2 are the projector outputs of the two views [N, d].
	Z1, Z2 *tensor.T
	// P1, P2 are the predictor outputs; nil when the encoder has none.
	P1, P2 *tensor.T
	// T1, T2 are the target network's projections (TargetEMA losses),
	// nil otherwise.
	T1, T2 *tensor.T
	// GradZ1, GradZ2 are dL/dz of the two views (the raw, unnormalized
	// projections), nil if the loss did not reach z.
	GradZ1, GradZ2 *tensor.T
}

// Array is an analyzer's array result (a spectrum), row-major in Shape.
type Array struct {
	Key     string
	Shape   []int
	Data    []float64
	Context map[string]string
}

// Analysis is what one Analyze call returns.
type Analysis struct {
	Metrics []Metric
	// Arrays are recorded with Recorder.LogArray (not logged as lines).
	Arrays []Array
	// Collapsed is the analyzer's verdict that the embeddings collapsed
	// (the run stops when Options.StopOnCollapse is set), with the reason.
	Collapsed bool
	Reason    string
}

// Analyzer measures a training step. It is called from the training
// goroutine every `every` steps and need not be safe for concurrent use.
type Analyzer interface {
	Analyze(in *StepTensors) (Analysis, error)
}

// AnalyzerFactory builds an analyzer from its block's decoded
// configuration (without the host-level `every`).
type AnalyzerFactory func(cfg cty.Value) (Analyzer, error)

var registry = struct {
	sync.RWMutex
	losses    map[string]LossFactory
	analyzers map[string]AnalyzerFactory
}{losses: map[string]LossFactory{}, analyzers: map[string]AnalyzerFactory{}}

// RegisterLoss makes a loss available to pipelines under name (the label of
// `loss "name" {}`). Registering a name twice replaces the first entry, so
// a binary can override a bundled loss.
func RegisterLoss(name string, f LossFactory) {
	registry.Lock()
	defer registry.Unlock()
	registry.losses[name] = f
}

// RegisterAnalyzer makes an analyzer available under name (the label of
// `analyzer "name" {}`).
func RegisterAnalyzer(name string, f AnalyzerFactory) {
	registry.Lock()
	defer registry.Unlock()
	registry.analyzers[name] = f
}

// Losses returns the registered loss names, sorted.
func Losses() []string {
	registry.RLock()
	defer registry.RUnlock()
	return sortedKeys(registry.losses)
}

// Analyzers returns the registered analyzer names, sorted.
func Analyzers() []string {
	registry.RLock()
	defer registry.RUnlock()
	return sortedKeys(registry.analyzers)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func lookupLoss(name string) (LossFactory, error) {
	registry.RLock()
	defer registry.RUnlock()
	f, ok := registry.losses[name]
	if !ok {
		return nil, &ConfigError{Err: fmt.Errorf("loss %q is not available in this binary (registered: %v)", name, sortedKeys(registry.losses))}
	}
	return f, nil
}

func lookupAnalyzer(name string) (AnalyzerFactory, error) {
	registry.RLock()
	defer registry.RUnlock()
	f, ok := registry.analyzers[name]
	if !ok {
		return nil, &ConfigError{Err: fmt.Errorf("analyzer %q is not available in this binary (registered: %v)", name, sortedKeys(registry.analyzers))}
	}
	return f, nil
}
