-- pglab control database, version 7: the evidence trail. One row per
-- change of a task's state (not per round), and each participant session
-- period, per lab database.

CREATE TABLE task_history (
    id       bigserial PRIMARY KEY,
    lab_id   text NOT NULL REFERENCES labs ON DELETE CASCADE,
    database text NOT NULL,
    task     text NOT NULL,
    at       timestamptz NOT NULL,
    passed   boolean NOT NULL,
    points   integer NOT NULL,
    -- Why it does not pass (wrong, timeout, error, broken_check, ...).
    class    text
);
CREATE INDEX task_history_by_task ON task_history (lab_id, database, task, id);

CREATE TABLE session_history (
    id         bigserial PRIMARY KEY,
    lab_id     text NOT NULL REFERENCES labs ON DELETE CASCADE,
    database   text NOT NULL,
    started_at timestamptz NOT NULL,
    ended_at   timestamptz
);
CREATE INDEX session_history_by_database ON session_history (lab_id, database, started_at);
