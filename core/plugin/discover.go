package plugin

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ExternalPrefix starts the file name of every external plugin executable
// in a plugins directory: dir/sslrun-plugin-<name>.
const ExternalPrefix = "sslrun-plugin-"

// Discover lists the external plugins in dir: executable regular files
// named ExternalPrefix+name, by name. A missing directory has none.
func Discover(dir string) (map[string]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("discover plugins in %s: %w", dir, err)
	}
	out := map[string]string{}
	for _, e := range ents {
		name, ok := strings.CutPrefix(e.Name(), ExternalPrefix)
		if !ok || name == "" {
			continue
		}
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() || info.Mode().Perm()&0o111 == 0 {
			continue
		}
		out[name] = filepath.Join(dir, e.Name())
	}
	return out, nil
}

// Resolve finds the executable of the external plugin name: a path (it
// contains a slash) is used as is, otherwise the plugins directories are
// searched in order.
func Resolve(name string, dirs ...string) (string, error) {
	if strings.ContainsRune(name, '/') {
		if _, err := os.Stat(name); err != nil {
			return "", fmt.Errorf("plugin %s: %w", name, err)
		}
		return name, nil
	}
	for _, d := range dirs {
		found, err := Discover(d)
		if err != nil {
			return "", err
		}
		if p, ok := found[name]; ok {
			return p, nil
		}
	}
	return "", fmt.Errorf("plugin %q: no %s%s in %s", name, ExternalPrefix, name, strings.Join(dirs, ", "))
}
