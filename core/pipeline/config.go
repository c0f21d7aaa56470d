package pipeline

import (
	"encoding/json"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"

	"github.com/sslrun/sslrun/core/nn"
)

// Run is one fully resolved run: what the runner trains. Every default is
// filled in; Config is the part that determines the training and is what
// JSON and Hash are computed from.
type Run struct {
	// Study is the study's name, empty for a single-run pipeline.
	Study string
	// Name is the run's name: the run block's name for a single run, or
	// derived from the variant for a study ("simsiam-seed1").
	Name string
	// Matrix holds the study's matrix values of this run, by axis
	// (int64, float64, bool or string).
	Matrix map[string]any
	// Config is the resolved configuration.
	Config Config
	// JSON is Config as canonical JSON: struct fields in declaration
	// order, map keys sorted, no insignificant space.
	JSON []byte
	// Hash is the hex sha256 of JSON.
	Hash string
	// Params is Config flattened to dotted keys ("optimizer.lr") with
	// typed values (int64, float64, bool, string); lists of scalars are
	// their JSON text. It is what the run database stores as params.
	Params map[string]any
}

// Config is the resolved configuration of one run. Its JSON form (field
// tags) is stable: renaming a tag changes every run's hash.
type Config struct {
	Seed      int64             `json:"seed"`
	Epochs    int               `json:"epochs"`
	BatchSize int               `json:"batch_size"`
	Database  string            `json:"database"`
	Threads   int               `json:"threads"`
	Tags      map[string]string `json:"tags"`
	// Train is the self-supervised training set (the dataset labelled
	// "train").
	Train Dataset `json:"train"`
	// Datasets are all declared datasets by label, Train included.
	Datasets    map[string]Dataset `json:"datasets"`
	Augment     Augment            `json:"augment"`
	Encoder     Encoder            `json:"encoder"`
	Loss        Plugin             `json:"loss"`
	Optimizer   Optimizer          `json:"optimizer"`
	Schedule    Schedule           `json:"schedule"`
	Analyzers   []Analyzer         `json:"analyzers"`
	Evaluations []Evaluation       `json:"evaluations"`
	Checkpoint  Checkpoint         `json:"checkpoint"`
}

// Dataset sources.
const (
	SourceMNIST        = "mnist"
	SourceFashionMNIST = "fashion-mnist"
	SourceCIFAR10      = "cifar10"
	SourceCIFAR100     = "cifar100"
	SourceFolder       = "folder"
)

// Dataset is one `dataset "label" {}` block. The runner maps it onto
// core/data: LoadMNIST, LoadFashionMNIST, LoadCIFAR10, LoadCIFAR100 or
// LoadFolder.
type Dataset struct {
	Name   string `json:"name"`
	Source string `json:"source"`
	// Split is "train" or "test" (ignored by folder).
	Split string `json:"split"`
	// Dir overrides the loader's default search path; empty keeps it.
	Dir string `json:"dir"`
	// Coarse selects CIFAR-100's 20 superclasses.
	Coarse bool `json:"coarse"`
	// Channels, Height, Width are a folder's image shape.
	Channels int `json:"channels"`
	Height   int `json:"height"`
	Width    int `json:"width"`
	// Limit keeps only the first Limit samples (0: all), for quick runs.
	Limit int `json:"limit"`
	// Range is where the block is (not part of the JSON).
	Range hcl.Range `json:"-"`
}

// Encoder is the resolved `encoder {}` block.
type Encoder struct {
	Backbone  nn.BackboneSpec `json:"backbone"`
	Projector nn.HeadSpec     `json:"projector"`
	Predictor nn.HeadSpec     `json:"predictor"`
	// FeatureDim is the backbone's output size; the projector's Dims
	// start with it.
	FeatureDim int       `json:"feature_dim"`
	Range      hcl.Range `json:"-"`
}

// ModelSpec returns the nn.ModelSpec to build the network from.
func (e Encoder) ModelSpec() nn.ModelSpec {
	return nn.ModelSpec{Backbone: e.Backbone, Projector: e.Projector, Predictor: e.Predictor}
}

// Plugin is a resolved plugin block: its name and the configuration the
// plugin's schema decoded.
type Plugin struct {
	Name string `json:"name"`
	// Config is the plugin's configuration as decoded by its schema, with
	// the schema's defaults filled in.
	Config cty.Value `json:"-"`
	// ConfigJSON is Config as JSON (cty's JSON encoding), what plugins
	// receive over the wire.
	ConfigJSON json.RawMessage `json:"config"`
	Range      hcl.Range       `json:"-"`
}

// Analyzer is an `analyzer "name" {}` block.
type Analyzer struct {
	Plugin
	// Every is the period in optimizer steps (host-level argument,
	// removed from the plugin's body before its schema sees it).
	Every int `json:"every"`
}

// MarshalJSON keeps the analyzer's fields flat.
func (a Analyzer) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Name   string          `json:"name"`
		Every  int             `json:"every"`
		Config json.RawMessage `json:"config"`
	}{a.Name, a.Every, a.ConfigJSON})
}

// Optimizer is the resolved `optimizer {}` block.
type Optimizer struct {
	// Name is "sgd", "lars" or "adamw".
	Name string `json:"name"`
	// BaseLR is the lr as written; LR is what the optimizer uses at the
	// schedule's peak: BaseLR*BatchSize/ReferenceBatch with linear
	// scaling, BaseLR otherwise.
	BaseLR         float64 `json:"base_lr"`
	LRScaling      string  `json:"lr_scaling"`
	ReferenceBatch int     `json:"reference_batch"`
	LR             float64 `json:"lr"`
	Momentum       float64 `json:"momentum"`
	Nesterov       bool    `json:"nesterov"`
	WeightDecay    float64 `json:"weight_decay"`
	// NoDecayBiasNorm excludes biases and norm parameters from weight decay.
	NoDecayBiasNorm bool `json:"no_decay_bias_norm"`
	// PredictorFixedLR keeps the predictor at LR for the whole run
	// (SimSiam's "fixed predictor lr", optim.Group.Static).
	PredictorFixedLR bool `json:"predictor_fixed_lr"`
	// LARS options.
	Eta             float64 `json:"eta"`
	ClipLR          bool    `json:"clip_lr"`
	ExcludeBiasNorm bool    `json:"exclude_bias_norm"`
	// AdamW options (Eps also LARS's).
	Beta1 float64   `json:"beta1"`
	Beta2 float64   `json:"beta2"`
	Eps   float64   `json:"eps"`
	Range hcl.Range `json:"-"`
}

// Schedule is the resolved `schedule {}` block.
type Schedule struct {
	// Name is "warmup_cosine" or "constant".
	Name          string  `json:"name"`
	WarmupEpochs  float64 `json:"warmup_epochs"`
	WarmupStartLR float64 `json:"warmup_start_lr"`
	MinLR         float64 `json:"min_lr"`
	// PerStep advances the schedule every optimizer step (solo-learn's
	// interval "step") rather than every epoch.
	PerStep bool      `json:"per_step"`
	Range   hcl.Range `json:"-"`
}

// Evaluation is an `evaluate "knn" {}` or `evaluate "linear" {}` block.
type Evaluation struct {
	// Kind is "knn" or "linear".
	Kind string `json:"kind"`
	// Train and Test name the labelled datasets (fit / memory bank and
	// evaluation set).
	Train string `json:"train"`
	Test  string `json:"test"`
	// Feature is the tensor evaluated: "backbone" (default) or "z".
	Feature string `json:"feature"`
	// EveryEpochs evaluates after every n-th epoch (0: not periodically).
	EveryEpochs int `json:"every_epochs"`
	// AtStart evaluates before training (epoch 0); AtEnd after the last
	// epoch.
	AtStart bool `json:"at_start"`
	AtEnd   bool `json:"at_end"`
	// kNN: K neighbours, Temperature of the weighted vote.
	K           int     `json:"k,omitempty"`
	Temperature float64 `json:"temperature,omitempty"`
	// Linear probe: training epochs, batch size, lr, momentum, weight decay.
	Epochs      int       `json:"epochs,omitempty"`
	BatchSize   int       `json:"batch_size,omitempty"`
	LR          float64   `json:"lr,omitempty"`
	Momentum    float64   `json:"momentum,omitempty"`
	WeightDecay float64   `json:"weight_decay,omitempty"`
	Range       hcl.Range `json:"-"`
}

// Checkpoint is the resolved `checkpoint {}` block.
type Checkpoint struct {
	// EveryEpochs saves after every n-th epoch (0: only at the end).
	EveryEpochs int `json:"every_epochs"`
	// Keep is how many periodic checkpoints are kept (0: all).
	Keep int `json:"keep"`
	// Dir is where checkpoints go, relative to the database's directory.
	Dir   string    `json:"dir"`
	Range hcl.Range `json:"-"`
}
