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

/// How messages are queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queueing {
    /// Each credentials message takes its participant's password.
    ClaimPasswords,
    /// Added to a waiting automatic job of the lab (`params.auto`), if any.
    Automatic,
}

/// What became of one attempt at a message (the server's answer or why
/// there was none).
#[derive(Debug, Clone, Copy)]
pub enum MailOutcome<'a> {
    Sent(&'a str),
    /// Refused for good.
    Failed(&'a str),
    /// Not sent, and not to be (nothing left to say).
    Unsent(&'a str),
    /// It may or may not have arrived.
    Uncertain(&'a str),
    /// Queued again for `at`; with `whole_job`, the job's other messages
    /// wait until then too (the server itself failed).
    Retry {
        answer: &'a str,
        at: DateTime<Utc>,
        whole_job: bool,
    },
}

/// Why a message the server had when pglab stopped is uncertain.
const UNCERTAIN: &str = "pglab stopped while the server had it: it may or may not have arrived";

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

/// Marks the initial password message `m` is for (`about`: when it was
/// set) as mailed, unless it was mailed already; whether it was.
async fn claim_password(
    tx: &impl tokio_postgres::GenericClient,
    m: &NewMail<'_>,
) -> Result<bool, StoreError> {
    let taken = tx
        .execute(
            "UPDATE credentials SET mailed_at = now()
             WHERE username = $1 AND mailed_at IS NULL AND initial_password IS NOT NULL
               AND (extract(epoch FROM created_at) * 1000000)::bigint = $2",
            &[&m.username, &m.about],
        )
        .await?;
    Ok(taken == 1)
}

impl Store {
    /// Queues `mails` in one transaction: as a new mail job, or (`how`:
    /// `Automatic`) added to a queued automatic job of the lab that does not
    /// wait for a retry, so that what pglab mails by itself neither piles up
    /// jobs nor waits behind one participant's back-off. With
    /// `ClaimPasswords`, each message takes its participant's initial
    /// password (marks it mailed): a message whose password was mailed
    /// already, by a request just before, is left out. A reminder, hand-in
    /// result or digest already queued or sent is left out too, and so is
    /// one that went unsent less than 10 minutes ago (a server that is down
    /// is tried that often). The job and
    /// the messages queued; `None` when too many mail jobs wait.
    pub async fn queue_mail(
        &self,
        job: &NewJob<'_>,
        mails: &[NewMail<'_>],
        how: Queueing,
    ) -> Result<Option<(i64, usize)>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let joined = match how {
            Queueing::Automatic => tx
                .query_opt(
                    "SELECT id FROM jobs
                     WHERE kind = 'mail' AND lab_id = $1 AND status = 'queued'
                       AND params @> '{\"auto\": true}'
                       AND (not_before IS NULL OR not_before <= now())
                     ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED",
                    &[job.lab],
                )
                .await?
                .map(|r| r.get::<_, i64>(0)),
            Queueing::ClaimPasswords => None,
        };
        let id = match joined {
            Some(id) => id,
            None => match insert_job(&*tx, job, PENDING_MAIL_JOBS).await? {
                Some(id) => id,
                None => return Ok(None),
            },
        };
        let mut queued = 0;
        for m in mails {
            if how == Queueing::ClaimPasswords && !claim_password(&*tx, m).await? {
                continue;
            }
            queued += tx
                .execute(
                    "INSERT INTO mail_messages (job_id, lab_id, kind, username, about, to_name, to_address, subject)
                     SELECT $1, $2, $3, $4, $5, $6, $7, $8
                     WHERE $3 = 'credentials' OR NOT EXISTS (
                         SELECT 1 FROM mail_messages u
                         WHERE u.lab_id = $2 AND u.kind = $3 AND u.about = $5
                           AND COALESCE(u.username, u.to_address) = COALESCE($4, $7)
                           AND u.status = 'unsent' AND u.updated_at > now() - interval '10 minutes')
                     ON CONFLICT (lab_id, kind, (COALESCE(username, to_address)), about)
                         WHERE kind IN ('reminder', 'hand_in', 'digest') AND status <> 'unsent'
                         DO NOTHING",
                    &[&id, job.lab, &m.kind, &m.username, &m.about, &m.to_name, &m.to_address, &m.subject],
                )
                .await? as usize;
        }
        if queued == 0 {
            return Ok(Some((0, 0))); // dropped with the transaction
        }
        tx.execute(
            "UPDATE jobs SET total = total + $2 WHERE id = $1",
            &[&id, &(queued as i32)],
        )
        .await?;
        tx.commit().await?;
        Ok(Some((id, queued)))
    }

    /// The next message of a job to send now, if any.
    pub async fn next_mail(&self, job: i64) -> Result<Option<MailRecord>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                &format!(
                    "SELECT {COLUMNS} FROM mail_messages
                     WHERE job_id = $1 AND status = 'queued'
                       AND (not_before IS NULL OR not_before <= now())
                     ORDER BY id LIMIT 1"
                ),
                &[&job],
            )
            .await?;
        row.as_ref().map(mail).transpose()
    }

    /// When the first message of a job that waits may go (none is ready
    /// now); `None` when none is queued.
    pub async fn next_mail_at(&self, job: i64) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(self
            .client()
            .await?
            .query_one(
                "SELECT min(COALESCE(not_before, now())) FROM mail_messages
                 WHERE job_id = $1 AND status = 'queued'",
                &[&job],
            )
            .await?
            .get(0))
    }

    /// Records what became of the attempt at message `id` (taken, or left
    /// uncertain by a sweeper meanwhile), with the subject as it was sent,
    /// in one transaction that locks the job first (as ending it does): a
    /// failed or unsent credentials message gives its password back (it did
    /// not arrive); a message that waits for another attempt makes the rest
    /// of its job wait too when the server itself failed; an end counts in
    /// the job's progress. A message may wait only in a job that is still
    /// `claim`'s: a late answer, after the job was taken over or ended,
    /// makes it unsent instead, so that no message is left queued in a job
    /// nobody runs.
    pub async fn mail_outcome(
        &self,
        id: i64,
        claim: super::Claim<'_>,
        outcome: &MailOutcome<'_>,
        subject: Option<&str>,
    ) -> Result<(), StoreError> {
        let (status, answer, not_before, whole_job) = match *outcome {
            MailOutcome::Sent(a) => (MailStatus::Sent, a, None, false),
            MailOutcome::Failed(a) => (MailStatus::Failed, a, None, false),
            MailOutcome::Uncertain(a) => (MailStatus::Uncertain, a, None, false),
            MailOutcome::Unsent(a) => (MailStatus::Unsent, a, None, false),
            MailOutcome::Retry {
                answer,
                at,
                whole_job,
            } => (MailStatus::Queued, answer, Some(at), whole_job),
        };
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let mine: bool = tx
            .query_opt(
                "SELECT j.worker = $2 AND j.status = 'running' AND m.status = 'sending'
                 FROM mail_messages m JOIN jobs j ON j.id = m.job_id
                 WHERE m.id = $1 FOR UPDATE OF j",
                &[&id, &claim.worker],
            )
            .await?
            .is_some_and(|r| r.get::<_, Option<bool>>(0) == Some(true));
        let status = match status {
            MailStatus::Queued if !mine => MailStatus::Unsent,
            other => other,
        };
        tx.execute(
            "WITH m AS (
               UPDATE mail_messages SET status = $2, answer = $3, subject = COALESCE($4, subject),
                   not_before = $5, sent_at = CASE WHEN $2 = 'sent' THEN now() END,
                   updated_at = now()
               WHERE id = $1 AND status IN ('sending', 'uncertain')
               RETURNING job_id, kind, username, about),
             released AS (
               UPDATE credentials c SET mailed_at = NULL FROM m
               WHERE $2 IN ('failed', 'unsent') AND m.kind = 'credentials' AND c.username = m.username
                 AND (extract(epoch FROM c.created_at) * 1000000)::bigint = m.about
               RETURNING 1),
             waiting AS (
               UPDATE mail_messages w SET not_before = greatest(w.not_before, $5) FROM m
               WHERE $6 AND $2 = 'queued' AND w.job_id = m.job_id AND w.status = 'queued'
                 AND w.id <> $1
               RETURNING 1)
             UPDATE jobs SET done = done + 1
             WHERE id = (SELECT job_id FROM m) AND $2 IN ('sent', 'failed', 'uncertain', 'unsent')",
            &[&id, &status, &answer, &subject, &not_before, &whole_job],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Ends mail job `claim` (`error`: failed) in one transaction, when it
    /// is still the claim's: a message the server had becomes uncertain;
    /// every message still queued is unsent (with why), a credentials
    /// message giving its password back. `false` (nothing changed) when the
    /// job is no longer the claim's.
    pub async fn end_mail_job(
        &self,
        claim: super::Claim<'_>,
        error: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let mine = tx
            .query_opt(
                "SELECT 1 FROM jobs WHERE id = $1 AND worker = $2 AND status = 'running' FOR UPDATE",
                &[&claim.job, &claim.worker],
            )
            .await?;
        if mine.is_none() {
            return Ok(false);
        }
        tx.execute(
            "UPDATE mail_messages SET status = 'uncertain', answer = $2, updated_at = now()
             WHERE job_id = $1 AND status = 'sending'",
            &[&claim.job, &UNCERTAIN],
        )
        .await?;
        let why = format!("not sent: {}", error.unwrap_or("its job ended first"));
        tx.execute(
            "WITH m AS (
               UPDATE mail_messages SET status = 'unsent', answer = $2, not_before = NULL,
                   updated_at = now()
               WHERE job_id = $1 AND status = 'queued'
               RETURNING kind, username, about)
             UPDATE credentials c SET mailed_at = NULL FROM m
             WHERE m.kind = 'credentials' AND c.username = m.username
               AND (extract(epoch FROM c.created_at) * 1000000)::bigint = m.about",
            &[&claim.job, &why],
        )
        .await?;
        let summary: Vec<String> = tx
            .query(
                "SELECT count(*) || ' ' || status FROM mail_messages WHERE job_id = $1
                 GROUP BY status ORDER BY status",
                &[&claim.job],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let ended = super::jobs::finish(&*tx, claim, &summary, error).await?;
        tx.commit().await?;
        Ok(ended)
    }

    /// Takes message `id` to send it (`queued` → `sending`, one attempt
    /// more) while `claim`'s job is still this worker's; `false` when it is
    /// not (another worker took the job, or the message is no longer
    /// queued): then nothing may be sent. The job's row is locked while the
    /// message is taken, so a sweeper taking the job over waits for it and
    /// then finds the message `sending`.
    pub async fn take_mail(&self, id: i64, claim: super::Claim<'_>) -> Result<bool, StoreError> {
        let n = self
            .client()
            .await?
            .execute(
                "UPDATE mail_messages m SET status = 'sending', attempts = m.attempts + 1, updated_at = now()
                 WHERE m.id = $1 AND m.status = 'queued'
                   AND EXISTS (SELECT 1 FROM jobs j
                               WHERE j.id = m.job_id AND j.worker = $2 AND j.status = 'running'
                               FOR SHARE)",
                &[&id, &claim.worker],
            )
            .await?;
        Ok(n == 1)
    }

    /// (username, about) of the lab's messages of `kind` that have one and
    /// reached a server (or will); one that never did counts for 10
    /// minutes, so that a server that is down is tried again that often.
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
                 WHERE lab_id = $1 AND kind = $2 AND about IS NOT NULL AND username IS NOT NULL
                   AND (status <> 'unsent' OR updated_at > now() - interval '10 minutes')",
                &[lab, &kind],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Messages of `kind` to `username` in `lab` since `since` (that reached
    /// a server, or will).
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
                 WHERE lab_id = $1 AND kind = $2 AND username = $3 AND created_at > $4
                   AND status <> 'unsent'",
                &[lab, &kind, &username, &since],
            )
            .await?
            .get(0))
    }

    /// Hand-ins ended in the last day whose result went unsent more than 10
    /// minutes ago and was not queued again since: their ids.
    pub async fn unsent_hand_in_results(&self) -> Result<Vec<i64>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT DISTINCT u.about FROM mail_messages u
                 WHERE u.kind = 'hand_in' AND u.status = 'unsent' AND u.about IS NOT NULL
                   AND u.updated_at < now() - interval '10 minutes'
                   AND u.created_at > now() - interval '1 day'
                   AND NOT EXISTS (SELECT 1 FROM mail_messages o
                                   WHERE o.lab_id = u.lab_id AND o.kind = 'hand_in'
                                     AND o.about = u.about AND o.username = u.username
                                     AND o.status <> 'unsent')
                 ORDER BY 1",
                &[],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Messages of an interrupted job that were at the server: they may
    /// have arrived, so they are not sent again by themselves.
    pub async fn mark_uncertain_mail(&self, job: i64) -> Result<u64, StoreError> {
        Ok(self
            .client()
            .await?
            .execute(
                "UPDATE mail_messages SET status = 'uncertain', updated_at = now(), answer = $2
                 WHERE job_id = $1 AND status = 'sending'",
                &[&job, &UNCERTAIN],
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
