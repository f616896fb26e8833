package cep

import (
	"context"
	"errors"
	"fmt"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/omegareach/omega/workflows"
)

// TemporalStarter starts reach workflows on a Temporal cluster.
type TemporalStarter struct {
	Client    client.Client
	TaskQueue string
}

// Start starts the match's workflow. The workflow ID is derived from the match and a duplicate ID
// is refused even after the first run closed, so a replayed match never reaches the user twice.
func (t *TemporalStarter) Start(ctx context.Context, m workflows.Match) error {
	tq := t.TaskQueue
	if tq == "" {
		tq = workflows.TaskQueue
	}
	id := workflows.ReachID(m.RuleID, m.UserID, m.MatchKey)
	_, err := t.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                                       id,
		TaskQueue:                                tq,
		WorkflowIDReusePolicy:                    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		TypedSearchAttributes: temporal.NewSearchAttributes(
			workflows.SearchUserID.ValueSet(m.UserID),
			workflows.SearchRuleID.ValueSet(m.RuleID),
			workflows.SearchJourneyID.ValueSet(m.JourneyID),
			workflows.SearchReachStatus.ValueSet(workflows.StatusRunning),
		),
		StaticSummary: fmt.Sprintf("%s: rule %s → journey %s", m.UserID, m.RuleID, m.JourneyID),
		StaticDetails: fmt.Sprintf("User **%s** matched rule **%s** on %s event(s) %v (item %q); journey **%s** started.",
			m.UserID, m.RuleID, m.EventType, m.EventIDs, m.ItemID, m.JourneyID),
	}, workflows.ReachWorkflow, workflows.ReachInput{Match: m})
	var already *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &already) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("start %s: %w", id, err)
	}
	return nil
}
