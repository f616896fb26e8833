-- The in-app inbox: one row per message, unique by idempotency key so a retried send stores one.
CREATE TABLE inbox_messages (
    id              bigserial   PRIMARY KEY,
    user_id         text        NOT NULL,
    reach_id        text        NOT NULL,
    idempotency_key text        NOT NULL UNIQUE,
    template        text        NOT NULL DEFAULT '',
    title           text        NOT NULL DEFAULT '',
    body            text        NOT NULL,
    data            jsonb       NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    read_at         timestamptz
);
CREATE INDEX inbox_messages_user ON inbox_messages (user_id, id DESC);
