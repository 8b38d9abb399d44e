-- The claim's order (priority, then oldest) over the jobs a claim can take, so picking the next job walks this index
-- and stops at the first runnable row instead of sorting every queued job (O(queue length) per claim).
-- `jobs_claimable` stays for the status lookups (next due time, the lease reaper, listings).
CREATE INDEX jobs_claim_order ON jobs (priority DESC, created_at, id) WHERE status IN ('QUEUED', 'IN_PROGRESS');
