package workflows_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"

	"github.com/omegareach/omega/workflows"
)

func TestStartOptions(t *testing.T) {
	tests := []struct {
		name        string
		m           workflows.Match
		wantID      string
		wantSummary string
	}{
		{name: "rule match", m: workflows.Match{RuleID: "cart-add", UserID: "u1", JourneyID: "cart-reminder", MatchKey: "e1"},
			wantID: "reach/cart-add/u1/e1", wantSummary: "u1: rule cart-add → journey cart-reminder"},
		{name: "api trigger", m: workflows.Match{RuleID: workflows.APIRuleID, UserID: "u1", JourneyID: "cart-reminder", MatchKey: "k"},
			wantID: "reach/api/u1/k", wantSummary: "u1: API trigger → journey cart-reminder"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := workflows.StartOptions(tt.m, "")
			require.Equal(t, tt.wantID, o.ID)
			require.Equal(t, workflows.TaskQueue, o.TaskQueue)
			require.Equal(t, enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE, o.WorkflowIDReusePolicy, "a closed run's ID is never reused")
			require.True(t, o.WorkflowExecutionErrorWhenAlreadyStarted)
			require.Equal(t, tt.wantSummary, o.StaticSummary)
			user, ok := o.TypedSearchAttributes.GetKeyword(workflows.SearchUserID)
			require.True(t, ok)
			require.Equal(t, "u1", user)
			status, _ := o.TypedSearchAttributes.GetKeyword(workflows.SearchReachStatus)
			require.Equal(t, workflows.StatusRunning, status)
		})
	}
	t.Run("bulk", func(t *testing.T) {
		m := workflows.Match{RuleID: "cart-add", UserID: "u1", JourneyID: "cart-reminder", MatchKey: "e1", Bulk: true}
		require.Equal(t, "omega-reach-bulk", workflows.StartOptions(m, "").TaskQueue)
		require.Equal(t, "q-bulk", workflows.StartOptions(m, "q").TaskQueue)
		require.Equal(t, "reach/cart-add/u1/e1", workflows.StartOptions(m, "").ID, "the same ID: a replay collapses on it whatever the queue")
	})
}
