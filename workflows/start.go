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
// the user twice, the search attributes operators filter by, a summary in words, and the rule's
// fairness key (FairnessKey).
func StartOptions(m Match, taskQueue string) client.StartWorkflowOptions {
	if taskQueue == "" {
		taskQueue = TaskQueue
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
		Priority: temporal.Priority{FairnessKey: FairnessKey(m.RuleID)},
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

// FairnessKey is the Temporal fairness key of a rule's reaches (an audience's, the API's): a task
// queue whose matching has fairness on (matching.enableFairness; omega-dev turns it on) shares
// its workers among the keys with tasks waiting, in turn, so one rule's burst (a price drop
// fanned out to 100,000 favouriters, a restart's thousands of overdue cart timers, a broadcast)
// does not hold every other rule's reaches behind it: a fresh reach waits behind its own rule's
// backlog only. Within a key, tasks keep their order. Without fairness the key is ignored (one
// queue, first in first out). Keys are at most 64 bytes: a longer rule ID is cut there (rule IDs
// sharing those 64 bytes share a key).
func FairnessKey(ruleID string) string {
	if len(ruleID) > maxFairnessKey {
		return ruleID[:maxFairnessKey]
	}
	return ruleID
}

const maxFairnessKey = 64
