package audit

import (
	"context"
	"fmt"
	"slices"
	"strings"
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
	// The reaches' roll-ups (audit_reaches, kept by a trigger as records arrive) name what
	// happened at each step as tokens; reaches with the same tokens are counted together first.
	rows, err := s.pool.Query(ctx, `
		WITH g AS (
			SELECT steps, count(*) AS n, count(*) FILTER (WHERE converted) AS converted FROM audit_reaches
			WHERE journey_id = $3 AND matched_at >= $1 AND matched_at < $2 AND ($4::int = 0 OR version = $4)
			GROUP BY steps)
		SELECT tok, sum(n)::bigint, sum(converted)::bigint FROM g, unnest(g.steps) AS tok GROUP BY tok`,
		q.From, q.To, q.JourneyID, q.JourneyVersion)
	if err != nil {
		return nil, fmt.Errorf("step counts of %s: %w", q.JourneyID, err)
	}
	defer rows.Close()
	byStep := map[string]*StepCount{}
	for rows.Next() {
		var tok string
		var n, converted int64
		if err := rows.Scan(&tok, &n, &converted); err != nil {
			return nil, fmt.Errorf("step counts of %s: %w", q.JourneyID, err)
		}
		what, step, label := parseStepToken(tok)
		c := byStep[step]
		if c == nil {
			c = &StepCount{Step: step, DroppedBy: map[string]int64{}, Outcomes: map[string]int64{}}
			byStep[step] = c
		}
		switch what {
		case "e":
			c.Entered, c.Converted = n, converted
		case "w":
			c.Waited = n
		case "s":
			c.Sent = n
		case "d":
			c.Dropped = n
		case "f":
			c.Failed = n
		case "D":
			c.DroppedBy[label] = n
		case "o":
			c.Outcomes[label] = n
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("step counts of %s: %w", q.JourneyID, err)
	}
	out := make([]StepCount, 0, len(byStep))
	for _, c := range byStep {
		out = append(out, *c)
	}
	slices.SortFunc(out, func(a, b StepCount) int { return strings.Compare(a.Step, b.Step) })
	return out, nil
}

// parseStepToken splits a roll-up token, "what<US>step[<US>label]" (store migration 014; a
// step's ID holds no control character, journey validation sees to it).
func parseStepToken(tok string) (what, step, label string) {
	what, rest, _ := strings.Cut(tok, "\x1f")
	step, label, _ = strings.Cut(rest, "\x1f")
	return what, step, label
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
