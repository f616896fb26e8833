package spec_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/internal/spec"
)

type step struct {
	Type  string        `json:"type"`
	Every spec.Duration `json:"every,omitempty"`
}

type doc struct {
	ID     string        `json:"id"`
	Within spec.Duration `json:"within,omitempty"`
	Steps  []step        `json:"steps"`
	Wait   *struct {
		For spec.Duration `json:"for"`
	} `json:"wait,omitempty"`
	Labels map[string]int `json:"labels,omitempty"`
}

// A refusal names the field at fault, however deep, where the decoder alone says only what.
func TestRefusalNamesTheField(t *testing.T) {
	for _, tc := range []struct {
		name, doc, field, reason string
	}{
		{"bad duration", "id: r\nwithin: 10 minutes\n", "within", `bad duration "10 minutes"`},
		{"negative duration", "id: r\nwithin: -5m\n", "within", `bad duration "-5m"`},
		{"nested in a list", "id: r\nsteps: [{type: view}, {type: view, every: abc}]\n", "steps[1].every", `bad duration "abc"`},
		{"nested in an object", `{"id": "r", "wait": {"for": "3 days"}}`, "wait.for", `bad duration "3 days"`},
		{"unknown field", "id: r\nsteps: [{type: view, sendd: x}]\n", "steps[0].sendd", "unknown field"},
		{"wrong type", "id: r\nlabels: {a: x}\n", "labels.a", "must be int, not string"},
		{"a list where an object goes", "id: r\nwait: [1]\n", "wait", "must be an object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var d doc
			field, reason := spec.Refusal(spec.Unmarshal([]byte(tc.doc), &d))
			require.Equal(t, tc.field, field)
			require.Equal(t, tc.reason, reason)
			require.Equal(t, "r", spec.Name([]byte(tc.doc), "id"))
		})
	}
	var d doc
	require.NoError(t, spec.Unmarshal([]byte("id: r\nwithin: 7d\nsteps: [{type: view}]\n"), &d))
	field, _ := spec.Refusal(spec.Unmarshal([]byte("id: [unclosed\n"), &d))
	require.Equal(t, "(document)", field, "YAML that does not parse names no field")
}
