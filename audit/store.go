package audit

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/omegareach/omega/internal/pii"
)

// Kinds of tracking records, in the order a reach goes through them.
const (
	// KindReceived: the event that completed the match reached the pipeline (At is when Kafka
	// took it).
	KindReceived = "received"
	// KindDeduplicated: a replayed match (a restart or rebalance redelivered its events) was
	// refused because its reach already exists.
	KindDeduplicated = "deduplicated"
	KindMatched      = "matched"
	// KindShadowMatched: a shadow rule matched; nothing was started.
	KindShadowMatched = "shadow_matched"
	KindRouted        = "routed"
	KindFiltered      = "filtered"
	// KindDeferred: the filter chain put a send off (quiet hours) until a later time.
	KindDeferred   = "deferred"
	KindSuppressed = "suppressed"
	KindDispatched = "dispatched"
	// KindDelivered: the provider's delivery receipt (a message_delivered event) for a sent message.
	KindDelivered = "delivered"
	// KindFailed: a step failed; Retryable says whether a retry could have helped.
	KindFailed    = "failed"
	KindCancelled = "cancelled"
	KindCompleted = "completed"
	// Journey steps. KindWaiting: a wait began (Reason: for what, until when); the reach is
	// waiting until a later record of its own steps (KindWaited, KindResponded, KindTimedOut...).
	KindWaiting   = "waiting"
	KindWaited    = "waited"
	KindResponded = "responded"
	KindTimedOut  = "timed_out"
	KindBranched  = "branched"
	KindSplit     = "split"
	// KindHeldOut: the global control group held the user out of a marketing journey.
	KindHeldOut   = "held_out"
	KindConverted = "converted"
	KindExited    = "exited"
)

// Record is one tracked step of a reach: the tracking protocol's one record shape, from the event
// that started it to its conversion.
type Record struct {
	ReachID string
	// TraceID is the W3C trace ID (32 hex digits) of the event behind the reach; every record of
	// a reach carries the same one.
	TraceID        string
	Step           string
	Kind           string
	UserID         string
	RuleID         string
	RuleVersion    int
	JourneyID      string
	JourneyVersion int
	Channel        string
	Outcome        string
	Reason         string
	IdempotencyKey string
	// EventID is the event the record is about (the one that completed the match, a response, a
	// goal, a delivery receipt).
	EventID string
	// Retryable: for failed records, whether a retry could have helped.
	Retryable bool
	At        time.Time
	// Batch names the records a workflow task writes together (its run and the number of the
	// write), Index a record's place among them: another attempt of the task writes only the
	// records past those already in, whatever its time. Neither is stored. Empty: no batch.
	Batch string `json:",omitempty"`
	Index int    `json:",omitempty"`
}

// Reach is a reach rebuilt from its records.
type Reach struct {
	ID        string
	UserID    string
	RuleID    string
	JourneyID string
	Status    string
	Channel   string
	StartedAt time.Time
	UpdatedAt time.Time
	Records   []Record
}

// ErrNotFound is returned when no record exists for a reach.
var ErrNotFound = errors.New("reach not found")

// Store reads and writes audit records.
type Store struct {
	pool *pgxpool.Pool
}

// NewStore wraps a pool whose database has been migrated with Migrate.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// Append writes records in one statement; a record whose (reach, step, kind, at) exists is
// skipped, so replays are no-ops (a workflow's replayed steps carry their first time), and so is
// a record of a batch at an index already written (another attempt of the task that wrote it). It
// returns how many rows were new. Reasons are stored with personal data masked (a provider's
// answer may quote the number or token it refused): the trail says what happened, the profile
// says to whom.
func (s *Store) Append(ctx context.Context, recs ...Record) (int64, error) {
	if len(recs) == 0 {
		return 0, nil
	}
	var c columns
	c.add(recs)
	q := appendSQL
	if slices.ContainsFunc(recs, func(r Record) bool { return r.Batch != "" }) {
		q = appendBatchSQL
	}
	tag, err := s.pool.Exec(ctx, q, c.args()...)
	if err != nil {
		return 0, fmt.Errorf("append %d audit records: %w", len(recs), err)
	}
	return tag.RowsAffected(), nil
}

// appendSQL and appendBatchSQL: Append's statement, for records without a batch and with.
var appendSQL, appendBatchSQL = appendStatement(false), appendStatement(true)

func appendStatement(batches bool) string {
	// A batch's records already in are read as of the statement's start, and its count moved on.
	withBatches, onlyNew := "", ""
	if batches {
		withBatches = `
		w AS (
			SELECT batch, written FROM audit_batches WHERE batch IN (SELECT batch FROM x WHERE batch <> '')),
		b AS (
			INSERT INTO audit_batches (batch, written)
			SELECT batch, max(idx) + 1 FROM x WHERE batch <> '' GROUP BY batch
			ON CONFLICT (batch) DO UPDATE SET written = GREATEST(audit_batches.written, EXCLUDED.written)),`
		onlyNew = `
			AND x.idx >= coalesce((SELECT written FROM w WHERE w.batch = x.batch), 0)`
	}
	return `
		WITH x AS (
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
				$9::text[], $10::text[], $11::timestamptz[], $12::text[], $13::int[], $14::int[], $15::text[], $16::bool[],
				$17::text[], $18::int[])
				AS x(` + insertCols + `, batch, idx)),` + withBatches + `
		-- No second dispatched row for one idempotency key, whatever its step or time: the key is
		-- claimed in audit_dispatch_keys (a partitioned table's unique indexes must hold the time).
		k AS (
			INSERT INTO audit_dispatch_keys (idempotency_key)
			SELECT DISTINCT idempotency_key FROM x WHERE kind = 'dispatched' AND idempotency_key <> ''
			ON CONFLICT DO NOTHING
			RETURNING idempotency_key)
		INSERT INTO audit_records (` + insertCols + `)
		SELECT ` + insertCols + ` FROM x
		WHERE NOT (x.kind = 'dispatched' AND x.idempotency_key <> '' AND x.idempotency_key NOT IN (SELECT idempotency_key FROM k))` + onlyNew + `
		ON CONFLICT DO NOTHING`
}

const insertCols = `reach_id, step, kind, user_id, rule_id, journey_id, channel, outcome, reason, idempotency_key, at,
	trace_id, rule_version, journey_version, event_id, retryable`

// columns holds records column-wise, in insertCols' order, for unnest.
type columns struct {
	text                        [10][]string // reach_id ... idempotency_key
	at                          []time.Time
	traceID, eventID            []string
	ruleVersion, journeyVersion []int32
	retryable                   []bool
	batch                       []string
	index                       []int32
}

func (c *columns) add(recs []Record) {
	for _, r := range recs {
		for i, v := range [...]string{r.ReachID, r.Step, r.Kind, r.UserID, r.RuleID, r.JourneyID, r.Channel, r.Outcome,
			pii.Mask(r.Reason), r.IdempotencyKey} {
			c.text[i] = append(c.text[i], clean(v))
		}
		c.at = append(c.at, r.At)
		c.traceID = append(c.traceID, clean(r.TraceID))
		c.ruleVersion = append(c.ruleVersion, int32(r.RuleVersion))
		c.journeyVersion = append(c.journeyVersion, int32(r.JourneyVersion))
		c.eventID = append(c.eventID, clean(r.EventID))
		c.retryable = append(c.retryable, r.Retryable)
		c.batch = append(c.batch, r.Batch)
		c.index = append(c.index, int32(r.Index))
	}
}

// clean makes text PostgreSQL stores: valid UTF-8 without NUL (a provider's error may carry either).
func clean(s string) string {
	return strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", ""), "\uFFFD")
}

func (c *columns) args() []any {
	t := c.text
	return []any{t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7], t[8], t[9], c.at, c.traceID, c.ruleVersion,
		c.journeyVersion, c.eventID, c.retryable, c.batch, c.index}
}

const recordCols = insertCols

// Get returns one reach with all its records.
func (s *Store) Get(ctx context.Context, reachID string) (Reach, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+recordCols+` FROM audit_records WHERE reach_id = $1 ORDER BY at, id`, reachID)
	if err != nil {
		return Reach{}, fmt.Errorf("read reach %s: %w", reachID, err)
	}
	recs, err := pgx.CollectRows(rows, scanRecord)
	if err != nil {
		return Reach{}, fmt.Errorf("read reach %s: %w", reachID, err)
	}
	if len(recs) == 0 {
		return Reach{}, ErrNotFound
	}
	return fold(recs), nil
}

// ListByUser returns a user's reaches, newest first, at most limit per page. pageToken is empty
// for the first page; the returned token is empty on the last page.
func (s *Store) ListByUser(ctx context.Context, userID string, limit int, pageToken string) ([]Reach, string, error) {
	return s.List(ctx, Query{UserID: userID, Limit: limit, PageToken: pageToken})
}

// Query selects a page of one user's reaches.
type Query struct {
	UserID string
	// Status keeps only reaches with this status as fold computes it (running or waiting until a
	// completed or cancelled record says otherwise); all when empty. running keeps every reach
	// still in progress, waiting ones included (what callers asking for running always meant).
	Status    string
	Limit     int
	PageToken string
}

// List returns a page of a user's reaches, newest first; the returned token is empty on the last
// page.
func (s *Store) List(ctx context.Context, q Query) ([]Reach, string, error) {
	userID, limit := q.UserID, q.Limit
	before, beforeID, err := decodeToken(q.PageToken)
	if err != nil {
		return nil, "", err
	}
	// The status is fold's, in SQL: the last completed/cancelled outcome, else shadow, else waiting
	// when the last record of its own steps began a wait, else running.
	rows, err := s.pool.Query(ctx, `
		WITH s AS (
			SELECT reach_id, min(at) AS started,
				coalesce((array_agg(outcome ORDER BY at DESC, id DESC) FILTER (WHERE kind IN ('completed', 'cancelled')))[1],
					CASE WHEN bool_or(kind = 'shadow_matched') THEN 'shadow'
						WHEN (array_agg(kind ORDER BY at DESC, id DESC) FILTER (WHERE kind <> ALL ($6::text[])))[1] = 'waiting' THEN 'waiting'
						ELSE 'running' END) AS status
			FROM audit_records WHERE user_id = $1
			GROUP BY reach_id),
		r AS (
			SELECT reach_id, started FROM s
			WHERE (started, reach_id) < ($2::timestamptz, $3::text)
				AND ($5::text = '' OR status = $5::text OR ($5::text = 'running' AND status = 'waiting'))
			ORDER BY started DESC, reach_id DESC
			LIMIT $4)
		SELECT `+prefixed("a.", recordCols)+` FROM audit_records a JOIN r USING (reach_id)
		ORDER BY r.started DESC, a.reach_id DESC, a.at, a.id`,
		userID, before, beforeID, limit+1, q.Status, aside)
	if err != nil {
		return nil, "", fmt.Errorf("list reaches of %s: %w", userID, err)
	}
	recs, err := pgx.CollectRows(rows, scanRecord)
	if err != nil {
		return nil, "", fmt.Errorf("list reaches of %s: %w", userID, err)
	}
	var out []Reach
	for start := 0; start < len(recs); {
		end := start
		for end < len(recs) && recs[end].ReachID == recs[start].ReachID {
			end++
		}
		out = append(out, fold(recs[start:end]))
		start = end
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		last := out[len(out)-1]
		next = encodeToken(last.StartedAt, last.ID)
	}
	return out, next, nil
}

func prefixed(p, cols string) string {
	parts := strings.Split(cols, ",")
	for i := range parts {
		parts[i] = p + strings.TrimSpace(parts[i])
	}
	return strings.Join(parts, ", ")
}

func scanRecord(row pgx.CollectableRow) (Record, error) {
	var r Record
	err := row.Scan(r.dest()...)
	return r, err
}

// dest is where a row of recordCols scans into.
func (r *Record) dest() []any {
	return []any{&r.ReachID, &r.Step, &r.Kind, &r.UserID, &r.RuleID, &r.JourneyID, &r.Channel, &r.Outcome, &r.Reason,
		&r.IdempotencyKey, &r.At, &r.TraceID, &r.RuleVersion, &r.JourneyVersion, &r.EventID, &r.Retryable}
}

// aside are the kinds of record written beside a reach's own steps (a delivery receipt, an
// attributed conversion, a replay refused, the event's arrival): they do not end a wait.
var aside = []string{KindDelivered, KindConverted, KindDeduplicated, KindReceived}

// fold rebuilds a reach from its records in time order. The completed record's outcome is the final
// status; before it, the reach is waiting when its last own step record began a wait, else
// running. List's query says the same in SQL.
func fold(recs []Record) Reach {
	r := Reach{ID: recs[0].ReachID, UserID: recs[0].UserID, Status: "running", StartedAt: recs[0].At, Records: recs}
	last := ""
	for _, rec := range recs {
		if !slices.Contains(aside, rec.Kind) {
			last = rec.Kind
		}
		if rec.RuleID != "" {
			r.RuleID = rec.RuleID
		}
		if rec.JourneyID != "" {
			r.JourneyID = rec.JourneyID
		}
		if rec.Channel != "" {
			r.Channel = rec.Channel
		}
		switch rec.Kind {
		case KindCompleted, KindCancelled:
			r.Status = rec.Outcome
		case KindShadowMatched:
			r.Status = "shadow"
		}
		r.UpdatedAt = rec.At
	}
	if r.Status == "running" && last == KindWaiting {
		r.Status = "waiting"
	}
	return r
}

// ErrBadPageToken is returned for a page token this store did not issue.
var ErrBadPageToken = errors.New("malformed page token")

func encodeToken(at time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(at.UTC().Format(time.RFC3339Nano) + "|" + id))
}

func decodeToken(tok string) (time.Time, string, error) {
	if tok == "" {
		return time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return time.Time{}, "", ErrBadPageToken
	}
	ts, id, ok := strings.Cut(string(b), "|")
	at, err := time.Parse(time.RFC3339Nano, ts)
	if !ok || err != nil {
		return time.Time{}, "", ErrBadPageToken
	}
	return at, id, nil
}

// Pool is the store's database, for the stores that share it (rules, journeys, profiles).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }
