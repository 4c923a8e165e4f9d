//! Class data exports, and the paged reads an export makes of a lab's
//! records (a page at a time, so that a big class does not need more
//! memory than a small one).

use super::jobs::{insert_job, NewJob};
use super::types::column;
use super::{JobKind, JobStatus, Store, StoreError, TaskChange};
use crate::ident::LabId;
use chrono::{DateTime, Utc};
use tokio_postgres::Row;

#[derive(Debug, Clone, serde::Serialize)]
pub struct ExportRecord {
    pub id: i64,
    pub job: i64,
    #[serde(skip)]
    pub lab: LabId,
    pub started_by: String,
    pub options: serde_json::Value,
    pub estimate: i64,
    pub size: Option<i64>,
    /// Relative to the data directory.
    #[serde(skip)]
    pub file: Option<String>,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub status: JobStatus,
    pub done: i32,
    pub total: i32,
    pub error: Option<String>,
}

impl ExportRecord {
    /// Ready to download: built, and not expired.
    pub fn ready(&self) -> bool {
        self.status == JobStatus::Succeeded && self.file.is_some() && self.deleted_at.is_none()
    }

    /// `expired`, `ready`, or the job's status: what the API says.
    pub fn state(&self) -> &'static str {
        if self.deleted_at.is_some() {
            "expired"
        } else if self.ready() {
            "ready"
        } else {
            self.status.as_str()
        }
    }
}

const EXPORT_COLUMNS: &str = "e.id, e.job_id, e.lab_id, e.started_by, e.options, e.estimate, e.size, e.file, e.name, e.created_at, e.expires_at, e.deleted_at, j.status, j.done, j.total, j.error";
const EXPORT_FROM: &str = "exports e JOIN jobs j ON j.id = e.job_id";

fn export(r: &Row) -> Result<ExportRecord, StoreError> {
    let id: i64 = r.get(0);
    let key = || id.to_string();
    Ok(ExportRecord {
        id,
        job: r.get(1),
        lab: column(r, 2, "export", key)?,
        started_by: r.get(3),
        options: r.get(4),
        estimate: r.get(5),
        size: r.get(6),
        file: r.get(7),
        name: r.get(8),
        created_at: r.get(9),
        expires_at: r.get(10),
        deleted_at: r.get(11),
        status: column(r, 12, "export", key)?,
        done: r.get(13),
        total: r.get(14),
        error: r.get(15),
    })
}

/// An export to queue.
pub struct NewExport<'a> {
    pub lab: &'a LabId,
    pub started_by: &'a str,
    pub options: serde_json::Value,
    pub estimate: i64,
    pub name: String,
    pub expires_at: DateTime<Utc>,
}

/// Exports of one lab waiting or running at once, at most.
const PENDING_EXPORTS: i64 = 3;

/// A row of a database's session history, with its database.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionRow {
    pub database: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

impl Store {
    /// Queues an export and its job (`None`: the lab has
    /// `PENDING_EXPORTS` waiting or running already).
    pub async fn insert_export(
        &self,
        new: &NewExport<'_>,
    ) -> Result<Option<(i64, i64)>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let job = NewJob {
            kind: JobKind::Export,
            lab: new.lab,
            lock_key: format!("export:{}", new.lab),
            title: format!("Export of {}", new.lab),
            started_by: new.started_by,
            params: serde_json::json!({}),
            max_attempts: 2,
        };
        let Some(job) = insert_job(&*tx, &job, PENDING_EXPORTS).await? else {
            return Ok(None);
        };
        let id: i64 = tx
            .query_one(
                "INSERT INTO exports (lab_id, job_id, started_by, options, estimate, name, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                &[new.lab, &job, &new.started_by, &new.options, &new.estimate, &new.name, &new.expires_at],
            )
            .await?
            .get(0);
        tx.execute(
            "UPDATE jobs SET params = jsonb_build_object('export', $2::bigint) WHERE id = $1",
            &[&job, &id],
        )
        .await?;
        tx.commit().await?;
        Ok(Some((id, job)))
    }

    pub async fn export(&self, id: i64) -> Result<Option<ExportRecord>, StoreError> {
        self.export_where("e.id", id).await
    }

    pub async fn export_of_job(&self, job: i64) -> Result<Option<ExportRecord>, StoreError> {
        self.export_where("e.job_id", job).await
    }

    /// The export whose `column` (a key of `exports`) is `value`.
    async fn export_where(
        &self,
        column: &'static str,
        value: i64,
    ) -> Result<Option<ExportRecord>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                &format!("SELECT {EXPORT_COLUMNS} FROM {EXPORT_FROM} WHERE {column} = $1"),
                &[&value],
            )
            .await?;
        row.as_ref().map(export).transpose()
    }

    /// A lab's exports, newest first.
    pub async fn lab_exports(&self, lab: &LabId) -> Result<Vec<ExportRecord>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                &format!("SELECT {EXPORT_COLUMNS} FROM {EXPORT_FROM} WHERE e.lab_id = $1 ORDER BY e.id DESC"),
                &[lab],
            )
            .await?;
        rows.iter().map(export).collect()
    }

    /// The archive is in place: its file, size, and the size of its part
    /// without the optional files.
    pub async fn set_export_file(
        &self,
        id: i64,
        file: &str,
        (size, tables_size): (i64, i64),
    ) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "UPDATE exports SET file = $2, size = $3, tables_size = $4 WHERE id = $1",
                &[&id, &file, &size, &tables_size],
            )
            .await?;
        Ok(())
    }

    /// The size of the tables part of the lab's newest ready export.
    pub async fn last_tables_size(&self, lab: &LabId) -> Result<Option<i64>, StoreError> {
        Ok(self
            .client()
            .await?
            .query_opt(
                "SELECT tables_size FROM exports WHERE lab_id = $1 AND tables_size IS NOT NULL
                 ORDER BY id DESC LIMIT 1",
                &[lab],
            )
            .await?
            .map(|r| r.get(0)))
    }

    /// The recorded size of all snapshots of a lab.
    pub async fn snapshot_bytes(&self, lab: &LabId) -> Result<i64, StoreError> {
        Ok(self
            .client()
            .await?
            .query_one(
                "SELECT coalesce(sum(size + 76 + 2 * (length(database) + 40)), 0)::int8 FROM snapshots WHERE lab_id = $1",
                &[lab],
            )
            .await?
            .get(0))
    }

    /// How many rows an export of the lab writes: participants, task
    /// results, history changes, session periods, hand-ins, jobs.
    pub async fn export_counts(&self, lab: &LabId) -> Result<[i64; 6], StoreError> {
        let r = self
            .client()
            .await?
            .query_one(
                "SELECT (SELECT count(*) FROM participants WHERE lab_id = $1),
                        (SELECT count(*) FROM task_scores WHERE lab_id = $1),
                        (SELECT count(*) FROM task_history WHERE lab_id = $1),
                        (SELECT count(*) FROM session_history WHERE lab_id = $1),
                        (SELECT count(*) FROM submissions WHERE lab_id = $1),
                        (SELECT count(*) FROM jobs WHERE lab_id = $1 AND kind <> 'export')",
                &[lab],
            )
            .await?;
        Ok([r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)])
    }

    /// Exports whose time is up and whose file is still there.
    pub async fn expired_exports(&self) -> Result<Vec<ExportRecord>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT {EXPORT_COLUMNS} FROM {EXPORT_FROM}
                     WHERE e.expires_at < now() AND e.deleted_at IS NULL"
                ),
                &[],
            )
            .await?;
        rows.iter().map(export).collect()
    }

    pub async fn mark_export_deleted(&self, id: i64) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "UPDATE exports SET deleted_at = now() WHERE id = $1",
                &[&id],
            )
            .await?;
        Ok(())
    }

    /// Up to `limit` task changes of a lab after row `after`, oldest
    /// first: (row id, database, change).
    pub async fn history_page(
        &self,
        lab: &LabId,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, String, TaskChange)>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT id, database, task, at, passed, points, class FROM task_history
                 WHERE lab_id = $1 AND id > $2 ORDER BY id LIMIT $3",
                &[lab, &after, &limit],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let change = TaskChange {
                    task: r.get(2),
                    at: r.get(3),
                    passed: r.get(4),
                    points: r.get(5),
                    class: r.get(6),
                };
                (r.get(0), r.get(1), change)
            })
            .collect())
    }

    /// Up to `limit` session periods of a lab after row `after`.
    pub async fn sessions_page(
        &self,
        lab: &LabId,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, SessionRow)>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT id, database, started_at, ended_at FROM session_history
                 WHERE lab_id = $1 AND id > $2 ORDER BY id LIMIT $3",
                &[lab, &after, &limit],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let row = SessionRow {
                    database: r.get(1),
                    started_at: r.get(2),
                    ended_at: r.get(3),
                };
                (r.get(0), row)
            })
            .collect())
    }

    /// Up to `limit` jobs of a lab after job `after`, oldest first.
    pub async fn jobs_page(
        &self,
        lab: &LabId,
        after: i64,
        limit: i64,
    ) -> Result<Vec<super::JobRecord>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT {} FROM jobs j WHERE j.lab_id = $1 AND j.id > $2 AND j.kind <> 'export'
                     ORDER BY j.id LIMIT $3",
                    super::jobs::JOB_COLUMNS
                ),
                &[lab, &after, &limit],
            )
            .await?;
        rows.iter().map(super::jobs::job).collect()
    }

    /// The stored task results of some databases of a lab.
    pub async fn task_scores_of(
        &self,
        lab: &LabId,
        databases: &[String],
    ) -> Result<Vec<super::StoredTask>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT database, task, passed, points, reason, first_passed_at
                 FROM task_scores WHERE lab_id = $1 AND database = ANY ($2)",
                &[lab, &databases],
            )
            .await?;
        Ok(rows.iter().map(super::scores::stored_task).collect())
    }
}
