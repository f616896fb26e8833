package audit

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Timeline returns a user's records across all their reaches, newest first, at most limit per
// page; the returned token is empty on the last page.
func (s *Store) Timeline(ctx context.Context, userID string, limit int, pageToken string) ([]Record, string, error) {
	before, beforeID, err := decodeToken(pageToken)
	if err != nil {
		return nil, "", err
	}
	var beforeRow int64 = 1<<63 - 1
	if beforeID != "" {
		if _, err := fmt.Sscan(beforeID, &beforeRow); err != nil {
			return nil, "", ErrBadPageToken
		}
	}
	rows, err := s.pool.Query(ctx, `SELECT id, `+recordCols+` FROM audit_records
		WHERE user_id = $1 AND (at, id) < ($2::timestamptz, $3::bigint)
		ORDER BY at DESC, id DESC LIMIT $4`, userID, before, beforeRow, limit+1)
	if err != nil {
		return nil, "", fmt.Errorf("timeline of %s: %w", userID, err)
	}
	var ids []int64
	recs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Record, error) {
		var r Record
		var id int64
		err := row.Scan(append([]any{&id}, r.dest()...)...)
		ids = append(ids, id)
		return r, err
	})
	if err != nil {
		return nil, "", fmt.Errorf("timeline of %s: %w", userID, err)
	}
	next := ""
	if len(recs) > limit {
		recs = recs[:limit]
		next = encodeToken(recs[limit-1].At, fmt.Sprint(ids[limit-1]))
	}
	return recs, next, nil
}

// FunnelQuery selects the reaches of a funnel: matched in [From, To) for a rule and/or journey,
// optionally of one journey version, optionally only those a split sent down one path (or
// journey.Holdout, the control group).
type FunnelQuery struct {
	RuleID, JourneyID string
	JourneyVersion    int
	SplitPath         string
	From, To          time.Time
}

// Funnel counts reaches by how far they got. A reach counts once per stage.
type Funnel struct {
	Matched, Sent, Opened, Converted, Suppressed, Failed, Cancelled, Running int64
	// SuppressedBy counts suppressed reaches by the filter that dropped them.
	SuppressedBy map[string]int64
	// HeldOut counts the reaches the global control group held out (they send nothing).
	HeldOut int64
	// BySplitPath is the same funnel for the reaches a split sent down each path (journey.Holdout:
	// the split's control group) and for those the global control group held out
	// (journey.ControlGroup); nil when there are none.
	BySplitPath map[string]Funnel
}

// Funnel reads a funnel from the trail: matched -> sent -> opened (push_open) -> converted, with
// why the suppressed ones were dropped.
func (s *Store) Funnel(ctx context.Context, q FunnelQuery) (Funnel, error) {
	// Each reach's roll-up (audit_reaches, kept by a trigger as its records arrive) says how far
	// it got: one row per reach, not every record of it.
	rows, err := s.pool.Query(ctx, `
		SELECT coalesce(status, 'running'), coalesce(dropped_by, ''), coalesce(paths[1], held_out, ''), count(*),
			count(*) FILTER (WHERE sent), count(*) FILTER (WHERE opened), count(*) FILTER (WHERE converted)
		FROM audit_reaches
		WHERE matched_at >= $1 AND matched_at < $2 AND ($3::text = '' OR rule_id = $3) AND ($4::text = '' OR journey_id = $4)
			AND ($5::int = 0 OR version = $5) AND ($6::text = '' OR $6 = ANY(paths))
		GROUP BY 1, 2, 3`, q.From, q.To, q.RuleID, q.JourneyID, q.JourneyVersion, q.SplitPath)
	if err != nil {
		return Funnel{}, fmt.Errorf("funnel: %w", err)
	}
	defer rows.Close()
	f := Funnel{SuppressedBy: map[string]int64{}}
	for rows.Next() {
		var status, by, path string
		var n, sent, opened, converted int64
		if err := rows.Scan(&status, &by, &path, &n, &sent, &opened, &converted); err != nil {
			return Funnel{}, fmt.Errorf("funnel: %w", err)
		}
		f.addRow(status, by, path, n, sent, opened, converted)
	}
	return f, rows.Err()
}

// addRow counts n reaches that ended with status (dropped by by) on a split path (or held out by
// the control group; "" for neither), of which sent, opened and converted reached those stages.
func (f *Funnel) addRow(status, by, path string, n, sent, opened, converted int64) {
	f.add(status, by, n, sent, opened, converted)
	if path == "" {
		return
	}
	if f.BySplitPath == nil {
		f.BySplitPath = map[string]Funnel{}
	}
	p, ok := f.BySplitPath[path]
	if !ok {
		p.SuppressedBy = map[string]int64{}
	}
	p.add(status, by, n, sent, opened, converted)
	f.BySplitPath[path] = p
}

// add counts n reaches that ended with status (dropped by by), of which sent, opened and
// converted reached those stages.
func (f *Funnel) add(status, by string, n, sent, opened, converted int64) {
	f.Matched += n
	f.Sent += sent
	f.Opened += opened
	f.Converted += converted
	switch status {
	case "suppressed":
		f.Suppressed += n
		if by == "" {
			by = "other"
		}
		f.SuppressedBy[by] += n
	case "failed":
		f.Failed += n
	case "cancelled":
		f.Cancelled += n
	case "running":
		f.Running += n
	case "held_out":
		f.HeldOut += n
	}
}
