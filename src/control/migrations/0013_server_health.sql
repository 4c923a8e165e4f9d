-- pglab control database, version 13: each Postgres server's health, as
-- the scoring engine last found it (a heartbeat: a look every second at the
-- servers with participants, a connection every round at the others).

CREATE TABLE server_health (
    server     text PRIMARY KEY,
    up         boolean NOT NULL,
    -- When it last became up (or down).
    since      timestamptz NOT NULL,
    checked_at timestamptz NOT NULL,
    -- Why it is down.
    error      text
);
