//! The evidence trail: every change of a task's state and every period in
//! which a participant was connected, one row each (not one per round).

use super::{Store, StoreError};
use crate::ident::LabId;
use chrono::{DateTime, Utc};

/// A task's state from some moment on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TaskChange {
    pub task: String,
    pub at: DateTime<Utc>,
    pub passed: bool,
    pub points: i32,
    /// Why it does not pass.
    pub class: Option<String>,
}

/// A period in which the participant had sessions in their database.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SessionPeriod {
    pub started_at: DateTime<Utc>,
    /// `None` while connected.
    pub ended_at: Option<DateTime<Utc>>,
}

/// A change from its columns (task, at, passed, points, class) starting at
/// column `from`.
fn change(r: &tokio_postgres::Row, from: usize) -> TaskChange {
    TaskChange {
        task: r.get(from),
        at: r.get(from + 1),
        passed: r.get(from + 2),
        points: r.get(from + 3),
        class: r.get(from + 4),
    }
}

impl Store {
    /// Records a task's state at `at` unless it is the state recorded last
    /// (the engine reports every task it evaluates anew after a restart).
    pub async fn record_task_change(
        &self,
        lab: &LabId,
        database: &str,
        change: &TaskChange,
    ) -> Result<bool, StoreError> {
        let n = self
            .client()
            .await?
            .execute(
                "INSERT INTO task_history (lab_id, database, task, at, passed, points, class)
                 SELECT $1, $2, $3, $4, $5, $6, $7
                 WHERE NOT EXISTS (
                     SELECT 1 FROM (SELECT passed, class FROM task_history
                                    WHERE lab_id = $1 AND database = $2 AND task = $3
                                    ORDER BY id DESC LIMIT 1) l
                     WHERE l.passed = $5 AND l.class IS NOT DISTINCT FROM $7)",
                &[
                    lab,
                    &database,
                    &change.task,
                    &change.at,
                    &change.passed,
                    &change.points,
                    &change.class,
                ],
            )
            .await?;
        Ok(n == 1)
    }

    /// Every recorded change of a database's tasks, oldest first.
    pub async fn task_history(
        &self,
        lab: &LabId,
        database: &str,
    ) -> Result<Vec<TaskChange>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT task, at, passed, points, class FROM task_history
                 WHERE lab_id = $1 AND database = $2 ORDER BY at, id",
                &[lab, &database],
            )
            .await?;
        Ok(rows.iter().map(|r| change(r, 0)).collect())
    }

    /// Every recorded change in a lab: (database, change), oldest first.
    pub async fn lab_task_history(
        &self,
        lab: &LabId,
    ) -> Result<Vec<(String, TaskChange)>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT database, task, at, passed, points, class FROM task_history
                 WHERE lab_id = $1 ORDER BY at, id",
                &[lab],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), change(r, 1))).collect())
    }

    /// When each database of a lab first had a participant's session.
    pub async fn first_sessions(
        &self,
        lab: &LabId,
    ) -> Result<std::collections::BTreeMap<String, DateTime<Utc>>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT database, min(started_at) FROM session_history
                 WHERE lab_id = $1 GROUP BY database",
                &[lab],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// The databases of a lab with a session open now (as the latest
    /// scoring round saw them): when it began, and the last progress.
    pub async fn open_sessions(
        &self,
        lab: &LabId,
    ) -> Result<Vec<(String, DateTime<Utc>, Option<DateTime<Utc>>)>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT s.database, min(s.started_at), max(p.last_progress_at)
                 FROM session_history s
                 LEFT JOIN database_progress p ON p.lab_id = s.lab_id AND p.database = s.database
                 WHERE s.lab_id = $1 AND s.ended_at IS NULL
                 GROUP BY s.database ORDER BY s.database",
                &[lab],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    /// A participant connected (since `at`): a period opens unless one is
    /// open.
    pub async fn session_opened(
        &self,
        lab: &LabId,
        database: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "INSERT INTO session_history (lab_id, database, started_at)
                 SELECT $1, $2, $3
                 WHERE NOT EXISTS (SELECT 1 FROM session_history
                                   WHERE lab_id = $1 AND database = $2 AND ended_at IS NULL)",
                &[lab, &database, &at],
            )
            .await?;
        Ok(())
    }

    /// Nobody is connected any more: the open period ends at `at`.
    pub async fn session_closed(
        &self,
        lab: &LabId,
        database: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "UPDATE session_history SET ended_at = greatest(started_at, $3)
                 WHERE lab_id = $1 AND database = $2 AND ended_at IS NULL",
                &[lab, &database, &at],
            )
            .await?;
        Ok(())
    }

    pub async fn session_history(
        &self,
        lab: &LabId,
        database: &str,
    ) -> Result<Vec<SessionPeriod>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT started_at, ended_at FROM session_history
                 WHERE lab_id = $1 AND database = $2 ORDER BY started_at, id",
                &[lab, &database],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| SessionPeriod {
                started_at: r.get(0),
                ended_at: r.get(1),
            })
            .collect())
    }
}
