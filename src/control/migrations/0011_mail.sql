-- pglab control database, version 11: outgoing mail. Each message is a
-- row of a mail job, sent in order and recorded as sent before the next;
-- a password is never stored here (a credentials message reads it from
-- `credentials` when it is sent).

ALTER TABLE jobs DROP CONSTRAINT jobs_kind_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_kind_check
    CHECK (kind IN ('apply', 'restore', 'reset', 'snapshot', 'final', 'snapshot_restore', 'export', 'mail'));

CREATE TABLE mail_messages (
    id          bigserial PRIMARY KEY,
    job_id      bigint NOT NULL REFERENCES jobs ON DELETE CASCADE,
    lab_id      text NOT NULL REFERENCES labs ON DELETE CASCADE,
    kind        text NOT NULL CHECK (kind IN ('credentials', 'reminder', 'hand_in', 'digest')),
    -- The participant it is for (or about).
    username    text,
    -- What it is about: the hand-in (its id), the reminder (seconds
    -- before the deadline), each of which a participant gets once; or the
    -- password (when it was set) a credentials message is for.
    about       bigint,
    to_name     text NOT NULL,
    to_address  text NOT NULL,
    subject     text NOT NULL,
    -- `sending` while the server has it; a message still `sending` when
    -- its job was interrupted may or may not have arrived: `uncertain`,
    -- never sent again by itself.
    status      text NOT NULL DEFAULT 'queued'
                CHECK (status IN ('queued', 'sending', 'sent', 'failed', 'uncertain')),
    attempts    integer NOT NULL DEFAULT 0,
    -- The server's last answer (or why there was none).
    answer      text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz
);
CREATE INDEX mail_by_job ON mail_messages (job_id, id);
CREATE INDEX mail_by_lab ON mail_messages (lab_id, id);
CREATE UNIQUE INDEX mail_once ON mail_messages (lab_id, kind, username, about)
    WHERE kind IN ('reminder', 'hand_in');

-- When the initial password was put in a message: it is mailed once; a
-- reset (a new password) makes it mailable again.
ALTER TABLE credentials ADD COLUMN mailed_at timestamptz;
