package cep

import (
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

//go:embed demo/*.yaml
var demoFS embed.FS

// DemoRules are the rules of the local stack (cep/demo): the foundation's cart rule and the seed's
// two scenarios. Versions are 1, as a fresh store would number them.
func DemoRules() []Rule {
	rs, err := loadFS(demoFS, "demo")
	if err != nil {
		panic(err) // embedded and tested: cannot happen
	}
	for i := range rs {
		rs[i].Version = 1
	}
	return rs
}

// LoadRules reads the rules in path: one file, or every *.yaml, *.yml and *.json in a directory,
// in name order. A parse error names the file.
func LoadRules(path string) ([]Rule, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return loadFS(os.DirFS(path), ".")
	}
	return loadFS(os.DirFS(filepath.Dir(path)), filepath.Base(path))
}

func loadFS(fsys fs.FS, root string) ([]Rule, error) {
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
	var out []Rule
	seen := map[string]string{}
	for _, f := range files {
		b, err := fs.ReadFile(fsys, f)
		if err != nil {
			return nil, err
		}
		r, err := ParseRule(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		if prev, dup := seen[r.ID]; dup {
			return nil, fmt.Errorf("%s: rule %q is also defined in %s", f, r.ID, prev)
		}
		seen[r.ID] = f
		out = append(out, r)
	}
	return out, nil
}
