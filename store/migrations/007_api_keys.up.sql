-- API keys: only the SHA-256 of a key is stored; the key itself is shown once, when created.
CREATE TABLE api_keys (
    id          text        PRIMARY KEY,
    name        text        NOT NULL,
    hash        bytea       NOT NULL UNIQUE,
    scopes      text[]      NOT NULL,
    -- Requests per second the key may make (per API replica); 0 = the server's default.
    rate_limit  real        NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
-- One live key per name: a name says who holds the key.
CREATE UNIQUE INDEX api_keys_live_name ON api_keys (name) WHERE revoked_at IS NULL;
