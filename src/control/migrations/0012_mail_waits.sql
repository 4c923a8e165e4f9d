-- pglab control database, version 12: mail that waits without holding the
-- queue, and mail that never reached a server.

-- A job that waits (a mail job whose messages wait for their next
-- attempt) is not claimed before then; other jobs of its key run meanwhile.
ALTER TABLE jobs ADD COLUMN not_before timestamptz;

-- A message that failed for a while is not tried again before then.
ALTER TABLE mail_messages ADD COLUMN not_before timestamptz;

-- `unsent`: the message never reached a server (the server could not be
-- reached, the job ended first); unlike `failed` (the server refused it),
-- it may be queued again: a reminder, a hand-in result, a digest, a
-- password.
ALTER TABLE mail_messages DROP CONSTRAINT mail_messages_status_check;
ALTER TABLE mail_messages ADD CONSTRAINT mail_messages_status_check
    CHECK (status IN ('queued', 'sending', 'sent', 'failed', 'uncertain', 'unsent'));
UPDATE mail_messages SET status = 'unsent'
 WHERE status = 'failed' AND answer LIKE 'not sent: the SMTP server%';

-- Each reminder, hand-in result and digest (to each address) once, unless
-- it never reached a server.
DROP INDEX mail_once;
CREATE UNIQUE INDEX mail_once ON mail_messages (lab_id, kind, (COALESCE(username, to_address)), about)
    WHERE kind IN ('reminder', 'hand_in', 'digest') AND status <> 'unsent';
