-- pglab control database, version 2: scores and installation secrets.

-- The latest outcome of each task on each lab database; written only when
-- it changes, so first-pass times survive restarts.
CREATE TABLE task_scores (
    lab_id          text NOT NULL REFERENCES labs ON DELETE CASCADE,
    database        text NOT NULL,
    task            text NOT NULL,
    passed          boolean NOT NULL,
    points          integer NOT NULL,
    reason          text,
    first_passed_at timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (lab_id, database, task)
);

CREATE TABLE database_progress (
    lab_id           text NOT NULL REFERENCES labs ON DELETE CASCADE,
    database         text NOT NULL,
    last_progress_at timestamptz,
    last_activity_at timestamptz,
    PRIMARY KEY (lab_id, database)
);

-- Random values made once per installation (e.g. the pseudonym key).
CREATE TABLE secrets (
    name       text PRIMARY KEY,
    value      text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
