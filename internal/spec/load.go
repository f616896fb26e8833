package spec

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Load reads the documents in path: one file, or every *.yaml, *.yml and *.json in a directory, in
// name order. A parse error names the file; an ID defined twice is refused.
func Load[T any](path string, parse func([]byte) (T, error), id func(T) string) ([]T, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return LoadFS(os.DirFS(path), ".", parse, id)
	}
	return LoadFS(os.DirFS(filepath.Dir(path)), filepath.Base(path), parse, id)
}

// LoadFS is Load over a file system (embedded demo data).
func LoadFS[T any](fsys fs.FS, root string, parse func([]byte) (T, error), id func(T) string) ([]T, error) {
	var files []string
	st, err := fs.Stat(fsys, root)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		entries, err := fs.ReadDir(fsys, root)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			switch strings.ToLower(filepath.Ext(e.Name())) {
			case ".yaml", ".yml", ".json":
				if !e.IsDir() {
					files = append(files, filepath.Join(root, e.Name()))
				}
			}
		}
		sort.Strings(files)
	} else {
		files = []string{root}
	}
	var out []T
	seen := map[string]string{}
	for _, f := range files {
		b, err := fs.ReadFile(fsys, f)
		if err != nil {
			return nil, err
		}
		v, err := parse(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		if prev, dup := seen[id(v)]; dup {
			return nil, fmt.Errorf("%s: %q is also defined in %s", f, id(v), prev)
		}
		seen[id(v)] = f
		out = append(out, v)
	}
	return out, nil
}
