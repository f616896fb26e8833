-- The event catalogue as data, versioned like rules and journeys: each event type's scope,
-- attribute schema and uses. The default types (event/demo) apply until a stored version replaces
-- or disables them.
CREATE TABLE event_type_versions (
    event_type_id text        NOT NULL,
    version       int         NOT NULL,
    spec          jsonb       NOT NULL,
    checksum      text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_type_id, version)
);

CREATE TABLE event_type_heads (
    event_type_id  text        PRIMARY KEY,
    active_version int         NOT NULL,
    disabled       boolean     NOT NULL DEFAULT false,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
