package runner

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/rs/zerolog"
	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"

	"github.com/sslrun/sslrun/core/parallel"
	"github.com/sslrun/sslrun/core/pipeline"
	"github.com/sslrun/sslrun/core/plugin"
)

// Core must not import plugins/: the runner finds plugins by name. A name
// registered in plugin.Bundled (the binary fills it: cmd/sslrun/bundled.go)
// is a bundled plugin, run by re-executing this binary (plugin.Bundled's
// re-exec, Packer's pattern) or, with Options.InProcess, in this process
// through the same interfaces. Any other name is an external plugin: an
// executable named by path in the pipeline or found as
// sslrun-plugin-<name> in a plugins directory, whose sha256 must be pinned
// in the lock file beside the pipeline (plugin.LockPath) and is verified
// before exec.

// pluginEnv resolves plugin names for one invocation.
type pluginEnv struct {
	inProcess bool
	exe       string
	timeout   time.Duration
	dirs      []string
	lock      *plugin.Lock
	lockPath  string
	pipeline  string // the first pipeline file, for messages
	// noPipeline: no pipeline file, so no lock file (sslrun plugins
	// without --pipeline).
	noPipeline bool
	log        zerolog.Logger
}

// PluginDirs are the directories searched for external plugins: extra,
// then "plugins" beside the first pipeline file.
func PluginDirs(files []string, extra []string) []string {
	dirs := append([]string(nil), extra...)
	if len(files) > 0 {
		dirs = append(dirs, filepath.Join(filepath.Dir(files[0]), "plugins"))
	}
	return dirs
}

// newPluginEnv reads the lock files of the pipeline files (merged; the
// first file's names the lock file in messages).
func newPluginEnv(opts Options, files []string) (*pluginEnv, error) {
	e := &pluginEnv{inProcess: opts.InProcess, exe: opts.Executable, timeout: opts.CallTimeout,
		dirs: PluginDirs(files, opts.PluginDirs), log: opts.Log, lock: &plugin.Lock{Plugins: map[string]plugin.LockEntry{}}}
	for i, f := range files {
		p := plugin.LockPath(f)
		if i == 0 {
			e.lockPath, e.pipeline = p, f
		}
		l, err := plugin.ReadLock(p)
		if err != nil {
			return nil, &ConfigError{Err: err}
		}
		for k, v := range l.Plugins {
			if _, ok := e.lock.Plugins[k]; !ok {
				e.lock.Plugins[k] = v
			}
		}
	}
	if e.lockPath == "" {
		e.lockPath, e.pipeline, e.noPipeline = "the pipeline's lock file", "PIPELINE", true
	}
	return e, nil
}

// pinnedPath returns the lock entry whose executable is path.
func (e *pluginEnv) pinnedPath(path string) (string, bool) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", false
	}
	for k, v := range e.lock.Plugins {
		if p, err := filepath.Abs(v.Path); err == nil && p == abs {
			return k, true
		}
	}
	return "", false
}

// external resolves an external plugin's executable and pinned checksum.
func (e *pluginEnv) external(name string) (path string, sum []byte, err error) {
	path, rerr := plugin.Resolve(name, e.dirs...)
	key := name
	entry, pinned := e.lock.Plugins[key]
	if !pinned && rerr == nil && strings.ContainsRune(name, '/') {
		// A plugin named by path may be pinned under its name: find the
		// entry for the same executable.
		if k, ok := e.pinnedPath(path); ok {
			key, entry, pinned = k, e.lock.Plugins[k], true
		}
	}
	if rerr != nil {
		if !pinned || entry.Path == "" {
			return "", nil, fmt.Errorf("%w: %v", pipeline.ErrUnknownPlugin, rerr)
		}
		path = entry.Path
	}
	if !pinned {
		if e.noPipeline {
			return "", nil, &ConfigError{Err: fmt.Errorf("plugin %q (%s) is not pinned: give the pipeline whose lock file pins it (--pipeline FILE), or pin it with `sslrun plugins lock PIPELINE %s`",
				name, path, name)}
		}
		return "", nil, &ConfigError{Err: fmt.Errorf("plugin %q (%s) is not pinned in %s: run `sslrun plugins lock %s %s` to record its sha256",
			name, path, e.lockPath, e.pipeline, name)}
	}
	sum, err = e.lock.Checksum(key)
	if err != nil {
		return "", nil, &ConfigError{Err: fmt.Errorf("%s: %w", e.lockPath, err)}
	}
	return path, sum, nil
}

// checksum is the hex sha256 of the executable plugin name runs from:
// the binary this process re-executes (or is, in process) for a bundled
// plugin, the lock file's pinned checksum (verified before exec) for an
// external one. It is "" when the binary cannot be read.
func (e *pluginEnv) checksum(name string) string {
	if _, ok := plugin.Bundled[name]; !ok {
		_, sum, err := e.external(name)
		if err != nil {
			return ""
		}
		return hex.EncodeToString(sum)
	}
	exe := e.exe
	if exe == "" || e.inProcess {
		var err error
		if exe, err = os.Executable(); err != nil {
			e.log.Warn().Err(err).Msg("plugin provenance: cannot find this executable")
			return ""
		}
	}
	sum, err := exeChecksum(exe)
	if err != nil {
		e.log.Warn().Err(err).Msg("plugin provenance: cannot hash the executable")
	}
	return sum
}

// exeSums caches executables' checksums by path: a binary does not change
// under a running process, and hashing it per run would cost more than a
// step.
var exeSums sync.Map // path -> string

// exeChecksum returns the hex sha256 of the file at path.
func exeChecksum(path string) (string, error) {
	if v, ok := exeSums.Load(path); ok {
		return v.(string), nil
	}
	sum, err := plugin.HashFile(path)
	if err != nil {
		return "", err
	}
	h := hex.EncodeToString(sum)
	exeSums.Store(path, h)
	return h, nil
}

// launch starts plugin name: a bundled one in process or by re-executing
// this binary, an external one after resolving it and its pinned checksum
// (whose errors wrap pipeline.ErrUnknownPlugin or are *ConfigErrors).
func (e *pluginEnv) launch(ctx context.Context, h *plugin.Host, name string) (*plugin.Client, error) {
	env := []string{plugin.EnvThreads + "=" + strconv.Itoa(parallel.Threads())}
	if ctor, ok := plugin.Bundled[name]; ok {
		if e.inProcess {
			return h.InProcess(ctor())
		}
		return h.Launch(ctx, plugin.LaunchSpec{Name: name, Bundled: name, Executable: e.exe, CallTimeout: e.timeout, Env: env})
	}
	path, sum, err := e.external(name)
	if err != nil {
		return nil, err
	}
	return h.Launch(ctx, plugin.LaunchSpec{Name: name, Path: path, SHA256: sum, CallTimeout: e.timeout, Env: env})
}

// start starts plugin name and checks that it serves kind.
func (e *pluginEnv) start(ctx context.Context, h *plugin.Host, name string, kind plugin.Kind) (*plugin.Client, error) {
	c, err := e.launch(ctx, h, name)
	var ce *ConfigError
	switch {
	case errors.Is(err, pipeline.ErrUnknownPlugin):
		return nil, &ConfigError{Err: fmt.Errorf("%s plugin %q: not bundled in this binary and %v", kind, name, err)}
	case errors.As(err, &ce):
		return nil, err
	case errors.Is(err, plugin.ErrChecksum):
		return nil, &ConfigError{Err: err}
	case err != nil:
		return nil, fmt.Errorf("start %s plugin %q: %w", kind, name, err)
	}
	if !c.Has(kind) {
		c.Close()
		return nil, &ConfigError{Err: fmt.Errorf("plugin %q serves %v, not %s", name, c.Info().Kinds, kind)}
	}
	return c, nil
}

// Schemas is a pipeline.SchemaProvider over the plugins themselves: each
// plugin a pipeline names is started (as a training run would start it)
// and asked for its schema with its ConfigSchema call. Close it after
// parsing: it stops the plugins it started.
type Schemas struct {
	env *pluginEnv

	mu      sync.Mutex
	host    *plugin.Host
	clients map[string]*plugin.Client
	errs    map[string]error
}

// NewSchemas returns the live schema provider for pipeline files: bundled
// plugins as opts says (subprocesses, or in process with InProcess),
// external ones found and verified as a run does.
func NewSchemas(opts Options, files []string) (*Schemas, error) {
	env, err := newPluginEnv(opts, files)
	if err != nil {
		return nil, err
	}
	return &Schemas{env: env, clients: map[string]*plugin.Client{}, errs: map[string]error{}}, nil
}

// client starts (once) and returns plugin name.
func (s *Schemas) client(name string) (*plugin.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.clients[name]; ok {
		return c, nil
	}
	if err, ok := s.errs[name]; ok {
		return nil, err
	}
	if s.host == nil {
		h, err := plugin.NewHost(plugin.HostOptions{Logger: &s.env.log, ArenaBytes: 1 << 16})
		if err != nil {
			return nil, err
		}
		s.host = h
	}
	c, err := s.env.launch(context.Background(), s.host, name)
	if err != nil {
		s.errs[name] = err
		return nil, err
	}
	s.clients[name] = c
	return c, nil
}

// Schema implements pipeline.SchemaProvider with the plugin's own schema.
func (s *Schemas) Schema(kind, name string) (hcldec.Spec, error) {
	sch, err := s.PluginSchema(kind, name)
	if err != nil {
		return nil, err
	}
	return sch.Spec(), nil
}

// PluginSchema returns plugin name's schema; the error wraps
// pipeline.ErrUnknownPlugin when there is no such plugin of that kind.
func (s *Schemas) PluginSchema(kind, name string) (plugin.Schema, error) {
	c, err := s.client(name)
	if err != nil {
		return plugin.Schema{}, err
	}
	if !c.Has(plugin.Kind(kind)) {
		return plugin.Schema{}, fmt.Errorf("plugin %q serves %v, not %s: %w", name, c.Info().Kinds, kind, pipeline.ErrUnknownPlugin)
	}
	return c.Schema(context.Background())
}

// Names implements pipeline.SchemaProvider: the bundled plugins of that
// kind and the external plugins in the plugins directories (of any kind:
// only starting one tells its kinds).
func (s *Schemas) Names(kind string) []string {
	var names []string
	for n, ctor := range plugin.Bundled {
		if p := ctor(); slices.Contains(p.Info().Kinds, plugin.Kind(kind)) {
			names = append(names, n)
		}
	}
	for _, d := range s.env.dirs {
		found, _ := plugin.Discover(d)
		for n := range found {
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	}
	sort.Strings(names)
	return names
}

// Close stops the plugins started for their schemas.
func (s *Schemas) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.host == nil {
		return nil
	}
	err := s.host.Close()
	s.host, s.clients = nil, map[string]*plugin.Client{}
	return err
}

// PluginInfo describes one plugin for `sslrun plugins list`.
type PluginInfo struct {
	Name    string
	Version string
	Kinds   []plugin.Kind
	// Source is "bundled" or the external executable's path.
	Source string
	// Err says why the plugin could not be started ("" when it could).
	Err string
}

// Plugins starts every bundled plugin and every external plugin in the
// plugins directories (see PluginDirs) and reports what each says about
// itself, sorted by name.
func (s *Schemas) Plugins() []PluginInfo {
	names := map[string]string{}
	for n := range plugin.Bundled {
		names[n] = "bundled"
	}
	for _, d := range s.env.dirs {
		found, _ := plugin.Discover(d)
		for n, p := range found {
			if _, ok := names[n]; !ok {
				names[n] = p
			}
		}
	}
	var out []PluginInfo
	for n, src := range names {
		pi := PluginInfo{Name: n, Source: src}
		c, err := s.client(n)
		if err != nil {
			pi.Err = err.Error()
		} else {
			info := c.Info()
			pi.Version, pi.Kinds = info.Version, info.Kinds
		}
		out = append(out, pi)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// AttrDoc documents one argument of a plugin block.
type AttrDoc struct {
	Name     string
	Type     string
	Required bool
	// Default is the default value as JSON text, "" when none.
	Default     string
	Description string
	// Allowed lists the allowed values (JSON text); Min and Max bound a
	// number ("" when unbounded).
	Allowed  []string
	Min, Max string
}

// Describe returns the arguments of plugin name, from the plugin itself:
// its kinds and its documented attributes (nested blocks are listed by
// type name with Type "block").
func (s *Schemas) Describe(name string) ([]plugin.Kind, []AttrDoc, error) {
	c, err := s.client(name)
	if err != nil {
		if errors.Is(err, pipeline.ErrUnknownPlugin) {
			bundled := make([]string, 0, len(plugin.Bundled))
			for n := range plugin.Bundled {
				bundled = append(bundled, n)
			}
			sort.Strings(bundled)
			return nil, nil, &ConfigError{Err: fmt.Errorf("no plugin %q: not bundled (bundled: %v), nor found as an external plugin: %w", name, bundled, err)}
		}
		var ce *ConfigError
		if errors.As(err, &ce) {
			return nil, nil, err
		}
		return nil, nil, &ConfigError{Err: fmt.Errorf("plugin %q: %w", name, err)}
	}
	sch, err := c.Schema(context.Background())
	if err != nil {
		return nil, nil, err
	}
	var docs []AttrDoc
	for _, a := range sch.Attributes {
		d := AttrDoc{Name: a.Name, Type: a.Type.FriendlyName(), Required: a.Required, Description: a.Description}
		if a.Default != cty.NilVal {
			d.Default = ctyText(a.Default)
		}
		for _, v := range a.OneOf {
			d.Allowed = append(d.Allowed, ctyText(v))
		}
		if a.Min != nil {
			d.Min = strconv.FormatFloat(*a.Min, 'g', -1, 64)
		}
		if a.Max != nil {
			d.Max = strconv.FormatFloat(*a.Max, 'g', -1, 64)
		}
		docs = append(docs, d)
	}
	for _, b := range sch.Blocks {
		docs = append(docs, AttrDoc{Name: b.TypeName, Type: "block (" + string(b.Nesting) + ")", Required: b.Required, Description: b.Description})
	}
	return c.Info().Kinds, docs, nil
}

func ctyText(v cty.Value) string {
	b, err := ctyjson.Marshal(v, v.Type())
	if err != nil {
		return v.GoString()
	}
	return string(b)
}
