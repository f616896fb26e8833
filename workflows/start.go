package workflows

import (
	"fmt"
	"strings"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
)

// StartOptions are how every reach starts, from the CEP stage or the API: the ID derived from the
// match, refused when it was used before (even by a closed run) so a replayed match never reaches
// the user twice, the search attributes operators filter by, and a summary in words. A bulk
// match's reach starts on taskQueue's bulk queue (BulkQueue).
func StartOptions(m Match, taskQueue string) client.StartWorkflowOptions {
	if taskQueue == "" {
		taskQueue = TaskQueue
	}
	if m.Bulk {
		taskQueue = BulkQueue(taskQueue)
	}
	o := client.StartWorkflowOptions{
		ID:                                       ReachID(m.RuleID, m.UserID, m.MatchKey),
		TaskQueue:                                taskQueue,
		WorkflowIDReusePolicy:                    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		TypedSearchAttributes: temporal.NewSearchAttributes(
			SearchUserID.ValueSet(m.UserID),
			SearchRuleID.ValueSet(m.RuleID),
			SearchJourneyID.ValueSet(m.JourneyID),
			SearchReachStatus.ValueSet(StatusRunning),
		),
	}
	if m.RuleID == APIRuleID {
		o.StaticSummary = fmt.Sprintf("%s: API trigger → journey %s", m.UserID, m.JourneyID)
		o.StaticDetails = fmt.Sprintf("Journey **%s** started for user **%s** through ReachService.Trigger (key %q).",
			m.JourneyID, m.UserID, m.MatchKey)
		return o
	}
	o.StaticSummary = fmt.Sprintf("%s: rule %s → journey %s", m.UserID, m.RuleID, m.JourneyID)
	item := ""
	if m.ItemID != "" {
		item = fmt.Sprintf(" (item %q)", m.ItemID)
	}
	o.StaticDetails = fmt.Sprintf("User **%s** matched rule **%s** (v%d) on %s event(s) %s%s; journey **%s** started.",
		m.UserID, m.RuleID, m.RuleVersion, m.EventType, strings.Join(m.EventIDs, ", "), item, m.JourneyID)
	return o
}
