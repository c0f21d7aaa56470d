// Command sslrun trains and studies self-supervised learning methods from
// HCL pipeline files: `sslrun run`, `validate`, `fmt`, `resume`, `eval`,
// `plugins` and `version`. The commands only parse flags and call package
// core/runner; `sslrun --help` lists them with examples.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/sslrun/sslrun/core/plugin"
)

func main() {
	registerBundled()
	// A host re-executes this binary to serve a bundled plugin (Packer's
	// pattern), so a fresh clone needs no separate plugin builds.
	plugin.ServeIfBundled()
	// The first SIGINT/SIGTERM cancels the context: the runner stops after
	// the current step and writes a checkpoint. Restoring the default
	// handling right away lets a second Ctrl-C kill the process.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
		fmt.Fprintln(os.Stderr, "\nInterrupt received: stopping after the current step and writing a checkpoint. Press Ctrl-C again to abort immediately.")
	}()
	code := execute(ctx, os.Args[1:], env{stdout: os.Stdout, stderr: os.Stderr, tty: isTerminal(os.Stderr)})
	stop()
	os.Exit(code)
}
