package main

import (
	"os"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestComposeDynamicConfig: the deployment's dynamic config (deploy/compose) sets what `make
// run`'s server sets on PostgreSQL, to the same values, and nothing this server leaves at
// Temporal's default.
func TestComposeDynamicConfig(t *testing.T) {
	raw, err := os.ReadFile("../../deploy/compose/temporal-dynamicconfig.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var file map[string][]struct {
		Value any `json:"value"`
	}
	if err := yaml.Unmarshal(raw, &file); err != nil {
		t.Fatal(err)
	}
	// Keys are case-insensitive (the server keeps them lower-cased).
	for name, v := range file {
		delete(file, name)
		file[strings.ToLower(name)] = v
	}
	// Settings of the single-process development server only (updates enabled on an older
	// server's default, its namespace registry's timing, one task queue partition), not the
	// deployment's concern. Lower case, as the server keeps keys.
	devOnly := map[string]bool{
		"frontend.enableupdateworkflowexecution": true,
		"system.namespacecacherefreshinterval":   true,
		"matching.numtaskqueuewritepartitions":   true,
	}
	for key, value := range dynamicClient(true) {
		name := key.String()
		if devOnly[strings.ToLower(name)] {
			continue
		}
		got, ok := file[name]
		if !ok {
			t.Errorf("%s is set by omega-dev (%v) but not in deploy/compose", name, value)
			continue
		}
		if len(got) != 1 || got[0].Value != toJSONNumber(value) {
			t.Errorf("%s: deploy/compose has %v, omega-dev %v", name, got, value)
		}
	}
	for name := range file {
		found := false
		for key := range dynamicClient(true) {
			found = found || key.String() == name
		}
		if !found {
			t.Errorf("deploy/compose sets %s, which omega-dev leaves at its default (or misspells)", name)
		}
	}
}

// toJSONNumber is how a value reads back from YAML: numbers as float64.
func toJSONNumber(v any) any {
	switch n := v.(type) {
	case int:
		return float64(n)
	default:
		return v
	}
}
