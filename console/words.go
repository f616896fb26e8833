package console

import (
	"fmt"
	"slices"
	"strings"

	omegav1 "github.com/omegareach/omega/proto/gen/omega/v1"
)

// Say puts one audit record in words, the way a growth team member would tell it.
func Say(r *omegav1.AuditRecord) string {
	on := ""
	if r.GetChannel() != "" {
		on = " on " + r.GetChannel()
	}
	why := ""
	if r.GetReason() != "" {
		why = ": " + r.GetReason()
	}
	switch r.GetKind() {
	case "received":
		return "the event that completed the match arrived"
	case "deduplicated":
		return "a replayed match was refused: the reach already exists"
	case "matched":
		return "the rule matched" + why
	case "shadow_matched":
		return "the shadow rule matched (nothing was started)" + why
	case "routed":
		return "routed to journey version " + strings.TrimPrefix(r.GetOutcome(), "v")
	case "filtered":
		if r.GetOutcome() == "pass" {
			return "the filters let the send" + on + " through"
		}
		return "the filters said " + r.GetOutcome() + on + why
	case "deferred":
		return "the send" + on + " was put off" + why
	case "suppressed":
		return "not sent" + on + why
	case "dispatched":
		return "sent" + on + why
	case "delivered":
		return "the provider delivered it" + on
	case "failed":
		retry := " (a retry would not help)"
		if r.GetRetryable() {
			retry = " (retryable)"
		}
		return "the send failed" + on + why + retry
	case "waiting":
		return "began to wait" + why
	case "waited":
		return "waited" + why
	case "responded":
		return "the user responded: " + r.GetOutcome()
	case "timed_out":
		return "no response in time" + why
	case "branched":
		return "took " + r.GetOutcome() + why
	case "split":
		if r.GetOutcome() == "holdout" {
			return "put in the control group (holdout): nothing is sent"
		}
		return "split: path " + r.GetOutcome()
	case "converted":
		return "converted by " + r.GetOutcome() + why
	case "exited":
		return "left the journey" + why
	case "cancelled":
		return "cancelled" + why
	case "completed":
		return "ended as " + r.GetOutcome() + why
	}
	return fmt.Sprintf("%s %s%s", r.GetKind(), r.GetOutcome(), why)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
