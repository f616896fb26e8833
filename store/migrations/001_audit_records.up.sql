-- One row per audited step of a reach. Append-only: rows are never updated.
CREATE TABLE audit_records (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
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
    -- A replayed activity writes nothing new.
    CONSTRAINT audit_records_step_once UNIQUE (reach_id, step, kind)
);

-- No second dispatch row for one idempotency key, whatever the step is called.
CREATE UNIQUE INDEX audit_records_dispatch_once ON audit_records (idempotency_key)
    WHERE kind = 'dispatched' AND idempotency_key <> '';

CREATE INDEX audit_records_user_at ON audit_records (user_id, at DESC);
