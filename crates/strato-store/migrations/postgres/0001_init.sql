-- The PostgreSQL twin of migrations/sqlite: the same numbered steps, so a later change adds one file to each
-- directory. Times are BIGINT milliseconds since the Unix epoch (UTC), as on SQLite, so both backends compare
-- leases and backoff the same way; JSON is JSONB (validated on write, queryable by operators).

CREATE TABLE datasets (
    name        TEXT PRIMARY KEY,
    format      TEXT NOT NULL,
    rows        BIGINT NOT NULL,
    labels      JSONB NOT NULL,         -- array of strings
    size_bytes  BIGINT NOT NULL,
    blob_key    TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE models (
    id              TEXT PRIMARY KEY,
    active_version  BIGINT,
    meta            JSONB NOT NULL DEFAULT '{}',
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);

CREATE TABLE model_versions (
    model_id    TEXT NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    version     BIGINT NOT NULL,
    blob_key    TEXT NOT NULL,
    metrics     JSONB NOT NULL,
    params      JSONB NOT NULL,
    job_id      TEXT,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (model_id, version)
);

-- The durable queue. A worker claims a row by setting lease_owner/lease_expires_at; a row IN_PROGRESS whose lease
-- has lapsed is claimable again (at-least-once delivery). run_after delays retries.
CREATE TABLE jobs (
    id                TEXT PRIMARY KEY,
    kind              TEXT NOT NULL,
    status            TEXT NOT NULL,
    payload           JSONB NOT NULL,
    key               TEXT,
    priority          INTEGER NOT NULL DEFAULT 0,
    progress          INTEGER NOT NULL DEFAULT 0,
    error             TEXT,
    result            JSONB,
    attempts          INTEGER NOT NULL DEFAULT 0,
    max_attempts      INTEGER NOT NULL DEFAULT 3,
    lease_owner       TEXT,
    lease_expires_at  BIGINT,
    run_after         BIGINT NOT NULL,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    started_at        BIGINT,
    finished_at       BIGINT
);

CREATE INDEX jobs_claimable ON jobs (status, priority DESC, run_after, created_at);
CREATE INDEX jobs_key ON jobs (key);
