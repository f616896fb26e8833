-- Journeys as data, versioned like rules: a run keeps the version it started with.
CREATE TABLE journey_versions (
    journey_id text        NOT NULL,
    version    int         NOT NULL,
    spec       jsonb       NOT NULL,
    checksum   text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (journey_id, version)
);

CREATE TABLE journey_heads (
    journey_id     text        PRIMARY KEY,
    active_version int         NOT NULL,
    disabled       boolean     NOT NULL DEFAULT false,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- What journeys read about a user: time zone (wait until a local time), locale, free attributes
-- from offline jobs (branch conditions).
CREATE TABLE profiles (
    user_id    text        PRIMARY KEY,
    time_zone  text        NOT NULL DEFAULT '',
    locale     text        NOT NULL DEFAULT '',
    attrs      jsonb       NOT NULL DEFAULT '{}',
    updated_at timestamptz NOT NULL DEFAULT now()
);
