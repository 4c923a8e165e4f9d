//! Outgoing mail: the messages of mail jobs, in the order they are sent.

use super::jobs::{insert_job, NewJob};
use super::types::column;
use super::{MailKind, MailStatus, Store, StoreError};
use crate::ident::LabId;
use chrono::{DateTime, Utc};
use tokio_postgres::Row;

/// A message as recorded (never its body: that is made when it is sent).
#[derive(Debug, Clone, serde::Serialize)]
pub struct MailRecord {
    pub id: i64,
    pub job: i64,
    pub lab: LabId,
    pub kind: MailKind,
    pub username: Option<String>,
    pub to_name: String,
    pub to_address: String,
    pub subject: String,
    pub status: MailStatus,
    pub attempts: i32,
    pub answer: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub about: Option<i64>,
}

/// A message to queue.
pub struct NewMail<'a> {
    pub kind: MailKind,
    pub username: Option<&'a str>,
    /// What it is about (a hand-in's id, a reminder's seconds before the
    /// deadline): such a message goes to a participant once.
    pub about: Option<i64>,
    pub to_name: &'a str,
    pub to_address: &'a str,
    pub subject: &'a str,
}

const COLUMNS: &str = "id, job_id, lab_id, kind, username, to_name, to_address, subject, status, attempts, answer, created_at, updated_at, sent_at, about";

fn mail(r: &Row) -> Result<MailRecord, StoreError> {
    let id: i64 = r.get(0);
    let key = || id.to_string();
    Ok(MailRecord {
        id,
        job: r.get(1),
        lab: column(r, 2, "mail", key)?,
        kind: column(r, 3, "mail", key)?,
        username: r.get(4),
        to_name: r.get(5),
        to_address: r.get(6),
        subject: r.get(7),
        status: column(r, 8, "mail", key)?,
        attempts: r.get(9),
        answer: r.get(10),
        created_at: r.get(11),
        updated_at: r.get(12),
        sent_at: r.get(13),
        about: r.get(14),
    })
}

/// Mail jobs that may wait at once (they run one at a time: one SMTP server).
const PENDING_MAIL_JOBS: i64 = 1000;

impl Store {
    /// Queues a mail job with its messages, in one transaction. With
    /// `claim_passwords`, each message takes its participant's initial
    /// password (marks it mailed): a message whose password was mailed
    /// already, by a request just before, is left out. The job and the
    /// messages queued; `None` when too many mail jobs wait.
    pub async fn queue_mail(
        &self,
        job: &NewJob<'_>,
        mails: &[NewMail<'_>],
        claim_passwords: bool,
    ) -> Result<Option<(i64, usize)>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let Some(id) = insert_job(&*tx, job, PENDING_MAIL_JOBS).await? else {
            return Ok(None);
        };
        let mut queued = 0;
        for m in mails {
            if claim_passwords {
                // The password the message is for (`about`: when it was
                // set), not mailed yet.
                let taken = tx
                    .execute(
                        "UPDATE credentials SET mailed_at = now()
                         WHERE username = $1 AND mailed_at IS NULL AND initial_password IS NOT NULL
                           AND (extract(epoch FROM created_at) * 1000000)::bigint = $2",
                        &[&m.username, &m.about],
                    )
                    .await?;
                if taken == 0 {
                    continue;
                }
            }
            queued += tx
                .execute(
                    "INSERT INTO mail_messages (job_id, lab_id, kind, username, about, to_name, to_address, subject)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                     ON CONFLICT (lab_id, kind, username, about)
                         WHERE kind IN ('reminder', 'hand_in') DO NOTHING",
                    &[&id, job.lab, &m.kind, &m.username, &m.about, &m.to_name, &m.to_address, &m.subject],
                )
                .await? as usize;
        }
        if queued == 0 {
            return Ok(Some((0, 0))); // dropped with the transaction
        }
        tx.execute(
            "UPDATE jobs SET total = $2 WHERE id = $1",
            &[&id, &(queued as i32)],
        )
        .await?;
        tx.commit().await?;
        Ok(Some((id, queued)))
    }

    /// The next message of a job to send, if any.
    pub async fn next_mail(&self, job: i64) -> Result<Option<MailRecord>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                &format!(
                    "SELECT {COLUMNS} FROM mail_messages
                     WHERE job_id = $1 AND status = 'queued' ORDER BY id LIMIT 1"
                ),
                &[&job],
            )
            .await?;
        row.as_ref().map(mail).transpose()
    }

    /// Moves a message to `status` with the server's answer, counting an
    /// attempt when it goes out; `sent` and `failed` count as done in the
    /// job's progress.
    pub async fn set_mail_status(
        &self,
        id: i64,
        status: MailStatus,
        answer: Option<&str>,
    ) -> Result<(), StoreError> {
        // One statement: the message, and the job's progress when it ended.
        self.client()
            .await?
            .execute(
                "WITH m AS (
                   UPDATE mail_messages SET status = $2, answer = COALESCE($3, answer),
                       attempts = attempts + CASE WHEN $2 = 'sending' THEN 1 ELSE 0 END,
                       sent_at = CASE WHEN $2 = 'sent' THEN now() ELSE sent_at END,
                       updated_at = now()
                   WHERE id = $1 RETURNING job_id)
                 UPDATE jobs SET done = done + 1
                 WHERE id = (SELECT job_id FROM m) AND $2 IN ('sent', 'failed')",
                &[&id, &status, &answer],
            )
            .await?;
        Ok(())
    }

    /// Takes message `id` to send it (`queued` → `sending`, one attempt
    /// more) while `claim`'s job is still this worker's; `false` when it is
    /// not (another worker took the job, or the message is no longer
    /// queued): then nothing may be sent.
    pub async fn take_mail(&self, id: i64, claim: super::Claim<'_>) -> Result<bool, StoreError> {
        let n = self
            .client()
            .await?
            .execute(
                "UPDATE mail_messages m SET status = 'sending', attempts = m.attempts + 1, updated_at = now()
                 FROM jobs j
                 WHERE m.id = $1 AND m.status = 'queued' AND j.id = m.job_id
                   AND j.worker = $2 AND j.status = 'running'",
                &[&id, &claim.worker],
            )
            .await?;
        Ok(n == 1)
    }

    /// The initial password `about` (when it was set) of `username` may be
    /// mailed again: its message failed, so it did not arrive.
    pub async fn release_mailed(&self, username: &str, about: i64) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "UPDATE credentials SET mailed_at = NULL
                 WHERE username = $1 AND (extract(epoch FROM created_at) * 1000000)::bigint = $2",
                &[&username, &about],
            )
            .await?;
        Ok(())
    }

    /// (username, about) of the lab's messages of `kind` that have one.
    pub async fn mailed_abouts(
        &self,
        lab: &LabId,
        kind: MailKind,
    ) -> Result<std::collections::HashSet<(String, i64)>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT username, about FROM mail_messages
                 WHERE lab_id = $1 AND kind = $2 AND about IS NOT NULL AND username IS NOT NULL",
                &[lab, &kind],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Messages of `kind` to `username` in `lab` since `since`.
    pub async fn mail_count_since(
        &self,
        lab: &LabId,
        kind: MailKind,
        username: &str,
        since: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        Ok(self
            .client()
            .await?
            .query_one(
                "SELECT count(*) FROM mail_messages
                 WHERE lab_id = $1 AND kind = $2 AND username = $3 AND created_at > $4",
                &[lab, &kind, &username, &since],
            )
            .await?
            .get(0))
    }

    /// Messages of an interrupted job that were at the server: they may
    /// have arrived, so they are not sent again by themselves.
    pub async fn mark_uncertain_mail(&self, job: i64) -> Result<u64, StoreError> {
        Ok(self
            .client()
            .await?
            .execute(
                "UPDATE mail_messages SET status = 'uncertain', updated_at = now(),
                     answer = 'pglab stopped while the server had it: it may or may not have arrived'
                 WHERE job_id = $1 AND status = 'sending'",
                &[&job],
            )
            .await?)
    }

    /// How many messages of a job ended in each status.
    pub async fn mail_counts(&self, job: i64) -> Result<Vec<(MailStatus, i64)>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT status, count(*) FROM mail_messages WHERE job_id = $1
                 GROUP BY status ORDER BY status",
                &[&job],
            )
            .await?;
        rows.iter()
            .map(|r| Ok((column(r, 0, "mail", || job.to_string())?, r.get(1))))
            .collect()
    }

    /// A lab's messages, newest first, `limit` at most.
    pub async fn lab_mail(&self, lab: &LabId, limit: i64) -> Result<Vec<MailRecord>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM mail_messages WHERE lab_id = $1
                     ORDER BY id DESC LIMIT $2"
                ),
                &[lab, &limit],
            )
            .await?;
        rows.iter().map(mail).collect()
    }
}
