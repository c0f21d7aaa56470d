// Package encoder is the builtin encoder plugin that sslrun bundles: a
// core/nn model (backbone, projector, predictor, and for BYOL-style losses
// an EMA target network) with its optimizer, behind the plugin.Encoder
// interface.
//
// The implementation is core/plugin/nnencoder (core/runner's tests train
// with it too, and core must not import plugins/); its package doc
// describes the options Build reads, the outputs, and the checkpoint
// format. This package is the plugin as the binary registers it.
package encoder

import (
	"github.com/sslrun/sslrun/core/plugin"
	"github.com/sslrun/sslrun/core/plugin/nnencoder"
)

// Name and Version identify the plugin.
const (
	Name    = nnencoder.Name
	Version = nnencoder.Version
)

// Encoder implements plugin.Encoder; see core/plugin/nnencoder.
type Encoder = nnencoder.Encoder

// Plugin returns the encoder plugin, for plugin.Bundled, Host.InProcess or
// plugin.Serve.
func Plugin() plugin.Plugin { return nnencoder.Plugin() }

// New returns an encoder awaiting Build.
func New() *Encoder { return nnencoder.New() }

// ModelSpec resolves the network an EncoderSpec describes, without
// building it.
var ModelSpec = nnencoder.ModelSpec
