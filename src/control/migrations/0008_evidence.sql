-- pglab control database, version 8: snapshots of participants' databases,
-- the final state of each database at its deadline, and per-participant
-- extensions of the deadline.

ALTER TABLE jobs DROP CONSTRAINT jobs_kind_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_kind_check
    CHECK (kind IN ('apply', 'restore', 'reset', 'snapshot', 'final', 'snapshot_restore'));

CREATE TABLE snapshots (
    id        bigserial PRIMARY KEY,
    lab_id    text NOT NULL REFERENCES labs ON DELETE CASCADE,
    database  text NOT NULL,
    -- Numbered per database from 1, never reused.
    n         integer NOT NULL,
    kind      text NOT NULL CHECK (kind IN ('periodic', 'final', 'before_restore', 'manual')),
    -- When the state it holds was read.
    taken_at  timestamptz NOT NULL,
    -- Below the data directory.
    file      text NOT NULL,
    size      bigint NOT NULL,
    sha256    text NOT NULL,
    -- The database and its count of written rows when it was taken: a
    -- database whose count did not move since is not dumped again.
    signature text NOT NULL,
    took_ms   integer NOT NULL,
    UNIQUE (lab_id, database, n)
);

-- The last interval in which each database was looked at for a periodic
-- snapshot (queued at most once per interval, by any replica).
CREATE TABLE snapshot_schedule (
    lab_id   text NOT NULL REFERENCES labs ON DELETE CASCADE,
    database text NOT NULL,
    period   bigint NOT NULL,
    PRIMARY KEY (lab_id, database)
);

CREATE TABLE extensions (
    lab_id     text NOT NULL REFERENCES labs ON DELETE CASCADE,
    username   text NOT NULL,
    until      timestamptz NOT NULL,
    granted_by text NOT NULL,
    granted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (lab_id, username)
);

CREATE TABLE final_states (
    id            bigserial PRIMARY KEY,
    lab_id        text NOT NULL REFERENCES labs ON DELETE CASCADE,
    database      text NOT NULL,
    deadline      timestamptz NOT NULL,
    taken_at      timestamptz NOT NULL,
    -- Taken more than a minute after the deadline, and why.
    late          boolean NOT NULL,
    reason        text,
    snapshot_id   bigint REFERENCES snapshots ON DELETE SET NULL,
    points        integer NOT NULL,
    max_points    integer NOT NULL,
    -- Per task: id, passed, points, reason.
    tasks         jsonb NOT NULL,
    -- Why there is no snapshot (pg_dump failed in the student's database).
    snapshot_error text,
    policy        text NOT NULL CHECK (policy IN ('keep-open', 'read-only', 'lock')),
    -- When the policy was applied (after a crash it is applied again).
    enforced_at   timestamptz,
    -- An extension granted after it was taken replaces it.
    superseded_at timestamptz
);
CREATE UNIQUE INDEX final_states_current ON final_states (lab_id, database)
    WHERE superseded_at IS NULL;
