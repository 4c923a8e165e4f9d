//! Dump submissions and their restore jobs (`queued → running →
//! succeeded | failed`), claimed by any pglab process with `SKIP LOCKED`.

use super::{Store, StoreError};
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
    pub lab: String,
    pub database: String,
    pub server: String,
    pub owner: String,
    pub group: Option<String>,
    pub uploaded_by: String,
    pub uploaded_at: DateTime<Utc>,
    pub size: i64,
    pub format: String,
    #[serde(skip)]
    pub file: String,
    pub late: bool,
    pub contents: Option<String>,
    pub status: String,
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
    pub lab: &'a str,
    pub database: &'a str,
    pub server: &'a str,
    pub owner: &'a str,
    pub group: Option<&'a str>,
    pub uploaded_by: &'a str,
    pub size: i64,
    pub format: &'a str,
    pub file: &'a str,
    pub late: bool,
    pub contents: Option<&'a str>,
}

const COLUMNS: &str = "id, lab_id, database, server, owner, grp, uploaded_by, uploaded_at, size, format, file, late, contents, status, attempts, started_at, finished_at, scratch, previous, errors, note";

fn record(r: &Row) -> SubmissionRecord {
    let errors: serde_json::Value = r.get(19);
    SubmissionRecord {
        id: r.get(0),
        lab: r.get(1),
        database: r.get(2),
        server: r.get(3),
        owner: r.get(4),
        group: r.get(5),
        uploaded_by: r.get(6),
        uploaded_at: r.get(7),
        size: r.get(8),
        format: r.get(9),
        file: r.get(10),
        late: r.get(11),
        contents: r.get(12),
        status: r.get(13),
        attempts: r.get(14),
        started_at: r.get(15),
        finished_at: r.get(16),
        scratch: r.get(17),
        previous: r.get(18),
        errors: serde_json::from_value(errors).unwrap_or_default(),
        note: r.get(20),
    }
}

impl Store {
    /// Hand-ins of a database that are queued or running.
    pub async fn pending_submissions(&self, lab: &str, database: &str) -> Result<i64, StoreError> {
        let row = self
            .client()
            .await?
            .query_one(
                "SELECT count(*) FROM submissions WHERE lab_id = $1 AND database = $2 AND status IN ('queued', 'running')",
                &[&lab, &database],
            )
            .await?;
        Ok(row.get(0))
    }

    /// Queues a hand-in unless its database has `max_pending` queued or
    /// running already (`None` then). Counted and inserted under a lock per
    /// database, so parallel uploads cannot pass the cap together.
    pub async fn insert_submission(
        &self,
        s: &NewSubmission<'_>,
        max_pending: i64,
    ) -> Result<Option<i64>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('pglab submissions ' || $1 || '/' || $2))",
            &[&s.lab, &s.database],
        )
        .await?;
        let row = tx
            .query_opt(
                "INSERT INTO submissions (lab_id, database, server, owner, grp, uploaded_by, size, format, file, late, contents)
                 SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11
                 WHERE (SELECT count(*) FROM submissions WHERE lab_id = $1 AND database = $2
                          AND status IN ('queued', 'running')) < $12
                 RETURNING id",
                &[&s.lab, &s.database, &s.server, &s.owner, &s.group, &s.uploaded_by, &s.size, &s.format, &s.file, &s.late, &s.contents, &max_pending],
            )
            .await?;
        tx.commit().await?;
        Ok(row.map(|r| r.get(0)))
    }

    pub async fn submission(&self, id: i64) -> Result<Option<SubmissionRecord>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                &format!("SELECT {COLUMNS} FROM submissions WHERE id = $1"),
                &[&id],
            )
            .await?;
        Ok(row.as_ref().map(record))
    }

    /// Every upload of a lab, newest first (the lab master's job log).
    pub async fn lab_submissions(&self, lab: &str) -> Result<Vec<SubmissionRecord>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                &format!("SELECT {COLUMNS} FROM submissions WHERE lab_id = $1 ORDER BY id DESC"),
                &[&lab],
            )
            .await?;
        Ok(rows.iter().map(record).collect())
    }

    /// The uploads into one database, newest first.
    pub async fn database_submissions(
        &self,
        lab: &str,
        database: &str,
    ) -> Result<Vec<SubmissionRecord>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                &format!("SELECT {COLUMNS} FROM submissions WHERE lab_id = $1 AND database = $2 ORDER BY id DESC"),
                &[&lab, &database],
            )
            .await?;
        Ok(rows.iter().map(record).collect())
    }

    /// Takes a queued job whose database has no job running: of the
    /// databases with the fewest restores in the last hour, the oldest.
    pub async fn claim_submission(
        &self,
        worker: &str,
    ) -> Result<Option<SubmissionRecord>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                &format!(
                    "UPDATE submissions SET status = 'running', attempts = attempts + 1, worker = $1,
                         heartbeat_at = now(), started_at = now(), finished_at = NULL
                     WHERE id = (
                         SELECT s.id FROM submissions s
                         WHERE s.status = 'queued'
                           AND NOT EXISTS (SELECT 1 FROM submissions r
                                           WHERE r.status = 'running' AND r.lab_id = s.lab_id AND r.database = s.database)
                         -- Fair across databases: those restored least in the
                         -- last hour first, then the oldest upload.
                         ORDER BY (SELECT count(*) FROM submissions d
                                   WHERE d.lab_id = s.lab_id AND d.database = s.database
                                     AND d.finished_at > now() - interval '1 hour'),
                                  s.id
                         LIMIT 1 FOR UPDATE SKIP LOCKED)
                     RETURNING {COLUMNS}"
                ),
                &[&worker],
            )
            .await?;
        Ok(row.as_ref().map(record))
    }

    pub async fn heartbeat(&self, id: i64, worker: &str) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "UPDATE submissions SET heartbeat_at = now() WHERE id = $1 AND worker = $2",
                &[&id, &worker],
            )
            .await?;
        Ok(())
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

    pub async fn finish_submission(
        &self,
        id: i64,
        succeeded: bool,
        errors: &[RestoreIssue],
        note: Option<&str>,
    ) -> Result<(), StoreError> {
        let status = if succeeded { "succeeded" } else { "failed" };
        let errors = serde_json::to_value(errors).unwrap_or_default();
        self.client()
            .await?
            .execute(
                "UPDATE submissions SET status = $2, errors = $3, note = NULLIF(concat_ws('; ', note, $4::text), ''), finished_at = now(), scratch = NULL WHERE id = $1",
                &[&id, &status, &errors, &note],
            )
            .await?;
        Ok(())
    }

    /// Back in the queue after an interrupted attempt.
    pub async fn requeue_submission(&self, id: i64, note: &str) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "UPDATE submissions SET status = 'queued', worker = NULL, scratch = NULL, previous = NULL, note = $2 WHERE id = $1",
                &[&id, &note],
            )
            .await?;
        Ok(())
    }

    /// Running jobs whose worker has not been heard of for `secs` (it died).
    pub async fn stale_submissions(&self, secs: f64) -> Result<Vec<SubmissionRecord>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM submissions
                     WHERE status = 'running' AND heartbeat_at < now() - make_interval(secs => $1)
                     FOR UPDATE SKIP LOCKED"
                ),
                &[&secs],
            )
            .await?;
        Ok(rows.iter().map(record).collect())
    }

    /// Whether the database already received a dump successfully.
    pub async fn has_restored(&self, lab: &str, database: &str) -> Result<bool, StoreError> {
        let row = self
            .client()
            .await?
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM submissions WHERE lab_id = $1 AND database = $2 AND status = 'succeeded')",
                &[&lab, &database],
            )
            .await?;
        Ok(row.get(0))
    }

    /// Previous databases kept by earlier successful jobs than `id`.
    pub async fn older_previous(
        &self,
        lab: &str,
        database: &str,
        id: i64,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT id, previous FROM submissions
                 WHERE lab_id = $1 AND database = $2 AND id <> $3 AND status = 'succeeded' AND previous IS NOT NULL",
                &[&lab, &database, &id],
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

    /// Participants' databases and owners, for the upload handler.
    pub async fn database_of(
        &self,
        lab: &str,
        username: &str,
    ) -> Result<Option<(String, String, String, Option<String>)>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT p.database, d.server, d.owner, p.grp FROM participants p
                 JOIN lab_databases d ON d.lab_id = p.lab_id AND d.name = p.database
                 WHERE p.lab_id = $1 AND p.username = $2",
                &[&lab, &username],
            )
            .await?;
        Ok(row.map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))))
    }
}
