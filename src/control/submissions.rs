//! Dump submissions: what was handed in, and what its restore (a job of the
//! queue, `queued → running → succeeded | failed`) made of it.

use super::jobs::{finish, insert_job, requeue, Claim, NewJob};
use super::types::column;
use super::ServerName;
use super::{JobKind, JobStatus, Store, StoreError};
use crate::ident::{GroupName, LabId, PgName, Username};
use crate::lab::submissions::DumpFormat;
use chrono::{DateTime, Utc};
use tokio_postgres::Row;

/// What went wrong in a restore: one entry per error, with the statement
/// or TOC entry it came from (stored as JSON with the job).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RestoreIssue {
    /// The server's message, with DETAIL / HINT lines.
    pub message: String,
    /// The SQL that failed, when known.
    pub statement: Option<String>,
    /// The archive's TOC entry (`5; 2615 16385 SCHEMA cd postgres`).
    pub toc: Option<String>,
    /// For plain SQL: the line of the file where `statement` starts.
    pub line: Option<usize>,
}

impl RestoreIssue {
    pub fn message(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            statement: None,
            toc: None,
            line: None,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SubmissionRecord {
    pub id: i64,
    /// The restore job.
    pub job: i64,
    pub lab: LabId,
    pub database: PgName,
    pub server: ServerName,
    pub owner: PgName,
    pub group: Option<GroupName>,
    pub uploaded_by: Username,
    pub uploaded_at: DateTime<Utc>,
    pub size: i64,
    pub format: DumpFormat,
    #[serde(skip)]
    pub file: String,
    pub late: bool,
    pub contents: Option<String>,
    pub status: JobStatus,
    pub attempts: i32,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    #[serde(skip)]
    pub scratch: Option<String>,
    #[serde(skip)]
    pub previous: Option<String>,
    pub errors: Vec<RestoreIssue>,
    pub note: Option<String>,
}

impl SubmissionRecord {
    /// Seconds from start to end, once ended.
    pub fn duration_secs(&self) -> Option<f64> {
        Some((self.finished_at? - self.started_at?).num_milliseconds() as f64 / 1000.0)
    }
}

/// What the upload handler records before the job is queued.
pub struct NewSubmission<'a> {
    pub lab: &'a LabId,
    pub database: &'a PgName,
    pub server: &'a ServerName,
    pub owner: &'a PgName,
    pub group: Option<&'a GroupName>,
    pub uploaded_by: &'a Username,
    pub size: i64,
    pub format: DumpFormat,
    pub file: &'a str,
    pub late: bool,
    pub contents: Option<&'a str>,
}

/// Jobs on one database (restores, resets, snapshots, its final state)
/// run one at a time.
pub fn database_key(lab: &LabId, database: &str) -> String {
    format!("restore:{lab}/{database}")
}

/// A submission with the state of its restore job.
const FROM: &str = "submissions s JOIN jobs j ON j.id = s.job_id";
const COLUMNS: &str = "s.id, s.job_id, s.lab_id, s.database, s.server, s.owner, s.grp, s.uploaded_by, s.uploaded_at, s.size, s.format, s.file, s.late, s.contents, j.status, j.attempts, j.started_at, j.finished_at, s.scratch, s.previous, s.errors, s.note";

fn record(r: &Row) -> Result<SubmissionRecord, StoreError> {
    let id: i64 = r.get(0);
    let key = || id.to_string();
    let errors: serde_json::Value = r.get(20);
    Ok(SubmissionRecord {
        id,
        job: r.get(1),
        lab: column(r, 2, "submission", key)?,
        database: r.get(3),
        server: r.get(4),
        owner: r.get(5),
        group: column(r, 6, "submission", key)?,
        uploaded_by: column(r, 7, "submission", key)?,
        uploaded_at: r.get(8),
        size: r.get(9),
        format: column(r, 10, "submission", key)?,
        file: r.get(11),
        late: r.get(12),
        contents: r.get(13),
        status: column(r, 14, "submission", key)?,
        attempts: r.get(15),
        started_at: r.get(16),
        finished_at: r.get(17),
        scratch: r.get(18),
        previous: r.get(19),
        errors: serde_json::from_value(errors).map_err(|e| StoreError::BadRecord {
            what: "submission",
            key: key(),
            reason: format!("errors: {e}"),
        })?,
        note: r.get(21),
    })
}

impl Store {
    /// Hand-ins of a database that are queued or running.
    pub async fn pending_submissions(
        &self,
        lab: &LabId,
        database: &PgName,
    ) -> Result<i64, StoreError> {
        let row = self
            .client()
            .await?
            .query_one(
                "SELECT count(*) FROM jobs WHERE lock_key = $1 AND status IN ('queued', 'running')",
                &[&database_key(lab, database)],
            )
            .await?;
        Ok(row.get(0))
    }

    /// Queues a hand-in and its restore job unless its database has
    /// `max_pending` queued or running already (`None` then).
    pub async fn insert_submission(
        &self,
        s: &NewSubmission<'_>,
        max_pending: i64,
    ) -> Result<Option<i64>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let job = NewJob {
            kind: JobKind::Restore,
            lab: s.lab,
            lock_key: database_key(s.lab, s.database),
            title: format!("Restore into {}", s.database),
            started_by: s.uploaded_by.as_str(),
            params: serde_json::json!({}),
            max_attempts: RESTORE_ATTEMPTS,
        };
        let Some(job) = insert_job(&*tx, &job, max_pending).await? else {
            return Ok(None);
        };
        // Where the database is now, read under a lock that a move's switch
        // waits for: a hand-in received while its database moved goes to
        // the new server (the switch moves the queued ones it sees).
        let placed: Option<String> = tx
            .query_opt(
                "SELECT server FROM lab_databases WHERE lab_id = $1 AND name = $2 FOR SHARE",
                &[s.lab, s.database],
            )
            .await?
            .map(|r| r.get(0));
        let server = placed.unwrap_or_else(|| s.server.to_string());
        let row = tx
            .query_one(
                "INSERT INTO submissions (lab_id, database, server, owner, grp, uploaded_by, size, format, file, late, contents, job_id)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                 RETURNING id",
                &[s.lab, s.database, &server, s.owner, &s.group, s.uploaded_by, &s.size, &s.format, &s.file, &s.late, &s.contents, &job],
            )
            .await?;
        tx.execute(
            "UPDATE jobs SET total = 1, params = jsonb_build_object('submission', $2::bigint) WHERE id = $1",
            &[&job, &row.get::<_, i64>(0)],
        )
        .await?;
        tx.commit().await?;
        Ok(Some(row.get(0)))
    }

    async fn submissions_where(
        &self,
        filter: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<SubmissionRecord>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                &format!("SELECT {COLUMNS} FROM {FROM} WHERE {filter}"),
                params,
            )
            .await?;
        rows.iter().map(record).collect()
    }

    pub async fn submission(&self, id: i64) -> Result<Option<SubmissionRecord>, StoreError> {
        Ok(self.submissions_where("s.id = $1", &[&id]).await?.pop())
    }

    /// The submission a restore job restores.
    pub async fn submission_of_job(
        &self,
        job: i64,
    ) -> Result<Option<SubmissionRecord>, StoreError> {
        Ok(self
            .submissions_where("s.job_id = $1", &[&job])
            .await?
            .pop())
    }

    /// Every upload of a lab, newest first (the lab master's job log).
    pub async fn lab_submissions(&self, lab: &LabId) -> Result<Vec<SubmissionRecord>, StoreError> {
        self.submissions_where("s.lab_id = $1 ORDER BY s.id DESC", &[lab])
            .await
    }

    /// The uploads into one database, newest first.
    pub async fn database_submissions(
        &self,
        lab: &LabId,
        database: &PgName,
    ) -> Result<Vec<SubmissionRecord>, StoreError> {
        self.submissions_where(
            "s.lab_id = $1 AND s.database = $2 ORDER BY s.id DESC",
            &[lab, database],
        )
        .await
    }

    pub async fn set_scratch(&self, id: i64, scratch: Option<&str>) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "UPDATE submissions SET scratch = $2 WHERE id = $1",
                &[&id, &scratch],
            )
            .await?;
        Ok(())
    }

    /// Recorded before the swap, so that a restart can tell whether it happened.
    pub async fn set_previous(&self, id: i64, previous: Option<&str>) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "UPDATE submissions SET previous = $2 WHERE id = $1",
                &[&id, &previous],
            )
            .await?;
        Ok(())
    }

    /// Ends a submission's restore: its errors and note, and its job; only
    /// while the job is `worker`'s (`false`: nothing recorded).
    pub async fn finish_submission(
        &self,
        sub: &SubmissionRecord,
        worker: &str,
        succeeded: bool,
        errors: &[RestoreIssue],
        note: Option<&str>,
    ) -> Result<bool, StoreError> {
        let failure = (!succeeded).then(|| match errors {
            [] => "the restore failed".to_string(),
            [one] => one.message.clone(),
            [first, ..] => format!("{} (and {} more errors)", first.message, errors.len() - 1),
        });
        let json = serde_json::to_value(errors).expect("issues serialize");
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let claim = Claim {
            job: sub.job,
            worker,
        };
        if !finish(&*tx, claim, &[], failure.as_deref()).await? {
            return Ok(false);
        }
        tx.execute(
            "UPDATE submissions SET errors = $2, note = NULLIF(concat_ws('; ', note, $3::text), ''), scratch = NULL WHERE id = $1",
            &[&sub.id, &json, &note],
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Back in the queue after an interrupted attempt (while the job is
    /// `worker`'s).
    pub async fn requeue_submission(
        &self,
        sub: &SubmissionRecord,
        worker: &str,
        note: &str,
    ) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let claim = Claim {
            job: sub.job,
            worker,
        };
        if !requeue(&*tx, claim, note).await? {
            return Ok(false);
        }
        tx.execute(
            "UPDATE submissions SET scratch = NULL, previous = NULL, note = $2 WHERE id = $1",
            &[&sub.id, &note],
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Whether the database already received a dump successfully.
    pub async fn has_restored(&self, lab: &LabId, database: &PgName) -> Result<bool, StoreError> {
        let row = self
            .client()
            .await?
            .query_one(
                &format!("SELECT EXISTS (SELECT 1 FROM {FROM} WHERE s.lab_id = $1 AND s.database = $2 AND j.status = 'succeeded')"),
                &[lab, database],
            )
            .await?;
        Ok(row.get(0))
    }

    /// Previous databases kept by earlier successful jobs than `id`.
    pub async fn older_previous(
        &self,
        lab: &LabId,
        database: &PgName,
        id: i64,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                &format!("SELECT s.id, s.previous FROM {FROM}
                 WHERE s.lab_id = $1 AND s.database = $2 AND s.id <> $3 AND j.status = 'succeeded' AND s.previous IS NOT NULL"),
                &[lab, database, &id],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    pub async fn forget_previous(&self, id: i64, note: &str) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "UPDATE submissions SET previous = NULL, note = concat_ws('; ', note, $2::text) WHERE id = $1",
                &[&id, &note],
            )
            .await?;
        Ok(())
    }

    /// A participant's database, its server, owner and the participant's
    /// group, for the upload handler.
    pub async fn database_of(
        &self,
        lab: &LabId,
        username: &Username,
    ) -> Result<Option<ParticipantDatabase>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT p.database, d.server, d.owner, p.grp FROM participants p
                 JOIN lab_databases d ON d.lab_id = p.lab_id AND d.name = p.database
                 WHERE p.lab_id = $1 AND p.username = $2",
                &[lab, username],
            )
            .await?;
        row.map(|r| {
            Ok(ParticipantDatabase {
                database: r.get(0),
                server: r.get(1),
                owner: r.get(2),
                group: column(&r, 3, "participant", || format!("{lab}/{username}"))?,
            })
        })
        .transpose()
    }
}

/// Where a participant's hand-ins go.
pub struct ParticipantDatabase {
    pub database: PgName,
    pub server: ServerName,
    pub owner: PgName,
    pub group: Option<GroupName>,
}

/// Attempts before a restore interrupted by crashes is failed.
pub const RESTORE_ATTEMPTS: i32 = 2;
