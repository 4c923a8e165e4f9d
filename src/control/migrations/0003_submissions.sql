-- pglab control database, version 3: dump submissions and their restore jobs.

CREATE TABLE submissions (
    id            bigserial PRIMARY KEY,
    lab_id        text NOT NULL REFERENCES labs ON DELETE CASCADE,
    -- The database the dump goes into, its server and owner role.
    database      text NOT NULL,
    server        text NOT NULL,
    owner         text NOT NULL,
    -- The participant's group (per-group labs), for the job log.
    grp           text,
    uploaded_by   text NOT NULL,
    uploaded_at   timestamptz NOT NULL DEFAULT now(),
    size          bigint NOT NULL,
    format        text NOT NULL,
    file          text NOT NULL,
    late          boolean NOT NULL,
    -- pg_restore --list of an archive.
    contents      text,
    status        text NOT NULL DEFAULT 'queued'
                  CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    attempts      integer NOT NULL DEFAULT 0,
    -- Which pglab process runs it, and when it last said so.
    worker        text,
    heartbeat_at  timestamptz,
    started_at    timestamptz,
    finished_at   timestamptz,
    -- The scratch database while running; the kept previous database after
    -- success.
    scratch       text,
    previous      text,
    -- [{"message", "statement", "toc", "line"}]
    errors        jsonb NOT NULL DEFAULT '[]',
    note          text
);

CREATE INDEX submissions_queue ON submissions (id) WHERE status IN ('queued', 'running');
CREATE INDEX submissions_by_database ON submissions (lab_id, database, id);
