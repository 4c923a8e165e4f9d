//! What changed since the last round, from Postgres' own statistics: one
//! query per server over `pg_stat_database` and `pg_stat_activity`.

use crate::pgconn::{self, ConnectError};
use crate::settings::PgServerSettings;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// Changes when a database saw writes or DDL (rows inserted, updated or
/// deleted, catalogs included), or when a session in it ran a statement.
/// Statistics of idle sessions reach `pg_stat_database` with a delay; their
/// `state_change` in `pg_stat_activity` does not, hence both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    oid: u32,
    writes: i64,
    last_statement: Option<DateTime<Utc>>,
}

impl Signature {
    pub fn writes(&self) -> i64 {
        self.writes
    }

    /// The database (a restore or reset makes a new one under the name).
    pub fn oid(&self) -> u32 {
        self.oid
    }

    /// This signature once `rows` more writes of pglab's own (its progress
    /// rows, `in_database`) reached the statistics: nothing a participant
    /// did.
    pub fn after_own_writes(&self, rows: i64) -> Signature {
        Signature {
            writes: self.writes + rows,
            ..self.clone()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    pub signature: Signature,
    /// Participants' sessions now (pglab's own are not counted).
    pub connected: i64,
    /// Transactions rolled back in the database (failed statements).
    pub errors_total: i64,
    pub last_activity: Option<DateTime<Utc>>,
    /// When the oldest of the participants' open sessions began.
    pub connected_since: Option<DateTime<Utc>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ActivityError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("{}", pgconn::db_message(.0))]
    Db(#[from] tokio_postgres::Error),
    #[error("no answer within {} s", READ_TIMEOUT.as_secs())]
    TimedOut,
}

/// Longest the activity query may take (a server that stopped answering
/// does not hold the round up).
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// One value that changes whenever a participant does anything on the
/// server: runs a statement (a session's `state_change` is set when a
/// statement begins and ends, failed ones included), connects or
/// disconnects, writes anything (the next transaction id: a session that
/// came, wrote and went between two looks leaves no other trace), or has
/// their database replaced (a hand-in's restore, a reset: a new database
/// oid). A look that finds it unchanged needs nothing else. It reads no
/// per-database statistics (those of an idle session reach
/// `pg_stat_database` late): its cost is that of `pg_database` and
/// `pg_stat_activity`, however busy the databases were.
const DIGEST: &str = "SELECT concat_ws('|',
    pg_snapshot_xmax(pg_current_snapshot()),
    (SELECT concat_ws(':', count(*), sum(oid::int8)) FROM pg_database),
    (SELECT concat_ws(':', count(*), sum(pid), max(backend_start), max(state_change))
     FROM pg_stat_activity
     WHERE backend_type = 'client backend' AND usename <> $1
       AND usename NOT LIKE 'pglab.ck.%'))";

/// Writes, rollbacks and participants' sessions of the databases `$1`.
const ACTIVITY: &str = "SELECT d.datname::text, d.datid,
        (d.tup_inserted + d.tup_updated + d.tup_deleted)::int8,
        d.xact_rollback::int8,
        coalesce(a.sessions, 0)::int8,
        a.last_statement,
        a.first_start
 FROM pg_stat_database d
 LEFT JOIN (SELECT datid, count(*) AS sessions,
                   max(coalesce(state_change, backend_start)) AS last_statement,
                   min(backend_start) AS first_start
            FROM pg_stat_activity
            WHERE backend_type = 'client backend' AND usename <> $2 AND usename NOT LIKE 'pglab.ck.%'
            GROUP BY datid) a ON a.datid = d.datid
 JOIN unnest($1::text[]) AS n(name) ON n.name = d.datname";

/// An admin connection kept to one server for the looks and activity
/// reads, with both statements prepared once: a look then costs the server
/// no parsing or planning.
pub struct Watch {
    client: tokio_postgres::Client,
    digest: tokio_postgres::Statement,
    activity: tokio_postgres::Statement,
    admin: String,
}

async fn timed<T>(
    work: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, ActivityError> {
    tokio::time::timeout(READ_TIMEOUT, work)
        .await
        .map_err(|_| ActivityError::TimedOut)?
        .map_err(ActivityError::Db)
}

impl Watch {
    pub async fn open(server: &PgServerSettings) -> Result<Self, ActivityError> {
        // The whole connect, not only its TCP part: a frozen server accepts
        // the connection and never answers.
        let client = tokio::time::timeout(READ_TIMEOUT, pgconn::connect(server, "postgres"))
            .await
            .map_err(|_| ActivityError::TimedOut)??;
        let digest = timed(client.prepare(DIGEST)).await?;
        let activity = timed(client.prepare(ACTIVITY)).await?;
        Ok(Self {
            client,
            digest,
            activity,
            admin: server.admin_user.clone(),
        })
    }

    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// The server's digest now (see [`DIGEST`]): one row, however many
    /// databases.
    pub async fn digest(&self) -> Result<String, ActivityError> {
        let row = timed(self.client.query_one(&self.digest, &[&self.admin])).await?;
        Ok(row.get::<_, Option<String>>(0).unwrap_or_default())
    }

    /// The activity of the databases `names`.
    pub async fn read(
        &self,
        names: &[String],
    ) -> Result<BTreeMap<String, Activity>, ActivityError> {
        let rows = timed(self.client.query(&self.activity, &[&names, &self.admin])).await?;
        Ok(rows.iter().map(activity_row).collect())
    }
}

fn activity_row(r: &tokio_postgres::Row) -> (String, Activity) {
    let last: Option<DateTime<Utc>> = r.get(5);
    (
        r.get(0),
        Activity {
            signature: Signature {
                oid: r.get(1),
                writes: r.get(2),
                last_statement: last,
            },
            connected: r.get(4),
            errors_total: r.get(3),
            last_activity: last,
            connected_since: r.get(6),
        },
    )
}
