-- pglab control database, version 14: placement beyond least-loaded. A
-- participant (or every member of a group) may be pinned to a server by
-- the `server` column of the participant list; a database moved between
-- servers (`pglab move`, `pglab drain`) remembers where it was and when it
-- moved, so that its participant's page can say that the psql command
-- changed.

ALTER TABLE participants ADD COLUMN pinned text;

ALTER TABLE lab_databases ADD COLUMN moved_from text;
ALTER TABLE lab_databases ADD COLUMN moved_at timestamptz;

ALTER TABLE jobs DROP CONSTRAINT jobs_kind_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_kind_check
    CHECK (kind IN ('apply', 'restore', 'reset', 'snapshot', 'final', 'snapshot_restore', 'export', 'mail', 'move'));
