package audit

import (
	"context"
	"fmt"
	"time"
)

// DefaultAttributionWindow is how long after a send a goal event still counts as the reach's
// conversion when the journey's goal names no window.
const DefaultAttributionWindow = 24 * time.Hour

// MaxAttributionWindow bounds a journey's attribution window (journey validation refuses more).
const MaxAttributionWindow = 90 * 24 * time.Hour

// Goal is an event that may convert reaches: a response event (order_paid, ...) of a user.
type Goal struct {
	UserID, Type, EventID string
	At                    time.Time
}

// Attribute writes a converted record for every reach of a goal's user that sent a message (or
// was held out, by a split or the global control group: the controls the reached are compared
// with) within its journey's attribution window before the goal, whose pinned journey version lists the
// goal's type among its goal events, and that is not converted yet. A reach converts once: the
// record's time is the goal's, so the run's own conversion record (for a goal it was still
// waiting for) and a replayed batch both collide with it. It returns the records written.
func (s *Store) Attribute(ctx context.Context, goals []Goal) (int64, error) {
	if len(goals) == 0 {
		return 0, nil
	}
	users, types, ids, ats := make([]string, len(goals)), make([]string, len(goals)), make([]string, len(goals)), make([]time.Time, len(goals))
	for i, g := range goals {
		users[i], types[i], ids[i], ats[i] = clean(g.UserID), clean(g.Type), clean(g.EventID), g.At
	}
	tag, err := s.pool.Exec(ctx, `
		WITH g AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[]) AS g(user_id, type, event_id, at)),
		c AS (
			SELECT DISTINCT ON (d.reach_id) d.reach_id, d.user_id, d.rule_id, d.rule_version, d.journey_id, d.journey_version,
				d.trace_id, d.channel, g.type, g.event_id, g.at, w.win
			FROM g
			JOIN audit_records d ON d.user_id = g.user_id AND d.at <= g.at AND d.at > g.at - $5::interval
				AND (d.kind IN ('dispatched', 'held_out') OR (d.kind = 'split' AND d.outcome = 'holdout'))
			JOIN journey_versions v ON v.journey_id = d.journey_id AND v.version = d.journey_version
			CROSS JOIN LATERAL jsonb_path_query(v.spec, '$.steps[*].goal') AS goal
			-- Journey validation admits only these windows; anything else reads as the default
			-- rather than failing the batch.
			CROSS JOIN LATERAL (SELECT CASE WHEN goal->>'window' ~ '^([0-9]+h)?([0-9]+m)?$' AND goal->>'window' <> ''
				THEN goal->>'window' ELSE $6 END AS win) w
			WHERE goal->'events' ? g.type
				AND d.at > g.at - w.win::interval
				AND NOT EXISTS (SELECT 1 FROM audit_records x WHERE x.reach_id = d.reach_id AND x.kind = 'converted')
			ORDER BY d.reach_id, g.at)
		INSERT INTO audit_records (`+insertCols+`)
		SELECT reach_id, 'goal', 'converted', user_id, rule_id, journey_id, channel, type,
			format('goal %s (event %s) within the %s attribution window of the send', type, event_id, win), '', at,
			trace_id, rule_version, journey_version, event_id, false
		FROM c
		ON CONFLICT DO NOTHING`,
		users, types, ids, ats, MaxAttributionWindow.String(), DefaultAttributionWindow.String())
	if err != nil {
		return 0, fmt.Errorf("attribute %d goal events: %w", len(goals), err)
	}
	return tag.RowsAffected(), nil
}

// Receipt is what comes back about a sent message: the provider's delivery receipt (a
// message_delivered event, Kind delivered) or the user opening it (a push_open naming the reach,
// Kind responded, Outcome push_open).
type Receipt struct {
	Kind    string // KindDelivered or KindResponded
	Outcome string // the event type
	ReachID string
	// IdempotencyKey names the send when the reach sent several; empty means its latest send.
	IdempotencyKey string
	EventID        string
	At             time.Time
}

// Receipts writes a record for each receipt under the step of the send it is about, so the
// funnel counts messages delivered and opened after their run ended too. A receipt for a reach or
// send this trail does not know, or dated before the send, writes nothing; a replayed one, or one
// the run recorded itself, is a no-op.
func (s *Store) Receipts(ctx context.Context, rs []Receipt) (int64, error) {
	if len(rs) == 0 {
		return 0, nil
	}
	n := len(rs)
	kinds, outcomes, reaches, keys, ids, ats := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]time.Time, n)
	for i, r := range rs {
		kinds[i], outcomes[i], reaches[i], keys[i], ids[i], ats[i] = r.Kind, clean(r.Outcome), clean(r.ReachID), clean(r.IdempotencyKey), clean(r.EventID), r.At
	}
	tag, err := s.pool.Exec(ctx, `
		WITH r AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $6::text[], $7::text[])
			AS r(reach_id, key, event_id, at, kind, outcome)),
		c AS (
			SELECT DISTINCT ON (r.reach_id, r.key, r.event_id) d.reach_id, d.step, d.user_id, d.rule_id, d.rule_version,
				d.journey_id, d.journey_version, d.trace_id, d.channel, d.idempotency_key, r.event_id, r.at, r.kind, r.outcome
			FROM r JOIN audit_records d ON d.reach_id = r.reach_id AND d.kind = 'dispatched'
				AND (r.key = '' OR d.idempotency_key = r.key) AND d.at <= r.at AND d.at > r.at - $5::interval
			-- The run itself may have recorded this very event (a push_open it waited for).
			WHERE NOT EXISTS (SELECT 1 FROM audit_records x WHERE x.reach_id = d.reach_id AND x.kind = r.kind AND x.event_id = r.event_id)
			ORDER BY r.reach_id, r.key, r.event_id, d.at DESC)
		INSERT INTO audit_records (`+insertCols+`)
		SELECT reach_id, step, kind, user_id, rule_id, journey_id, channel, outcome,
			outcome || ' ' || event_id || ' for the ' || step || ' send', idempotency_key, at, trace_id, rule_version, journey_version, event_id, false
		FROM c
		ON CONFLICT DO NOTHING`,
		reaches, keys, ids, ats, MaxAttributionWindow.String(), kinds, outcomes)
	if err != nil {
		return 0, fmt.Errorf("record %d receipts: %w", len(rs), err)
	}
	return tag.RowsAffected(), nil
}
