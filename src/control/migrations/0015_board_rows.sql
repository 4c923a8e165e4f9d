-- pglab control database, version 15: scoring shared by pglab replicas.
-- Each Postgres server's databases are scored by the one replica that holds
-- its lease (a session-level advisory lock in this database, gone with the
-- replica's session); it writes each participant's board row here when the
-- row changed, numbered from one sequence, and every other replica reads
-- the rows numbered after the last it read.

CREATE SEQUENCE board_row_seq;

CREATE TABLE board_rows (
    lab_id   text NOT NULL REFERENCES labs ON DELETE CASCADE,
    database text NOT NULL,
    server   text NOT NULL,
    -- The participant's row as the board shows it (scoring::ParticipantBoard).
    row      jsonb NOT NULL,
    seq      bigint NOT NULL,
    PRIMARY KEY (lab_id, database)
);
CREATE INDEX board_rows_seq ON board_rows (seq);
