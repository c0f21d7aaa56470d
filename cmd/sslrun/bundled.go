package main

import (
	"github.com/sslrun/sslrun/core/plugin"
	"github.com/sslrun/sslrun/plugins/byol"
	"github.com/sslrun/sslrun/plugins/decompose"
	"github.com/sslrun/sslrun/plugins/encoder"
	"github.com/sslrun/sslrun/plugins/simclr"
	"github.com/sslrun/sslrun/plugins/simsiam"
)

// registerBundled registers the plugins compiled into this binary. The
// runner finds them by name (core must not import plugins/) and starts
// each as a subprocess of this binary, re-executed to serve it (see main
// and plugin.ServeIfBundled), or in process with `sslrun run
// --in-process`. The encoder is the one the runner trains; the others are
// named by the pipeline's `loss` and `analyzer` blocks.
func registerBundled() {
	plugin.Bundled["encoder"] = encoder.Plugin
	plugin.Bundled["simsiam"] = simsiam.Plugin
	plugin.Bundled["simclr"] = simclr.NTXentPlugin
	plugin.Bundled["triplet"] = simclr.TripletPlugin
	plugin.Bundled["byol"] = byol.Plugin
	plugin.Bundled["decompose"] = decompose.Plugin
}
