-- Fewer index writes per job. A job's row changes three times (queued, claimed, finished) and none of those
-- updates can be HOT (`status` is indexed), so every index whose predicate holds gets a new entry each time.
-- `jobs_claimable` (status, priority, run_after, created_at) took an entry on all three, but since 0004 the claim
-- walks `jobs_claim_order`; what it still served (the next due time, the lease reaper) is covered by two small
-- partial indexes that take one entry each. Most jobs have no key: `jobs_key` now leaves them out (every lookup is
-- `key = …`, which implies `key IS NOT NULL`).
DROP INDEX jobs_claimable;
DROP INDEX jobs_key;
CREATE INDEX jobs_key ON jobs (key) WHERE key IS NOT NULL;
CREATE INDEX jobs_queued_due ON jobs (run_after) WHERE status = 'QUEUED';
CREATE INDEX jobs_lease_expiry ON jobs (lease_expires_at) WHERE status = 'IN_PROGRESS';
