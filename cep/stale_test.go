package cep

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/workflows"
)

// A match is stale when its event happened longer than MaxMatchAge before Kafka took it, or, an
// absence, when it fell due longer than that before the event time its partition had reached; a
// stage behind its backlog is not (its events were fresh when taken, its watermark as far behind).
func TestStaleReason(t *testing.T) {
	now := time.Now().UTC()
	wm := now.UnixMilli()
	tests := []struct {
		name string
		m    workflows.Match
		want string
	}{
		{"fresh event", workflows.Match{EventTime: now.Add(-time.Second), ReceivedAt: now}, ""},
		{"event read two days late (a backlog)", workflows.Match{EventTime: now.Add(-48 * time.Hour), ReceivedAt: now.Add(-48 * time.Hour)}, ""},
		{"event taken three days after it happened", workflows.Match{EventTime: now.Add(-72 * time.Hour), ReceivedAt: now},
			"stale: its event happened 72h0m0s before Kafka took it, more than 24h0m0s"},
		{"no Kafka time (an API trigger's own)", workflows.Match{EventTime: now.Add(-72 * time.Hour)}, ""},
		{"absence due a moment ago", workflows.Match{Due: now.Add(-time.Minute)}, ""},
		{"absence due three days before the watermark", workflows.Match{Due: now.Add(-72 * time.Hour)},
			"stale: the absence fell due 72h0m0s before the event time its partition had reached, more than 24h0m0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := staleReason(&tt.m, wm, 24*time.Hour)
			if tt.want == "" {
				require.Empty(t, got)
				return
			}
			require.Contains(t, got, tt.want)
			require.Empty(t, staleReason(&tt.m, wm, -1), "off")
		})
	}
	// markStale leaves shadow and already suppressed matches as they are.
	s := &Stage{cfg: Config{MaxMatchAge: 24 * time.Hour}}
	ms := []workflows.Match{
		{RuleID: "r", EventTime: now.Add(-72 * time.Hour), ReceivedAt: now},
		{RuleID: "r", EventTime: now.Add(-72 * time.Hour), ReceivedAt: now, Shadow: true},
		{RuleID: "r", EventTime: now.Add(-72 * time.Hour), ReceivedAt: now, Suppressed: "reach x holds it"},
	}
	s.markStale(ms, wm)
	require.Contains(t, ms[0].Suppressed, "stale")
	require.Empty(t, ms[1].Suppressed)
	require.Equal(t, "reach x holds it", ms[2].Suppressed)
}
