-- Job reliability: per-attempt history, cancellation, idempotency keys, dead-letter queue, per-job time limit.

ALTER TABLE jobs ADD COLUMN timeout_ms BIGINT NOT NULL DEFAULT 3600000;
ALTER TABLE jobs ADD COLUMN idempotency_key TEXT;
ALTER TABLE jobs ADD COLUMN cancel_requested BOOLEAN NOT NULL DEFAULT FALSE;
-- Set when the job exhausted its attempts: the row is then a dead-letter queue entry until replayed or deleted.
ALTER TABLE jobs ADD COLUMN dead_lettered_at BIGINT;

CREATE UNIQUE INDEX jobs_idempotency ON jobs (idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX jobs_dead_lettered ON jobs (dead_lettered_at) WHERE dead_lettered_at IS NOT NULL;
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;

-- One row per attempt. `attempt` repeats when an attempt was released (handed back on shutdown), so the key is
-- a surrogate.
CREATE TABLE job_attempts (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id       TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    attempt      INTEGER NOT NULL,
    worker       TEXT NOT NULL,
    started_at   BIGINT NOT NULL,
    finished_at  BIGINT,
    outcome      TEXT NOT NULL DEFAULT 'running',
    error        TEXT
);

CREATE INDEX job_attempts_job ON job_attempts (job_id, id);
