-- pglab control database, version 9: class data exports (a job each; the
-- archive under the data directory until it expires).

ALTER TABLE jobs DROP CONSTRAINT jobs_kind_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_kind_check
    CHECK (kind IN ('apply', 'restore', 'reset', 'snapshot', 'final', 'snapshot_restore', 'export'));

CREATE TABLE exports (
    id          bigserial PRIMARY KEY,
    lab_id      text NOT NULL REFERENCES labs ON DELETE CASCADE,
    job_id      bigint NOT NULL REFERENCES jobs ON DELETE CASCADE,
    started_by  text NOT NULL,
    -- What it includes beyond the tables: dumps, snapshots, logs; and
    -- whether its CSV files start with a byte order mark.
    options     jsonb NOT NULL,
    -- The size expected before it started, and its size once ready.
    estimate    bigint NOT NULL,
    size        bigint,
    -- The bytes of the archive without the optional files (the next
    -- estimate starts from it).
    tables_size bigint,
    -- Below the data directory; a random name, never a user's.
    file        text,
    -- `<lab>-<UTC timestamp>.zip`, for the download.
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    -- Set when its file was deleted (expired).
    deleted_at  timestamptz
);
CREATE UNIQUE INDEX exports_job ON exports (job_id);
CREATE INDEX exports_by_lab ON exports (lab_id, id);
