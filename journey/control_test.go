package journey_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/journey"
)

func TestInControlGroup(t *testing.T) {
	in := 0
	for i := range 100_000 {
		if journey.InControlGroup(fmt.Sprintf("user-%d", i), 5) {
			in++
		}
	}
	// 5% of 100,000, within four standard deviations (sqrt(100000*0.05*0.95) = 69).
	require.InDelta(t, 5000, in, 280)
	require.Equal(t, journey.InControlGroup("alice", 5), journey.InControlGroup("alice", 5), "stable")
	require.False(t, journey.InControlGroup("alice", 0), "off")
	for i := range 1000 {
		u := fmt.Sprintf("u%d", i)
		if journey.InControlGroup(u, 5) {
			require.True(t, journey.InControlGroup(u, 10), "a bigger group keeps the smaller one's users")
		}
	}
}

func TestMarketing(t *testing.T) {
	j := journey.Journey{Steps: []journey.Step{{ID: "s", Send: &journey.Send{Channel: "push", Template: "t", Category: "transactional"}}}}
	require.False(t, j.Marketing())
	j.Steps = append(j.Steps, journey.Step{ID: "m", Send: &journey.Send{Channel: "push", Template: "t"}})
	require.True(t, j.Marketing())
}
