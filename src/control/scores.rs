//! Scores, progress and installation secrets in the control database.

use super::{Store, StoreError};
use crate::ident::LabId;
use crate::lab::Lab;
use chrono::{DateTime, Utc};

/// A lab as the scoring engine needs it.
#[derive(Debug, Clone)]
pub struct LabSpecRecord {
    pub lab: Lab,
    pub sources_digest: String,
    pub updated_at: DateTime<Utc>,
}

/// The stored outcome of one task on one database.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTask {
    pub database: String,
    pub task: String,
    pub passed: bool,
    pub points: i32,
    pub reason: Option<String>,
    pub first_passed_at: Option<DateTime<Utc>>,
}

/// A task result from its columns (database, task, passed, points, reason,
/// first_passed_at).
pub(super) fn stored_task(r: &tokio_postgres::Row) -> StoredTask {
    StoredTask {
        database: r.get(0),
        task: r.get(1),
        passed: r.get(2),
        points: r.get(3),
        reason: r.get(4),
        first_passed_at: r.get(5),
    }
}

impl Store {
    pub async fn lab_specs(&self) -> Result<Vec<LabSpecRecord>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT spec, sources_digest, updated_at, id FROM labs ORDER BY id",
                &[],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(LabSpecRecord {
                    lab: super::records::read_lab(r.get(3), r.get(0))?,
                    sources_digest: r.get(1),
                    updated_at: r.get(2),
                })
            })
            .collect()
    }

    pub async fn task_scores(&self, lab: &LabId) -> Result<Vec<StoredTask>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT database, task, passed, points, reason, first_passed_at
                 FROM task_scores WHERE lab_id = $1",
                &[lab],
            )
            .await?;
        Ok(rows.iter().map(stored_task).collect())
    }

    /// Saves one task's outcome; returns when it first passed (kept from
    /// earlier saves).
    pub async fn save_task(
        &self,
        lab: &LabId,
        t: &StoredTask,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let row = self
            .client()
            .await?
            .query_one(
                "INSERT INTO task_scores AS s (lab_id, database, task, passed, points, reason, first_passed_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $4 THEN $7::timestamptz END, $7)
                 ON CONFLICT (lab_id, database, task) DO UPDATE SET
                     passed = $4, points = $5, reason = $6, updated_at = $7,
                     first_passed_at = coalesce(s.first_passed_at, CASE WHEN $4 THEN $7::timestamptz END)
                 RETURNING first_passed_at",
                &[lab, &t.database, &t.task, &t.passed, &t.points, &t.reason, &now],
            )
            .await?;
        Ok(row.get(0))
    }

    pub async fn save_progress(
        &self,
        lab: &LabId,
        database: &str,
        last_progress_at: Option<DateTime<Utc>>,
        last_activity_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "INSERT INTO database_progress (lab_id, database, last_progress_at, last_activity_at)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (lab_id, database) DO UPDATE SET
                     last_progress_at = coalesce($3, database_progress.last_progress_at),
                     last_activity_at = coalesce($4, database_progress.last_activity_at)",
                &[lab, &database, &last_progress_at, &last_activity_at],
            )
            .await?;
        Ok(())
    }

    pub async fn progress(
        &self,
        lab: &LabId,
    ) -> Result<Vec<(String, Option<DateTime<Utc>>, Option<DateTime<Utc>>)>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT database, last_progress_at, last_activity_at FROM database_progress WHERE lab_id = $1",
                &[lab],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    /// A random value made once per installation and kept.
    pub async fn secret(&self, name: &str) -> Result<String, StoreError> {
        let fresh = crate::random::secret();
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                &[&name, &fresh.expose()],
            )
            .await?;
        let row = client
            .query_one("SELECT value FROM secrets WHERE name = $1", &[&name])
            .await?;
        Ok(row.get(0))
    }
}
