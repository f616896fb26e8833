package cep

import (
	"embed"
	"io/fs"

	"github.com/omegareach/omega/internal/spec"
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
	return spec.Load(path, ParseRule, ruleID)
}

func loadFS(fsys fs.FS, root string) ([]Rule, error) {
	return spec.LoadFS(fsys, root, ParseRule, ruleID)
}

func ruleID(r Rule) string { return r.ID }
