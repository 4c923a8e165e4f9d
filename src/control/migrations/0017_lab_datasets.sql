-- pglab control database, version 17: a lab's hidden datasets (issue 20)
-- are stored with its other files.

ALTER TABLE lab_sources DROP CONSTRAINT lab_sources_role_check;
ALTER TABLE lab_sources ADD CONSTRAINT lab_sources_role_check
    CHECK (role IN ('reference', 'starter', 'dataset', 'include'));
