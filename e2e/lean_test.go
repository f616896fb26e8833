package e2e_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"

	"github.com/omegareach/omega/workflows"
)

// TestLeanReach: on a real Temporal server, a single-send reach whose provider answers quickly
// takes one workflow task: route, filter chain, send and trail in the first task, no activity
// task, one search-attribute update (its final status and channel), and nothing else.
func TestLeanReach(t *testing.T) {
	p := newPipeline(t)
	p.startWorker()
	m := workflows.Match{RuleID: "lean", UserID: p.id + "-lean", JourneyID: "cart-reminder", MatchKey: "k",
		EventIDs: []string{"e"}, EventType: "cart_add", MatchedAt: time.Now().UTC(), Attrs: map[string]any{"item_id": "sku-1"}}
	require.NoError(t, p.starter().Start(context.Background(), m))
	p.waitDeliveries(1)

	tc := p.env.Temporal(t)
	id := workflows.ReachID(m.RuleID, m.UserID, m.MatchKey)
	var res workflows.ReachResult
	require.NoError(t, tc.GetWorkflow(context.Background(), id, "").Get(context.Background(), &res))
	require.Equal(t, workflows.StatusSent, res.Status)
	counts := map[enumspb.EventType]int{}
	it := tc.GetWorkflowHistory(context.Background(), id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		require.NoError(t, err)
		counts[ev.GetEventType()]++
	}
	t.Logf("history of a single-send reach: %v", counts)
	require.Equal(t, 1, counts[enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED], "workflow tasks")
	require.Zero(t, counts[enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED], "activity tasks")
	require.Equal(t, 1, counts[enumspb.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES], "search-attribute updates")
}
