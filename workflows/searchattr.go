package workflows

import "go.temporal.io/sdk/temporal"

// TaskQueue is the task queue every reach workflow and activity runs on.
const TaskQueue = "omega-reach"

// Search attributes kept current on every reach run, so operators can filter runs in the Temporal
// UI by user, rule, journey, status and channel. The local stack registers them all.
var (
	SearchUserID      = temporal.NewSearchAttributeKeyKeyword("UserId")
	SearchRuleID      = temporal.NewSearchAttributeKeyKeyword("RuleId")
	SearchJourneyID   = temporal.NewSearchAttributeKeyKeyword("JourneyId")
	SearchReachStatus = temporal.NewSearchAttributeKeyKeyword("ReachStatus")
	SearchChannel     = temporal.NewSearchAttributeKeyKeyword("Channel")
)

// SearchAttributes lists the keys a Temporal namespace must have registered for reach runs.
var SearchAttributes = []temporal.SearchAttributeKeyKeyword{
	SearchUserID, SearchRuleID, SearchJourneyID, SearchReachStatus, SearchChannel,
}
