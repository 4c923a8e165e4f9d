-- pglab control database, version 1.

CREATE TABLE labs (
    id             text PRIMARY KEY,
    title          text NOT NULL,
    spec           jsonb NOT NULL,
    source_yaml    text NOT NULL,
    sources_digest text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- The reference and template databases of a lab, built on one server from
-- the sources with this digest.
CREATE TABLE lab_builds (
    lab_id         text NOT NULL REFERENCES labs ON DELETE CASCADE,
    server         text NOT NULL,
    sources_digest text NOT NULL,
    built_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (lab_id, server)
);

-- A participant (or group) database and where it was placed.
CREATE TABLE lab_databases (
    lab_id     text NOT NULL REFERENCES labs ON DELETE CASCADE,
    name       text NOT NULL,
    owner      text NOT NULL,
    server     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (lab_id, name)
);

CREATE TABLE participants (
    lab_id     text NOT NULL REFERENCES labs ON DELETE CASCADE,
    username   text NOT NULL,
    name       text NOT NULL,
    email      text NOT NULL,
    grp        text,
    database   text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (lab_id, username)
);

-- Initial passwords, kept only until the lab master has handed them out.
CREATE TABLE credentials (
    username         text PRIMARY KEY,
    initial_password text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE applies (
    id         bigserial PRIMARY KEY,
    lab_id     text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    changes    integer NOT NULL,
    summary    jsonb NOT NULL
);
