//! Snapshots of participants' databases, their final state at the
//! deadline, and extensions of the deadline.

use super::jobs::{insert_job, NewJob};
use super::types::column;
use super::{SnapshotKind, Store, StoreError};
use crate::ident::{LabId, Username};
use crate::lab::AfterDeadline;
use chrono::{DateTime, Utc};
use tokio_postgres::Row;

#[derive(Debug, Clone, serde::Serialize)]
pub struct SnapshotRecord {
    pub id: i64,
    #[serde(skip)]
    pub lab: LabId,
    pub database: String,
    pub n: i32,
    pub kind: SnapshotKind,
    pub taken_at: DateTime<Utc>,
    /// Relative to the data directory.
    #[serde(skip)]
    pub file: String,
    pub size: i64,
    pub sha256: String,
    #[serde(skip)]
    pub signature: String,
    pub took_ms: i32,
}

/// A snapshot just written.
pub struct NewSnapshot<'a> {
    pub lab: &'a LabId,
    pub database: &'a str,
    pub kind: SnapshotKind,
    pub taken_at: DateTime<Utc>,
    pub file: &'a str,
    pub size: i64,
    pub sha256: &'a str,
    pub signature: &'a str,
    pub took_ms: i32,
}

const SNAPSHOT_COLUMNS: &str =
    "id, lab_id, database, n, kind, taken_at, file, size, sha256, signature, took_ms";

fn snapshot(r: &Row) -> Result<SnapshotRecord, StoreError> {
    let id: i64 = r.get(0);
    let key = || id.to_string();
    Ok(SnapshotRecord {
        id,
        lab: column(r, 1, "snapshot", key)?,
        database: r.get(2),
        n: r.get(3),
        kind: column(r, 4, "snapshot", key)?,
        taken_at: r.get(5),
        file: r.get(6),
        size: r.get(7),
        sha256: r.get(8),
        signature: r.get(9),
        took_ms: r.get(10),
    })
}

/// One task of a final score.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FinalTask {
    pub task: String,
    pub passed: bool,
    pub points: u32,
    pub reason: Option<String>,
}

/// What a database looked like at its deadline, and what became of it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FinalState {
    pub id: i64,
    pub database: String,
    pub deadline: DateTime<Utc>,
    pub taken_at: DateTime<Utc>,
    pub late: bool,
    pub reason: Option<String>,
    pub snapshot_id: Option<i64>,
    pub points: i32,
    pub max_points: i32,
    pub tasks: Vec<FinalTask>,
    pub policy: AfterDeadline,
    /// Why the final state has no snapshot.
    pub snapshot_error: Option<String>,
    /// Whether the policy was applied.
    pub enforced: bool,
}

/// A final state to record.
pub struct NewFinal<'a> {
    pub lab: &'a LabId,
    pub database: &'a str,
    pub deadline: DateTime<Utc>,
    pub taken_at: DateTime<Utc>,
    pub late: bool,
    pub reason: Option<&'a str>,
    pub snapshot_id: Option<i64>,
    pub tasks: &'a [FinalTask],
    pub max_points: i32,
    pub policy: AfterDeadline,
    pub snapshot_error: Option<&'a str>,
}

const FINAL_COLUMNS: &str = "id, database, deadline, taken_at, late, reason, snapshot_id, points, max_points, tasks, policy, snapshot_error, enforced_at IS NOT NULL";

fn final_state(r: &Row) -> Result<FinalState, StoreError> {
    let id: i64 = r.get(0);
    let bad = |reason: String| StoreError::BadRecord {
        what: "final state",
        key: id.to_string(),
        reason,
    };
    let tasks: serde_json::Value = r.get(9);
    let policy: String = r.get(10);
    Ok(FinalState {
        id,
        database: r.get(1),
        deadline: r.get(2),
        taken_at: r.get(3),
        late: r.get(4),
        reason: r.get(5),
        snapshot_id: r.get(6),
        points: r.get(7),
        max_points: r.get(8),
        tasks: serde_json::from_value(tasks).map_err(|e| bad(format!("tasks: {e}")))?,
        policy: AfterDeadline::parse(&policy)
            .ok_or_else(|| bad(format!("unknown policy {policy:?}")))?,
        snapshot_error: r.get(11),
        enforced: r.get(12),
    })
}

/// A participant's deadline moved.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Extension {
    pub username: Username,
    pub until: DateTime<Utc>,
    pub granted_by: String,
    pub granted_at: DateTime<Utc>,
}

/// Serialises recording a database's final state with moving its deadline.
async fn lock_final(
    tx: &impl tokio_postgres::GenericClient,
    lab: &LabId,
    database: &str,
) -> Result<(), StoreError> {
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('pglab final ' || $1 || '/' || $2))",
        &[lab, &database],
    )
    .await?;
    Ok(())
}

impl Store {
    /// Marks `database` as looked at in snapshot interval `period` and
    /// queues `job` for it, unless it was looked at in this interval
    /// already (by this or another replica), or is seen for the first time
    /// (its first snapshot falls at its next interval, not when pglab
    /// starts): `None` then.
    pub async fn schedule_snapshot(
        &self,
        lab: &LabId,
        database: &str,
        period: i64,
        job: &NewJob<'_>,
    ) -> Result<Option<i64>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let due = tx
            .query_opt(
                "INSERT INTO snapshot_schedule (lab_id, database, period) VALUES ($1, $2, $3)
                 ON CONFLICT (lab_id, database) DO UPDATE SET period = EXCLUDED.period
                 WHERE snapshot_schedule.period < EXCLUDED.period
                 RETURNING xmax::text <> '0'",
                &[lab, &database, &period],
            )
            .await?
            .is_some_and(|r| r.get::<_, bool>(0));
        // Behind a hand-in or two of the same database, if need be.
        let id = if due {
            insert_job(&*tx, job, 3).await?
        } else {
            None
        };
        tx.commit().await?;
        Ok(id)
    }

    pub async fn record_snapshot(
        &self,
        new: &NewSnapshot<'_>,
    ) -> Result<SnapshotRecord, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // Numbers per database: one insert at a time takes the next.
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('pglab snapshot ' || $1 || '/' || $2))",
            &[new.lab, &new.database],
        )
        .await?;
        let row = tx
            .query_one(
                &format!(
                    "INSERT INTO snapshots (lab_id, database, n, kind, taken_at, file, size, sha256, signature, took_ms)
                     SELECT $1, $2, coalesce(max(n), 0) + 1, $3, $4, $5, $6, $7, $8, $9
                     FROM snapshots WHERE lab_id = $1 AND database = $2
                     RETURNING {SNAPSHOT_COLUMNS}"
                ),
                &[
                    new.lab,
                    &new.database,
                    &new.kind,
                    &new.taken_at,
                    &new.file,
                    &new.size,
                    &new.sha256,
                    &new.signature,
                    &new.took_ms,
                ],
            )
            .await?;
        tx.commit().await?;
        snapshot(&row)
    }

    /// A database's snapshots, newest first.
    pub async fn snapshots(
        &self,
        lab: &LabId,
        database: &str,
    ) -> Result<Vec<SnapshotRecord>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT {SNAPSHOT_COLUMNS} FROM snapshots
                     WHERE lab_id = $1 AND database = $2 ORDER BY n DESC"
                ),
                &[lab, &database],
            )
            .await?;
        rows.iter().map(snapshot).collect()
    }

    pub async fn snapshot(&self, id: i64) -> Result<Option<SnapshotRecord>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                &format!("SELECT {SNAPSHOT_COLUMNS} FROM snapshots WHERE id = $1"),
                &[&id],
            )
            .await?;
        row.as_ref().map(snapshot).transpose()
    }

    /// Forgets the periodic snapshots of a database beyond the newest
    /// `keep` (final ones, those taken before a restore, and those a final
    /// score was computed from stay); returns their files to delete.
    pub async fn prune_snapshots(
        &self,
        lab: &LabId,
        database: &str,
        keep: i64,
    ) -> Result<Vec<String>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "DELETE FROM snapshots WHERE id IN (
                     SELECT id FROM snapshots s
                     WHERE lab_id = $1 AND database = $2 AND kind = 'periodic'
                       AND NOT EXISTS (SELECT 1 FROM final_states f WHERE f.snapshot_id = s.id)
                     ORDER BY n DESC OFFSET $3)
                 RETURNING file",
                &[lab, &database, &keep],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Records a database's final state; `None` when one is recorded
    /// already (another worker was first) or the deadline moved meanwhile
    /// (an extension later than `new.deadline`): checked under the same
    /// lock as [`Store::extend`] takes, so that neither misses the other.
    pub async fn record_final(&self, new: &NewFinal<'_>) -> Result<Option<i64>, StoreError> {
        let points: i32 = new.tasks.iter().map(|t| t.points as i32).sum();
        let tasks = serde_json::to_value(new.tasks).unwrap_or_default();
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        lock_final(&*tx, new.lab, new.database).await?;
        let row = tx
            .query_opt(
                "INSERT INTO final_states (lab_id, database, deadline, taken_at, late, reason,
                                           snapshot_id, points, max_points, tasks, policy, snapshot_error,
                                           enforced_at)
                 SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,
                        CASE WHEN $11 = 'keep-open' THEN now() END
                 WHERE NOT EXISTS (SELECT 1 FROM extensions e
                                   JOIN participants p ON p.lab_id = e.lab_id AND p.username = e.username
                                   WHERE e.lab_id = $1 AND p.database = $2 AND e.until > $3)
                 ON CONFLICT (lab_id, database) WHERE superseded_at IS NULL DO NOTHING
                 RETURNING id",
                &[
                    new.lab,
                    &new.database,
                    &new.deadline,
                    &new.taken_at,
                    &new.late,
                    &new.reason,
                    &new.snapshot_id,
                    &points,
                    &new.max_points,
                    &tasks,
                    &new.policy.name(),
                    &new.snapshot_error,
                ],
            )
            .await?;
        tx.commit().await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// The final state's policy is in force.
    pub async fn mark_enforced(&self, id: i64) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "UPDATE final_states SET enforced_at = now() WHERE id = $1",
                &[&id],
            )
            .await?;
        Ok(())
    }

    /// The current final states of a lab's databases.
    pub async fn final_states(&self, lab: &LabId) -> Result<Vec<FinalState>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT {FINAL_COLUMNS} FROM final_states
                     WHERE lab_id = $1 AND superseded_at IS NULL ORDER BY database"
                ),
                &[lab],
            )
            .await?;
        rows.iter().map(final_state).collect()
    }

    /// A database's current final state, if taken.
    pub async fn final_state(
        &self,
        lab: &LabId,
        database: &str,
    ) -> Result<Option<FinalState>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                &format!(
                    "SELECT {FINAL_COLUMNS} FROM final_states
                     WHERE lab_id = $1 AND database = $2 AND superseded_at IS NULL"
                ),
                &[lab, &database],
            )
            .await?;
        row.as_ref().map(final_state).transpose()
    }

    /// Sets (or moves) a participant's own deadline; the database's final
    /// state, if taken, is superseded and returned (its policy is to be
    /// undone).
    pub async fn extend(
        &self,
        lab: &LabId,
        user: &Username,
        database: &str,
        until: DateTime<Utc>,
        by: &str,
    ) -> Result<Option<FinalState>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        lock_final(&*tx, lab, database).await?;
        tx.execute(
            "INSERT INTO extensions (lab_id, username, until, granted_by) VALUES ($1, $2, $3, $4)
             ON CONFLICT (lab_id, username) DO UPDATE
             SET until = EXCLUDED.until, granted_by = EXCLUDED.granted_by, granted_at = now()",
            &[lab, user, &until, &by],
        )
        .await?;
        let row = tx
            .query_opt(
                &format!(
                    "UPDATE final_states SET superseded_at = now()
                     WHERE lab_id = $1 AND database = $2 AND superseded_at IS NULL AND deadline < $3
                     RETURNING {FINAL_COLUMNS}"
                ),
                &[lab, &database, &until],
            )
            .await?;
        tx.commit().await?;
        row.as_ref().map(final_state).transpose()
    }

    pub async fn extensions(&self, lab: &LabId) -> Result<Vec<Extension>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT username, until, granted_by, granted_at FROM extensions
                 WHERE lab_id = $1 ORDER BY username",
                &[lab],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Extension {
                    username: column(r, 0, "extension", || r.get::<_, String>(0))?,
                    until: r.get(1),
                    granted_by: r.get(2),
                    granted_at: r.get(3),
                })
            })
            .collect()
    }
}
