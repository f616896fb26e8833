package audit

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// OpenTimes returns when the user responded to a reach with one of types (push_open: opened a
// message) since then, newest first, at most limit: the history a send at the user's best hour
// is read from (journey.BestHourOf).
func (s *Store) OpenTimes(ctx context.Context, userID string, types []string, since time.Time, limit int) ([]time.Time, error) {
	rows, err := s.pool.Query(ctx, `SELECT at FROM audit_records
		WHERE user_id = $1 AND at >= $2 AND kind = 'responded' AND outcome = ANY($3)
		ORDER BY at DESC LIMIT $4`, userID, since, types, limit)
	if err != nil {
		return nil, fmt.Errorf("opens of %s: %w", userID, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[time.Time])
	if err != nil {
		return nil, fmt.Errorf("opens of %s: %w", userID, err)
	}
	return out, nil
}
