package workflows

import "go.temporal.io/sdk/temporal"

// TaskQueue is the task queue every reach workflow and activity runs on, but for bulk reaches.
const TaskQueue = "omega-reach"

// BulkQueue is the task queue of a task queue's bulk reaches (Match.Bulk): the reaches nobody
// waits for this second, which may come by the thousand (a backlog caught up after an outage, the
// timers it left overdue, a large fan-out, a backfill, a broadcast). Temporal serves a task queue
// first in, first out; on a queue of their own, with their own polls and worker slots (the reach
// worker polls both), they run beside the fresh reaches instead of ahead of them.
func BulkQueue(taskQueue string) string {
	if taskQueue == "" {
		taskQueue = TaskQueue
	}
	return taskQueue + "-bulk"
}

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
