-- Times are integer milliseconds since the Unix epoch (UTC): cheap to compare for leases and backoff.

CREATE TABLE datasets (
    name        TEXT PRIMARY KEY,
    format      TEXT NOT NULL,
    rows        INTEGER NOT NULL,
    labels      TEXT NOT NULL,          -- JSON array
    size_bytes  INTEGER NOT NULL,
    blob_key    TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE models (
    id              TEXT PRIMARY KEY,
    active_version  INTEGER,
    meta            TEXT NOT NULL DEFAULT '{}',   -- JSON
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);

CREATE TABLE model_versions (
    model_id    TEXT NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    version     INTEGER NOT NULL,
    blob_key    TEXT NOT NULL,
    metrics     TEXT NOT NULL,          -- JSON
    params      TEXT NOT NULL,          -- JSON
    job_id      TEXT,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (model_id, version)
);

-- The durable queue. A worker claims a row by setting lease_owner/lease_expires_at; a row IN_PROGRESS whose lease
-- has lapsed is claimable again (at-least-once delivery). run_after delays retries.
CREATE TABLE jobs (
    id                TEXT PRIMARY KEY,
    kind              TEXT NOT NULL,
    status            TEXT NOT NULL,
    payload           TEXT NOT NULL,    -- JSON
    key               TEXT,
    priority          INTEGER NOT NULL DEFAULT 0,
    progress          INTEGER NOT NULL DEFAULT 0,
    error             TEXT,
    result            TEXT,             -- JSON
    attempts          INTEGER NOT NULL DEFAULT 0,
    max_attempts      INTEGER NOT NULL DEFAULT 3,
    lease_owner       TEXT,
    lease_expires_at  INTEGER,
    run_after         INTEGER NOT NULL,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    started_at        INTEGER,
    finished_at       INTEGER
);

CREATE INDEX jobs_claimable ON jobs (status, priority DESC, run_after, created_at);
CREATE INDEX jobs_key ON jobs (key);
