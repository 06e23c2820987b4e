-- Teams, budgets and rate limits created over the admin API or the CLI (docs/teams.md). One row per
-- object: `body` is its validated JSON; `unique_key` is what may not be declared twice (a team's
-- name, a budget's scope, unit and window, a rate limit's scope). Every change leaves one row in
-- margin_object_changes (who, when, before and after) in the same transaction. Objects declared in
-- the config file are never stored here: each replica reads them from its own file.

CREATE TABLE margin_objects (
    kind TEXT NOT NULL,
    object_id TEXT NOT NULL,
    unique_key TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (kind, object_id)
);
CREATE UNIQUE INDEX margin_objects_unique ON margin_objects (kind, unique_key);

CREATE TABLE margin_object_changes (
    seq BIGSERIAL PRIMARY KEY,
    at DOUBLE PRECISION NOT NULL,
    actor TEXT NOT NULL,
    kind TEXT NOT NULL,
    object_id TEXT NOT NULL,
    action TEXT NOT NULL,
    before TEXT,
    after TEXT
);
CREATE INDEX margin_object_changes_by_object ON margin_object_changes (kind, object_id, seq);
