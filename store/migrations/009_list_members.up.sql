-- The blacklist and whitelist, durably: Redis holds a copy for the filter chain's hot path and
-- reloads it from here when it lost it (a restart without persistence).
CREATE TABLE list_members (
    list     text        NOT NULL,
    member   text        NOT NULL,
    added_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (list, member)
);
