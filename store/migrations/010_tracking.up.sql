-- The tracking protocol: one record shape for every stage, in a table partitioned by day (UTC) so
-- retention drops whole partitions. Rows are still never updated.
ALTER TABLE audit_records RENAME TO audit_records_v1;

CREATE SEQUENCE audit_record_ids AS bigint;

CREATE TABLE audit_records (
    id              bigint      NOT NULL DEFAULT nextval('audit_record_ids'),
    reach_id        text        NOT NULL,
    step            text        NOT NULL,
    kind            text        NOT NULL,
    user_id         text        NOT NULL,
    rule_id         text        NOT NULL DEFAULT '',
    journey_id      text        NOT NULL DEFAULT '',
    channel         text        NOT NULL DEFAULT '',
    outcome         text        NOT NULL DEFAULT '',
    reason          text        NOT NULL DEFAULT '',
    idempotency_key text        NOT NULL DEFAULT '',
    at              timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    -- The W3C trace ID of the event behind the reach (32 hex digits), the same on every record of it.
    trace_id        text        NOT NULL DEFAULT '',
    rule_version    int         NOT NULL DEFAULT 0,
    journey_version int         NOT NULL DEFAULT 0,
    -- The event the record is about: the one that completed the match, a response, a goal.
    event_id        text        NOT NULL DEFAULT '',
    -- For failed records: whether a retry could have helped.
    retryable       boolean     NOT NULL DEFAULT false
) PARTITION BY RANGE (at);
ALTER SEQUENCE audit_record_ids OWNED BY audit_records.id;

-- Rows outside every day partition (far-past event times, a day not created yet) land here; the
-- maintenance moves them when it creates their day.
CREATE TABLE audit_records_default PARTITION OF audit_records DEFAULT;

-- omega_audit_partition creates the partition of one UTC day, moving its rows out of the default
-- partition first. Idempotent; callers serialise with an advisory lock.
CREATE FUNCTION omega_audit_partition(day date) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    name text := 'audit_records_' || to_char(day, 'YYYYMMDD');
    lo timestamptz := day::timestamp AT TIME ZONE 'UTC';
    hi timestamptz := (day + 1)::timestamp AT TIME ZONE 'UTC';
BEGIN
    IF to_regclass(name) IS NOT NULL THEN
        RETURN false;
    END IF;
    EXECUTE format('CREATE TABLE %I (LIKE audit_records INCLUDING DEFAULTS)', name);
    EXECUTE format('WITH moved AS (DELETE FROM audit_records_default WHERE at >= %L AND at < %L RETURNING *)
        INSERT INTO %I SELECT * FROM moved', lo, hi, name);
    EXECUTE format('ALTER TABLE audit_records ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', name, lo, hi);
    RETURN true;
END $$;

-- A partition for every day the old table has rows, and the next week.
SELECT omega_audit_partition(d::date) FROM (
    SELECT DISTINCT (at AT TIME ZONE 'UTC')::date AS d FROM audit_records_v1
    UNION SELECT generate_series((now() AT TIME ZONE 'UTC')::date - 1, (now() AT TIME ZONE 'UTC')::date + 7, '1 day')::date
) days;

INSERT INTO audit_records (id, reach_id, step, kind, user_id, rule_id, journey_id, channel, outcome, reason, idempotency_key, at, recorded_at, journey_version)
SELECT id, reach_id, step, kind, user_id, rule_id, journey_id, channel, outcome, reason, idempotency_key, at, recorded_at,
    CASE WHEN kind = 'routed' AND outcome ~ '^v[0-9]+$' THEN substr(outcome, 2)::int ELSE 0 END
FROM audit_records_v1;
SELECT setval('audit_record_ids', coalesce((SELECT max(id) FROM audit_records), 0) + 1, false);
DROP TABLE audit_records_v1;

-- A replayed write is a no-op: a workflow's replayed steps carry the same (replayed) time. The
-- partition key has to be part of every unique index.
CREATE UNIQUE INDEX audit_records_step_once ON audit_records (reach_id, step, kind, at);
CREATE UNIQUE INDEX audit_records_dispatch_once ON audit_records (idempotency_key, at)
    WHERE kind = 'dispatched' AND idempotency_key <> '';
CREATE INDEX audit_records_reach ON audit_records (reach_id, at);
CREATE INDEX audit_records_user_at ON audit_records (user_id, at DESC);
CREATE INDEX audit_records_trace ON audit_records (trace_id) WHERE trace_id <> '';
CREATE INDEX audit_records_matched_rule ON audit_records (rule_id, at) WHERE kind = 'matched';
CREATE INDEX audit_records_matched_journey ON audit_records (journey_id, at) WHERE kind = 'matched';
CREATE INDEX audit_records_dispatched_user ON audit_records (user_id, at) WHERE kind = 'dispatched';
