package cep

import (
	"cmp"
	"context"
	"fmt"
	"strings"

	"github.com/omegareach/omega/audit"
	"github.com/omegareach/omega/internal/tracing"
	"github.com/omegareach/omega/workflows"
)

// AuditShadow records shadow matches in the audit trail under the reach ID the match would have
// started, so a growth team can compare a shadow rule's reach with the live one before switching.
type AuditShadow struct {
	Store *audit.Store
}

// RecordShadow implements ShadowRecorder.
func (a AuditShadow) RecordShadow(ctx context.Context, ms []workflows.Match) error {
	recs := make([]audit.Record, len(ms))
	for i, m := range ms {
		recs[i] = audit.Record{
			ReachID: workflows.ReachID(m.RuleID, m.UserID, m.MatchKey), Step: "match", Kind: audit.KindShadowMatched,
			UserID: m.UserID, RuleID: m.RuleID, JourneyID: m.JourneyID, Outcome: "shadow",
			Reason: fmt.Sprintf("shadow rule %s v%d matched %s event(s) %s; nothing started", m.RuleID, m.RuleVersion,
				m.EventType, strings.Join(m.EventIDs, ",")),
			TraceID: cmp.Or(m.TraceID, tracing.IDForEvent(cmp.Or(m.LastEvent(), m.MatchKey))), RuleVersion: m.RuleVersion, EventID: m.LastEvent(),
			// The Kafka time, not the matching time: a replayed batch writes the same row.
			At: cmp.Or(m.ReceivedAt, m.MatchedAt),
		}
	}
	_, err := a.Store.Append(ctx, recs...)
	return err
}
