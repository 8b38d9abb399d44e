-- Named queues, scheduled jobs and the resource a job works on.
--
-- Each process runs workers per queue, and a claim names its queue: the claim order index leads with it. Within a
-- queue the order is priority, then the time a job became due (`run_after`: enqueue time, or later when scheduled or
-- backing off), so a backlog of jobs scheduled for later never sits in front of a due one. `jobs_queued_due` finds
-- a queue's next due time (and whether anything is due at all) in one index probe.
--
-- `resource` is `kind:id` (`model:tc-01`), for access checks; jobs queued before it existed had the same text as
-- their key.
ALTER TABLE jobs ADD COLUMN queue TEXT NOT NULL DEFAULT 'default';
ALTER TABLE jobs ADD COLUMN resource TEXT;
UPDATE jobs SET resource = key WHERE key LIKE 'model:%' OR key LIKE 'mentor:%';
DROP INDEX jobs_claim_order;
CREATE INDEX jobs_claim_order ON jobs (queue, priority DESC, run_after, id) WHERE status IN ('QUEUED', 'IN_PROGRESS');
DROP INDEX jobs_queued_due;
CREATE INDEX jobs_queued_due ON jobs (queue, run_after) WHERE status = 'QUEUED';
