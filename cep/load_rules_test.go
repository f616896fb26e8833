package cep

import (
	"bytes"
	"context"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"
)

type ruleList []Rule

func (l ruleList) ActiveRules(context.Context) ([]Rule, error) { return l, nil }

// A stored rule that does not compile is left out and reported once; the others run.
func TestLoadRulesSkipsInvalid(t *testing.T) {
	var log bytes.Buffer
	good := Rule{ID: "good", Steps: []Step{{Type: "cart_add"}}, JourneyID: "j"}
	bad := Rule{Steps: []Step{{Type: "view"}}} // no ID
	s := &Stage{cfg: Config{RuleSource: ruleList{good, bad}, Log: slog.New(slog.NewTextHandler(&log, nil))}}
	require.NoError(t, s.loadRules(context.Background()))
	rs := s.currentRules()
	require.Len(t, rs, 1)
	require.Equal(t, "good", rs[0].ID)
	require.Contains(t, log.String(), "rules left out")
	require.Contains(t, log.String(), "id: required")
	log.Reset()
	require.NoError(t, s.loadRules(context.Background()))
	require.Empty(t, log.String(), "the same bad rule is reported once")

	// A new version that does not compile keeps the version that ran.
	broken := good
	broken.Steps = []Step{{Type: "cart_add", Where: "event.attrs.x +"}}
	s.cfg.RuleSource = ruleList{broken, bad}
	require.NoError(t, s.loadRules(context.Background()))
	rs = s.currentRules()
	require.Len(t, rs, 1)
	require.Empty(t, rs[0].Steps[0].Where, "the compiled version that ran")
}
