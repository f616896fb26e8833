package cep

import (
	"cmp"
	"context"
	"fmt"
	"strings"

	"github.com/omegareach/omega/activities/filter"
	"github.com/omegareach/omega/audit"
	"github.com/omegareach/omega/internal/tracing"
	"github.com/omegareach/omega/workflows"
)

// AuditUnstarted records the matches that start nothing in the audit trail, under the reach ID the
// match would have started: a shadow rule's, so a growth team can compare its reach with the live
// one before switching; and one a rule's re-entry policy suppressed, as a reach that ended
// suppressed, with the reach that holds the key, so "why was this user not reached?" has its
// answer where every other reach's is.
type AuditUnstarted struct {
	Store *audit.Store
}

// RecordUnstarted implements UnstartedRecorder.
func (a AuditUnstarted) RecordUnstarted(ctx context.Context, ms []workflows.Match) error {
	recs := make([]audit.Record, 0, len(ms))
	for _, m := range ms {
		rec := audit.Record{
			ReachID: workflows.ReachID(m.RuleID, m.UserID, m.MatchKey), Step: "match", UserID: m.UserID, RuleID: m.RuleID,
			JourneyID: m.JourneyID, RuleVersion: m.RuleVersion, EventID: m.LastEvent(),
			TraceID: cmp.Or(m.TraceID, tracing.IDForEvent(cmp.Or(m.LastEvent(), m.MatchKey))),
			// The Kafka time, not the matching time: a replayed batch writes the same rows.
			At: cmp.Or(m.ReceivedAt, m.MatchedAt),
		}
		if m.Suppressed == "" {
			rec.Kind, rec.Outcome = audit.KindShadowMatched, "shadow"
			rec.Reason = fmt.Sprintf("shadow rule %s v%d matched %s event(s) %s; nothing started", m.RuleID, m.RuleVersion,
				m.EventType, strings.Join(m.EventIDs, ","))
			recs = append(recs, rec)
			continue
		}
		// As a run the rule's max_open refuses ends: suppressed at its step, then ended suppressed.
		rec.Kind, rec.Outcome, rec.Reason = audit.KindSuppressed, filter.Drop, m.Suppressed
		end := rec
		end.Step, end.Kind, end.Outcome, end.Reason = "end", audit.KindCompleted, workflows.StatusSuppressed, m.Suppressed
		if !isStale(m.Suppressed) {
			end.Reason = "re-entry: " + m.Suppressed
		}
		recs = append(recs, rec, end)
	}
	_, err := a.Store.Append(ctx, recs...)
	return err
}
