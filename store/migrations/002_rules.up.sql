-- Rules as data: every applied version is kept; the head says which version runs.
CREATE TABLE rule_versions (
    rule_id    text        NOT NULL,
    version    int         NOT NULL,
    spec       jsonb       NOT NULL,
    checksum   text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (rule_id, version)
);

CREATE TABLE rule_heads (
    rule_id        text        PRIMARY KEY,
    active_version int         NOT NULL,
    disabled       boolean     NOT NULL DEFAULT false,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
