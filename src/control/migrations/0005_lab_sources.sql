-- pglab control database, version 5: a lab's files (reference, starter and
-- the files they include) live with its spec, so that every pglab process
-- (a replica, a restarted one, the web app) builds from the same bytes the
-- lab was applied with.

CREATE TABLE lab_sources (
    lab_id    text NOT NULL REFERENCES labs ON DELETE CASCADE,
    -- Relative to the lab's folder: the reference's and starter's file
    -- names, an included file's path from them.
    file_name text NOT NULL,
    role      text NOT NULL CHECK (role IN ('reference', 'starter', 'include')),
    sha256    text NOT NULL,
    content   bytea NOT NULL,
    PRIMARY KEY (lab_id, file_name)
);
