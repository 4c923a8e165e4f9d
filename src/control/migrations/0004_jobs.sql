-- pglab control database, version 4: one durable job queue for applies and
-- restores (later exports, snapshots and mail). A submission keeps what was
-- handed in; its restore is a job.

CREATE TABLE jobs (
    id           bigserial PRIMARY KEY,
    kind         text NOT NULL CHECK (kind IN ('apply', 'restore')),
    lab_id       text NOT NULL REFERENCES labs ON DELETE CASCADE,
    -- Jobs with the same key run one at a time (a lab's apply, a database's
    -- restores).
    lock_key     text NOT NULL,
    title        text NOT NULL,
    started_by   text NOT NULL,
    -- What the job needs to run again after a crash (an apply's list).
    params       jsonb NOT NULL DEFAULT '{}',
    status       text NOT NULL DEFAULT 'queued'
                 CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    attempts     integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL DEFAULT 2,
    -- Which pglab process runs it, and when it last said so.
    worker       text,
    heartbeat_at timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    finished_at  timestamptz,
    total        integer NOT NULL DEFAULT 0,
    done         integer NOT NULL DEFAULT 0,
    -- Lines shown when the job ended.
    summary      jsonb NOT NULL DEFAULT '[]',
    error        text
);

CREATE INDEX jobs_queue ON jobs (id) WHERE status IN ('queued', 'running');
CREATE INDEX jobs_recent ON jobs (lock_key, finished_at);

CREATE TABLE job_log (
    job_id bigint NOT NULL REFERENCES jobs ON DELETE CASCADE,
    seq    bigserial,
    at     timestamptz NOT NULL DEFAULT now(),
    line   text NOT NULL,
    PRIMARY KEY (job_id, seq)
);

-- Every submission's restore becomes a job, with its state as it was.
ALTER TABLE submissions ADD COLUMN job_id bigint REFERENCES jobs ON DELETE CASCADE;
ALTER TABLE jobs ADD COLUMN moved_from bigint;
WITH moved AS (
    INSERT INTO jobs (kind, lab_id, lock_key, title, started_by, status, attempts,
                      worker, heartbeat_at, created_at, started_at, finished_at,
                      total, done, moved_from)
    SELECT 'restore', lab_id, 'restore:' || lab_id || '/' || database,
           'Restore into ' || database, uploaded_by, status, attempts, worker,
           heartbeat_at, uploaded_at, started_at, finished_at, 1,
           CASE WHEN status IN ('succeeded', 'failed') THEN 1 ELSE 0 END, id
    FROM submissions ORDER BY id
    RETURNING id, moved_from)
UPDATE submissions s SET job_id = m.id FROM moved m WHERE s.id = m.moved_from;
ALTER TABLE jobs DROP COLUMN moved_from;

DROP INDEX submissions_queue;
ALTER TABLE submissions
    ALTER COLUMN job_id SET NOT NULL,
    DROP COLUMN status,
    DROP COLUMN attempts,
    DROP COLUMN worker,
    DROP COLUMN heartbeat_at,
    DROP COLUMN started_at,
    DROP COLUMN finished_at;
CREATE UNIQUE INDEX submissions_job ON submissions (job_id);

-- The old queue could leave two running restores of one database (nothing
-- stopped two claims at once): all but the oldest wait again.
UPDATE jobs SET status = 'queued', worker = NULL, heartbeat_at = NULL
WHERE id IN (SELECT id FROM (SELECT id, row_number() OVER (PARTITION BY lock_key ORDER BY id) AS n
                             FROM jobs WHERE status = 'running') r
             WHERE n > 1);

-- Two workers can never run jobs of the same key at once.
CREATE UNIQUE INDEX jobs_one_running ON jobs (lock_key) WHERE status = 'running';
