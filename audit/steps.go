package audit

import (
	"context"
	"fmt"
	"time"
)

// StepQuery selects the reaches whose steps are counted: matched in [From, To) for a journey,
// optionally of one journey version (a reach's version is the highest its records carry, as in
// Funnel).
type StepQuery struct {
	JourneyID      string
	JourneyVersion int
	From, To       time.Time
}

// StepCount is what the trail says happened at one step of a journey, each reach counted once
// per figure however often it visited the step. Step is the journey step's ID: a second visit
// (id#2), a fallback channel's attempt (id/sms) and a deferred send's recheck (id/recheck1) count
// at the step they belong to. Besides the journey's steps, the trail's own steps appear: "match"
// (every reach), "route", and "goal" (the conversions, by goal event in Outcomes).
type StepCount struct {
	Step string
	// Entered: reaches with any record at the step.
	Entered int64
	// Waited: reaches that waited there (a wait, a wait_for that took a response or timed out, a
	// send put off by quiet hours).
	Waited int64
	// Sent: reaches that dispatched a message there.
	Sent int64
	// Dropped: reaches suppressed there; DroppedBy names the filter that dropped them.
	Dropped   int64
	DroppedBy map[string]int64
	Failed    int64
	// Converted: reaches that went through the step and converted (then or later).
	Converted int64
	// Outcomes counts reaches by what the step decided: a split's path (or holdout), a branch's
	// "case N" or "else", a wait_for's response type or "timeout", a goal's event type.
	Outcomes map[string]int64
}

// StepCounts counts, per journey step, the reaches matched in q's range that entered it, waited
// there, were dropped (and by which filter), sent, failed and converted, from the audit trail.
// Steps come ordered by name.
func (s *Store) StepCounts(ctx context.Context, q StepQuery) ([]StepCount, error) {
	// One row per reach and step (its flags), one per reach, step and label, then plain counts:
	// cheaper than counting distinct reaches per group over every record.
	rows, err := s.pool.Query(ctx, `
		WITH m AS (
			SELECT DISTINCT reach_id FROM audit_records
			WHERE kind = 'matched' AND at >= $1 AND at < $2 AND journey_id = $3),
		r AS (
			SELECT a.reach_id, bool_or(a.kind = 'converted') AS converted FROM audit_records a JOIN m USING (reach_id)
			GROUP BY a.reach_id HAVING $4::int = 0 OR max(a.journey_version) = $4),
		a AS (
			SELECT a.reach_id, split_part(split_part(a.step, '#', 1), '/', 1) AS step, a.kind, a.outcome, a.reason, r.converted
			FROM audit_records a JOIN r USING (reach_id)),
		s AS (
			SELECT step, converted,
				bool_or(kind IN ('waited', 'deferred', 'responded', 'timed_out')) AS waited,
				bool_or(kind = 'dispatched') AS sent, bool_or(kind = 'suppressed') AS dropped, bool_or(kind = 'failed') AS failed
			FROM a GROUP BY reach_id, step, converted),
		l AS (
			SELECT DISTINCT a.reach_id, a.step,
				CASE WHEN a.kind = 'suppressed' THEN 'drop' ELSE 'outcome' END AS label_kind,
				CASE WHEN a.kind = 'suppressed' THEN coalesce(substring(a.reason from '^drop by ([A-Za-z0-9_]+)'), 'other') ELSE a.outcome END AS label
			FROM a
			WHERE a.kind IN ('suppressed', 'split', 'branched', 'responded', 'timed_out', 'converted'))
		SELECT step, false, '', '', count(*), count(*) FILTER (WHERE waited), count(*) FILTER (WHERE sent),
			count(*) FILTER (WHERE dropped), count(*) FILTER (WHERE failed), count(*) FILTER (WHERE converted)
		FROM s GROUP BY step
		UNION ALL
		SELECT step, true, label_kind, label, count(*), 0, 0, 0, 0, 0 FROM l GROUP BY step, label_kind, label
		ORDER BY 1, 2`, q.From, q.To, q.JourneyID, q.JourneyVersion)
	if err != nil {
		return nil, fmt.Errorf("step counts of %s: %w", q.JourneyID, err)
	}
	defer rows.Close()
	var out []StepCount
	for rows.Next() {
		var step, labelKind, label string
		var detail bool
		var n, waited, sent, dropped, failed, converted int64
		if err := rows.Scan(&step, &detail, &labelKind, &label, &n, &waited, &sent, &dropped, &failed, &converted); err != nil {
			return nil, fmt.Errorf("step counts of %s: %w", q.JourneyID, err)
		}
		if len(out) == 0 || out[len(out)-1].Step != step {
			out = append(out, StepCount{Step: step, DroppedBy: map[string]int64{}, Outcomes: map[string]int64{}})
		}
		c := &out[len(out)-1]
		switch {
		case !detail:
			c.Entered, c.Waited, c.Sent, c.Dropped, c.Failed, c.Converted = n, waited, sent, dropped, failed, converted
		case labelKind == "drop":
			c.DroppedBy[label] = n
		case labelKind == "outcome":
			c.Outcomes[label] = n
		}
	}
	return out, rows.Err()
}

// MatchQuery selects the matches counted per hour: in [From, To), of the given rules.
type MatchQuery struct {
	RuleIDs  []string
	From, To time.Time
}

// MatchHour is one rule's matches in one hour (UTC): Live started reaches, Shadow only recorded
// what a shadow rule would have started.
type MatchHour struct {
	RuleID       string
	Hour         time.Time
	Live, Shadow int64
}

// MatchesPerHour counts rules' live and shadow matches per hour, ordered by rule and hour; hours
// without a match are left out.
func (s *Store) MatchesPerHour(ctx context.Context, q MatchQuery) ([]MatchHour, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT rule_id, date_trunc('hour', at, 'UTC'), count(*) FILTER (WHERE kind = 'matched'),
			count(*) FILTER (WHERE kind = 'shadow_matched')
		FROM audit_records
		WHERE kind IN ('matched', 'shadow_matched') AND at >= $1 AND at < $2 AND rule_id = ANY($3::text[])
		GROUP BY 1, 2 ORDER BY 1, 2`, q.From, q.To, q.RuleIDs)
	if err != nil {
		return nil, fmt.Errorf("matches per hour: %w", err)
	}
	defer rows.Close()
	var out []MatchHour
	for rows.Next() {
		var h MatchHour
		if err := rows.Scan(&h.RuleID, &h.Hour, &h.Live, &h.Shadow); err != nil {
			return nil, fmt.Errorf("matches per hour: %w", err)
		}
		h.Hour = h.Hour.UTC()
		out = append(out, h)
	}
	return out, rows.Err()
}
