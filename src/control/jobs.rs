//! The job queue: applies and restores (later exports, snapshots, mail) as
//! rows of one table, claimed by any pglab process with `SKIP LOCKED`,
//! kept alive by a heartbeat, with their progress and log lines stored so
//! that any replica shows them, also after a restart.

use super::types::column;
use super::{JobKind, JobStatus, Store, StoreError};
use crate::ident::LabId;
use chrono::{DateTime, Utc};
use tokio_postgres::{GenericClient, Row};

/// Log lines a job keeps (the page shows the latest ones).
pub const JOB_LOG_LINES: i64 = 500;

#[derive(Debug, Clone, serde::Serialize)]
pub struct JobRecord {
    pub id: i64,
    pub kind: JobKind,
    pub lab: LabId,
    /// Jobs with the same key run one at a time.
    #[serde(skip)]
    pub lock_key: String,
    pub title: String,
    pub started_by: String,
    #[serde(skip)]
    pub params: serde_json::Value,
    pub status: JobStatus,
    pub attempts: i32,
    pub max_attempts: i32,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub total: i32,
    pub done: i32,
    pub summary: Vec<String>,
    pub error: Option<String>,
}

/// A job to queue.
pub struct NewJob<'a> {
    pub kind: JobKind,
    pub lab: &'a LabId,
    pub lock_key: String,
    pub title: String,
    pub started_by: &'a str,
    pub params: serde_json::Value,
    /// Attempts before a job interrupted by a crash is failed.
    pub max_attempts: i32,
}

pub(super) const JOB_COLUMNS: &str = "j.id, j.kind, j.lab_id, j.lock_key, j.title, j.started_by, j.params, j.status, j.attempts, j.max_attempts, j.created_at, j.started_at, j.finished_at, j.total, j.done, j.summary, j.error";

pub(super) fn job(r: &Row) -> Result<JobRecord, StoreError> {
    let id: i64 = r.get(0);
    let key = || id.to_string();
    let summary: serde_json::Value = r.get(15);
    Ok(JobRecord {
        id,
        kind: column(r, 1, "job", key)?,
        lab: column(r, 2, "job", key)?,
        lock_key: r.get(3),
        title: r.get(4),
        started_by: r.get(5),
        params: r.get(6),
        status: column(r, 7, "job", key)?,
        attempts: r.get(8),
        max_attempts: r.get(9),
        created_at: r.get(10),
        started_at: r.get(11),
        finished_at: r.get(12),
        total: r.get(13),
        done: r.get(14),
        summary: serde_json::from_value(summary).map_err(|e| StoreError::BadRecord {
            what: "job",
            key: key(),
            reason: format!("summary: {e}"),
        })?,
        error: r.get(16),
    })
}

/// Queues `new` unless `max_pending` jobs with its key are queued or
/// running already (`None` then). Counted and inserted under a lock per
/// key, so that parallel requests cannot pass the cap together.
pub(super) async fn insert_job(
    tx: &impl GenericClient,
    new: &NewJob<'_>,
    max_pending: i64,
) -> Result<Option<i64>, StoreError> {
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('pglab job ' || $1))",
        &[&new.lock_key],
    )
    .await?;
    let row = tx
        .query_opt(
            "INSERT INTO jobs (kind, lab_id, lock_key, title, started_by, params, max_attempts)
             SELECT $1, $2, $3, $4, $5, $6, $7
             WHERE (SELECT count(*) FROM jobs WHERE lock_key = $3
                      AND status IN ('queued', 'running')) < $8
             RETURNING id",
            &[
                &new.kind,
                new.lab,
                &new.lock_key,
                &new.title,
                &new.started_by,
                &new.params,
                &new.max_attempts,
                &max_pending,
            ],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

impl Store {
    /// Queues a job unless `max_pending` with its key are waiting or running.
    pub async fn enqueue_job(
        &self,
        new: &NewJob<'_>,
        max_pending: i64,
    ) -> Result<Option<i64>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let id = insert_job(&*tx, new, max_pending).await?;
        tx.commit().await?;
        Ok(id)
    }

    pub async fn job(&self, id: i64) -> Result<Option<JobRecord>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                &format!("SELECT {JOB_COLUMNS} FROM jobs j WHERE j.id = $1"),
                &[&id],
            )
            .await?;
        row.as_ref().map(job).transpose()
    }

    /// The queued or running job with this key, if any.
    pub async fn active_job(&self, lock_key: &str) -> Result<Option<JobRecord>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                &format!(
                    "SELECT {JOB_COLUMNS} FROM jobs j
                     WHERE j.lock_key = $1 AND j.status IN ('queued', 'running')
                     ORDER BY j.id LIMIT 1"
                ),
                &[&lock_key],
            )
            .await?;
        row.as_ref().map(job).transpose()
    }

    /// When the newest job of `kind` with this key was queued.
    pub async fn last_job_at(
        &self,
        kind: JobKind,
        lock_key: &str,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let row = self
            .client()
            .await?
            .query_one(
                "SELECT max(created_at) FROM jobs WHERE kind = $1 AND lock_key = $2",
                &[&kind, &lock_key],
            )
            .await?;
        Ok(row.get(0))
    }

    /// The newest `JOB_LOG_LINES` lines of a job's log, oldest first.
    pub async fn job_log(&self, id: i64) -> Result<Vec<String>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT line FROM (SELECT seq, line FROM job_log WHERE job_id = $1
                                   ORDER BY seq DESC LIMIT $2) l ORDER BY seq",
                &[&id, &JOB_LOG_LINES],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Takes a queued job whose key has no job running: of the keys with
    /// the fewest jobs ended in the last hour, the oldest job. The unique
    /// index on running keys makes a second claim of the same key fail
    /// (`None`, the worker looks again) rather than run twice.
    pub async fn claim_job(&self, worker: &str) -> Result<Option<JobRecord>, StoreError> {
        self.claim(worker, None).await
    }

    /// Takes queued job `id` for `worker` (the CLI runs its own export);
    /// `None` when another worker has it, or a job of its key runs.
    pub async fn claim_job_id(
        &self,
        id: i64,
        worker: &str,
    ) -> Result<Option<JobRecord>, StoreError> {
        self.claim(worker, Some(id)).await
    }

    /// Claims job `only`, or any (as `claim_job` says).
    async fn claim(
        &self,
        worker: &str,
        only: Option<i64>,
    ) -> Result<Option<JobRecord>, StoreError> {
        let claimed = self
            .client()
            .await?
            .query_opt(
                &format!(
                    "UPDATE jobs j SET status = 'running', attempts = attempts + 1, worker = $1,
                         heartbeat_at = now(), started_at = now(), finished_at = NULL
                     WHERE j.id = (
                         SELECT q.id FROM jobs q
                         WHERE q.status = 'queued' AND ($2::int8 IS NULL OR q.id = $2)
                           AND (q.not_before IS NULL OR q.not_before <= now())
                           AND NOT EXISTS (SELECT 1 FROM jobs r
                                           WHERE r.status = 'running' AND r.lock_key = q.lock_key)
                         -- Fair across keys: those served least in the last
                         -- hour first, then the oldest job.
                         ORDER BY (SELECT count(*) FROM jobs d
                                   WHERE d.lock_key = q.lock_key
                                     AND d.finished_at > now() - interval '1 hour'),
                                  q.id
                         LIMIT 1 FOR UPDATE SKIP LOCKED)
                     RETURNING {JOB_COLUMNS}"
                ),
                &[&worker, &only],
            )
            .await;
        match claimed {
            Ok(row) => row.as_ref().map(job).transpose(),
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Keeps a claimed job alive; `false` when it is no longer this
    /// worker's (a sweeper took it over): the worker must stop it.
    pub async fn job_heartbeat(&self, claim: Claim<'_>) -> Result<bool, StoreError> {
        let n = self
            .client()
            .await?
            .execute(
                "UPDATE jobs SET heartbeat_at = now() WHERE id = $1 AND worker = $2 AND status = 'running'",
                &[&claim.job, &claim.worker],
            )
            .await?;
        Ok(n == 1)
    }

    /// Records progress: `done` of `total`, and log lines (nothing when the
    /// job is no longer this worker's).
    pub async fn job_progress(
        &self,
        claim: Claim<'_>,
        done: i32,
        total: i32,
        lines: &[String],
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let mine = tx
            .execute(
                "UPDATE jobs SET done = $3, total = $4 WHERE id = $1 AND worker = $2 AND status = 'running'",
                &[&claim.job, &claim.worker, &done, &total],
            )
            .await?;
        if mine == 1 && !lines.is_empty() {
            tx.execute(
                "INSERT INTO job_log (job_id, line) SELECT $1, unnest($2::text[])",
                &[&claim.job, &lines],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Adds a line to the log of a job that is still this worker's.
    pub async fn log_job(&self, claim: Claim<'_>, line: &str) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "INSERT INTO job_log (job_id, line)
                 SELECT $1, $3 FROM jobs WHERE id = $1 AND worker = $2 AND status = 'running'",
                &[&claim.job, &claim.worker, &line],
            )
            .await?;
        Ok(())
    }

    /// Ends a claimed job; `error` makes it failed. `false` when the job
    /// was no longer this worker's (nothing recorded).
    pub async fn finish_job(
        &self,
        claim: Claim<'_>,
        summary: &[String],
        error: Option<&str>,
    ) -> Result<bool, StoreError> {
        finish(&**self.client().await?, claim, summary, error).await
    }

    /// Back in the queue after an interrupted attempt, with `note` in its
    /// log; `false` when the job was no longer this worker's.
    pub async fn requeue_job(&self, claim: Claim<'_>, note: &str) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let mine = requeue(&*tx, claim, note).await?;
        tx.commit().await?;
        Ok(mine)
    }

    /// Back in the queue to wait until `until`, with `note` in its log;
    /// `counted`: the claim that ran it counts as an attempt (it was cut
    /// short), else not (it waits by design). `false` when the job was no
    /// longer this worker's. Other jobs of its key run meanwhile.
    pub async fn wait_job(
        &self,
        claim: Claim<'_>,
        until: DateTime<Utc>,
        note: &str,
        counted: bool,
    ) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let n = tx
            .execute(
                "UPDATE jobs SET status = 'queued', worker = NULL, heartbeat_at = NULL,
                     attempts = greatest(attempts - CASE WHEN $4 THEN 0 ELSE 1 END, 0),
                     not_before = $3
                 WHERE id = $1 AND worker = $2 AND status = 'running'",
                &[&claim.job, &claim.worker, &until, &counted],
            )
            .await?;
        if n == 1 {
            tx.execute(
                "INSERT INTO job_log (job_id, line) VALUES ($1, $2)",
                &[&claim.job, &note],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(n == 1)
    }

    /// A running job whose worker has not been heard of for `secs` (it
    /// died), taken over by `sweeper`, one at a time: another replica's
    /// sweeper does not see it as stale while this one deals with it.
    pub async fn take_stale_job(
        &self,
        secs: f64,
        sweeper: &str,
    ) -> Result<Option<JobRecord>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                &format!(
                    "UPDATE jobs j SET worker = $2, heartbeat_at = now()
                     WHERE j.id = (SELECT s.id FROM jobs s
                                   WHERE s.status = 'running'
                                     AND s.heartbeat_at < now() - make_interval(secs => $1)
                                   ORDER BY s.id LIMIT 1 FOR UPDATE SKIP LOCKED)
                     RETURNING {JOB_COLUMNS}"
                ),
                &[&secs, &sweeper],
            )
            .await?;
        row.as_ref().map(job).transpose()
    }
}

/// A job as one worker (or sweeper) holds it: what it records counts only
/// while the job is still running as its own.
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    pub job: i64,
    pub worker: &'a str,
}

pub(super) async fn finish(
    client: &impl GenericClient,
    claim: Claim<'_>,
    summary: &[String],
    error: Option<&str>,
) -> Result<bool, StoreError> {
    let status = if error.is_some() {
        JobStatus::Failed
    } else {
        JobStatus::Succeeded
    };
    let summary = serde_json::to_value(summary).expect("strings serialize");
    let n = client
        .execute(
            "UPDATE jobs SET status = $3, summary = $4, error = $5, finished_at = now(),
                 done = CASE WHEN $5::text IS NULL THEN total ELSE done END
             WHERE id = $1 AND worker = $2 AND status = 'running'",
            &[&claim.job, &claim.worker, &status, &summary, &error],
        )
        .await?;
    Ok(n == 1)
}

pub(super) async fn requeue(
    client: &impl GenericClient,
    claim: Claim<'_>,
    note: &str,
) -> Result<bool, StoreError> {
    let n = client
        .execute(
            "UPDATE jobs SET status = 'queued', worker = NULL, heartbeat_at = NULL
             WHERE id = $1 AND worker = $2 AND status = 'running'",
            &[&claim.job, &claim.worker],
        )
        .await?;
    if n == 1 {
        client
            .execute(
                "INSERT INTO job_log (job_id, line) VALUES ($1, $2)",
                &[&claim.job, &note],
            )
            .await?;
    }
    Ok(n == 1)
}
