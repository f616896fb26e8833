// Package audit is the append-only record of every step of every reach, in PostgreSQL: what the
// workflow decided (routed, filtered with a verdict and reason, dispatched, completed) and when.
// Writes are idempotent on (reach, step, kind), so a replayed activity adds no row; reads rebuild a
// user's reaches and their status from the rows.
package audit
