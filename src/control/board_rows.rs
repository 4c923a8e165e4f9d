//! The board rows that scoring replicas share: each participant's row as
//! the replica that scores its server last made it.

use super::{Store, StoreError};
use crate::ident::LabId;

/// A participant's board row, and its number in the order of writes.
#[derive(Debug, Clone)]
pub struct BoardRow {
    pub lab: LabId,
    pub database: String,
    pub server: String,
    pub row: serde_json::Value,
    pub seq: i64,
}

/// The advisory lock that orders the writers of board rows.
const WRITERS_LOCK: i64 = 0x7067_6c62;

/// A row to write: (lab, database, server, row).
pub type NewBoardRow = (String, String, String, serde_json::Value);

impl Store {
    /// Writes rows (each numbered after every row written before), only
    /// those of servers whose lease the session `fence` holds when they are
    /// written: a replica that lost a lease in the middle of a round cannot
    /// write over the rows of the replica that took it (the writers' lock
    /// orders the two). Returns the (lab, database) of the rows written.
    pub async fn put_board_rows(
        &self,
        rows: &[NewBoardRow],
        fence: super::Fence,
    ) -> Result<Vec<(String, String)>, StoreError> {
        if rows.is_empty() {
            return Ok(vec![]);
        }
        let column = |f: fn(&NewBoardRow) -> &String| rows.iter().map(f).collect::<Vec<_>>();
        let values: Vec<&serde_json::Value> = rows.iter().map(|r| &r.3).collect();
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // Writers one at a time: rows commit in the order of their numbers,
        // so a reader that saw number n never misses a smaller one later.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITERS_LOCK])
            .await?;
        let written = tx
            .query(
                "INSERT INTO board_rows (lab_id, database, server, row, seq)
                 SELECT l, d, s, r, nextval('board_row_seq')
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[]) AS t(l, d, s, r)
                 WHERE EXISTS (SELECT 1 FROM labs WHERE id = l)
                   AND EXISTS (SELECT 1 FROM pg_locks k JOIN pg_stat_activity a ON a.pid = k.pid
                               WHERE k.pid = $5 AND a.backend_start = $6
                                 AND k.locktype = 'advisory' AND k.granted
                                 AND k.objsubid = 2 AND k.classid::bigint = $7
                                 AND k.objid::bigint = (hashtext(s)::bigint & 4294967295))
                 ON CONFLICT (lab_id, database)
                 DO UPDATE SET server = EXCLUDED.server, row = EXCLUDED.row, seq = EXCLUDED.seq
                 RETURNING lab_id, database",
                &[
                    &column(|r| &r.0),
                    &column(|r| &r.1),
                    &column(|r| &r.2),
                    &values,
                    &fence.pid,
                    &fence.started,
                    &i64::from(super::leases::NAMESPACE),
                ],
            )
            .await?;
        tx.commit().await?;
        Ok(written.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// The rows written after `seq`, oldest first.
    pub async fn board_rows_since(&self, seq: i64) -> Result<Vec<BoardRow>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT lab_id, database, server, row, seq FROM board_rows WHERE seq > $1 ORDER BY seq",
                &[&seq],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(BoardRow {
                    lab: super::types::column(r, 0, "board row", || r.get::<_, String>(1))?,
                    database: r.get(1),
                    server: r.get(2),
                    row: r.get(3),
                    seq: r.get(4),
                })
            })
            .collect()
    }
}
