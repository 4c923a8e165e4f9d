//! Databases moved between servers (`pglab move`, `pglab drain`): the
//! switch of a placement, and what a server holds.

use super::{DatabaseRecord, ServerName, Store, StoreError};
use crate::ident::{LabId, PgName};

impl Store {
    /// Places `db` on `to` instead of `from`, remembering where it was,
    /// and sends hand-ins still queued for it there; in one transaction.
    /// `false` when it was not on `from` (nothing changed).
    pub async fn switch_database(
        &self,
        lab: &LabId,
        db: &PgName,
        from: &str,
        to: &str,
    ) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let moved = tx
            .execute(
                "UPDATE lab_databases SET server = $4, moved_from = $3, moved_at = now()
                 WHERE lab_id = $1 AND name = $2 AND server = $3",
                &[lab, db, &from, &to],
            )
            .await?;
        if moved == 1 {
            tx.execute(
                "UPDATE submissions s SET server = $4 FROM jobs j
                 WHERE j.id = s.job_id AND j.status = 'queued'
                   AND s.lab_id = $1 AND s.database = $2 AND s.server = $3",
                &[lab, db, &from, &to],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(moved == 1)
    }

    /// Whether a move of the database with this job key is queued or
    /// running.
    pub async fn move_pending(&self, lock_key: &str) -> Result<bool, StoreError> {
        let row = self
            .client()
            .await?
            .query_one(
                "SELECT count(*) FROM jobs WHERE lock_key = $1 AND kind = 'move' AND status IN ('queued', 'running')",
                &[&lock_key],
            )
            .await?;
        Ok(row.get::<_, i64>(0) > 0)
    }

    /// Every lab database placed on `server`, by lab.
    pub async fn databases_on(
        &self,
        server: &str,
    ) -> Result<Vec<(LabId, DatabaseRecord)>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT lab_id, name, owner, server FROM lab_databases WHERE server = $1 ORDER BY lab_id, name",
                &[&server],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let lab = super::types::column(r, 0, "database", || r.get::<_, String>(1))?;
                Ok((
                    lab,
                    DatabaseRecord {
                        name: r.get(1),
                        owner: r.get(2),
                        server: r.get(3),
                    },
                ))
            })
            .collect()
    }

    /// The databases that hand-ins into `db` on `server` replaced and that
    /// are kept there (`pglab.prev.<id>`).
    pub async fn kept_previous(
        &self,
        lab: &LabId,
        db: &PgName,
        server: &ServerName,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT id, previous FROM submissions
                 WHERE lab_id = $1 AND database = $2 AND server = $3 AND previous IS NOT NULL",
                &[lab, db, &server.as_str()],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}
