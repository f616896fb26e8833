package audit

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultRetention is how long records are kept when the operator says nothing (OMEGA_AUDIT_RETENTION).
const DefaultRetention = 90 * 24 * time.Hour

// partitionsAhead is how many days of partitions exist before they are needed.
const partitionsAhead = 7

// maintenanceLock is the advisory lock that serialises maintenance across replicas.
const maintenanceLock = 0x6f6d6567 // "omeg"

// MaintenanceReport says what one maintenance pass changed.
type MaintenanceReport struct {
	Created []string // partitions created
	Dropped []string // partitions dropped for retention
	// Purged counts rows older than the retention deleted from the default partition.
	Purged int64
}

// batchRetention is how long an audit batch's count is kept (Store.Append).
const batchRetention = 7 * 24 * time.Hour

// Maintain creates the day partitions from yesterday to a week ahead (moving rows that waited in
// the default partition) and drops the partitions wholly older than retention (and deletes such
// rows from the default partition, and the dispatch keys and reach roll-ups as old; audit batches
// after a week). Replicas may
// call it at once: one does the work, the others return at once. Each step is a transaction of its own that waits
// at most 2 s for its locks, so a long reader of the trail delays the step to the next pass
// instead of queueing every writer behind it. now is the clock (UTC days).
func (s *Store) Maintain(ctx context.Context, now time.Time, retention time.Duration) (MaintenanceReport, error) {
	var rep MaintenanceReport
	if retention <= 0 {
		return rep, fmt.Errorf("audit retention must be positive, got %s", retention)
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return rep, err
	}
	defer conn.Release()
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, maintenanceLock).Scan(&got); err != nil || !got {
		return rep, err
	}
	defer func() { _, _ = conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, maintenanceLock) }()
	if _, err := conn.Exec(ctx, `SET lock_timeout = '2s'`); err != nil {
		return rep, err
	}
	defer func() { _, _ = conn.Exec(context.WithoutCancel(ctx), `RESET lock_timeout`) }()

	today := now.UTC().Truncate(24 * time.Hour)
	for d := -1; d <= partitionsAhead; d++ {
		day := today.AddDate(0, 0, d)
		var created bool
		if err := conn.QueryRow(ctx, `SELECT omega_audit_partition($1::date)`, day.Format(time.DateOnly)).Scan(&created); err != nil {
			return rep, fmt.Errorf("create partition for %s: %w", day.Format(time.DateOnly), err)
		}
		if created {
			rep.Created = append(rep.Created, partitionName(day))
		}
	}
	cutoff := now.Add(-retention)
	rows, err := conn.Query(ctx, `
		SELECT c.relname FROM pg_inherits i
		JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = 'audit_records'::regclass AND c.relname ~ '^audit_records_[0-9]{8}$'`)
	if err != nil {
		return rep, fmt.Errorf("list audit partitions: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return rep, fmt.Errorf("list audit partitions: %w", err)
	}
	for _, name := range names {
		day, err := time.Parse("20060102", name[len("audit_records_"):])
		if err != nil || day.AddDate(0, 0, 1).After(cutoff) {
			continue // still holds records within retention
		}
		if _, err := conn.Exec(ctx, `DROP TABLE `+pgx.Identifier{name}.Sanitize()); err != nil {
			return rep, fmt.Errorf("drop partition %s: %w", name, err)
		}
		rep.Dropped = append(rep.Dropped, name)
	}
	tag, err := conn.Exec(ctx, `DELETE FROM audit_records_default WHERE at < $1`, cutoff)
	if err != nil {
		return rep, fmt.Errorf("purge default partition: %w", err)
	}
	rep.Purged = tag.RowsAffected()
	if _, err := conn.Exec(ctx, `DELETE FROM audit_dispatch_keys WHERE created_at < $1`, cutoff); err != nil {
		return rep, fmt.Errorf("purge dispatch keys: %w", err)
	}
	// A batch matters while its workflow task may run again: minutes, a week at the most.
	batchCutoff := now.Add(-batchRetention)
	if cutoff.After(batchCutoff) {
		batchCutoff = cutoff
	}
	if _, err := conn.Exec(ctx, `DELETE FROM audit_batches WHERE created_at < $1`, batchCutoff); err != nil {
		return rep, fmt.Errorf("purge audit batches: %w", err)
	}
	// A reach's roll-up goes with its last record.
	if _, err := conn.Exec(ctx, `DELETE FROM audit_reaches WHERE last_at < $1`, cutoff); err != nil {
		return rep, fmt.Errorf("purge reach roll-ups: %w", err)
	}
	return rep, nil
}

func partitionName(day time.Time) string { return "audit_records_" + day.Format("20060102") }

// RunMaintenance runs Maintain now and then every interval until ctx ends, logging what it did.
func (s *Store) RunMaintenance(ctx context.Context, log *slog.Logger, retention, interval time.Duration) {
	for {
		rep, err := s.Maintain(ctx, time.Now(), retention)
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn("audit maintenance", "err", err)
		case len(rep.Created)+len(rep.Dropped) > 0 || rep.Purged > 0:
			log.Info("audit maintenance", "created", rep.Created, "dropped", rep.Dropped, "purged", rep.Purged)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}
