-- pglab control database, version 6: resetting a participant's database to
-- the lab's starter is a job too.

ALTER TABLE jobs DROP CONSTRAINT jobs_kind_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_kind_check CHECK (kind IN ('apply', 'restore', 'reset'));
