//! Scoring leases: each Postgres server's databases are scored by one pglab
//! replica at a time. A lease is a session-level advisory lock in the
//! control database, held by a session of the replica's own: it ends with
//! that session, at once when the replica dies (its socket closes), or after
//! `IDLE_SECS` when the replica hangs (the session stops asking and the
//! server ends it). Replicas are the sessions named `APPLICATION` and
//! their process id (so that an operator sees which holds what); each
//! takes its share of the servers (all of them, divided by the replicas,
//! rounded up) and gives back what is over its share, so that a replica
//! that joins gets work within a few seconds. Nothing is written: the
//! leases move no transaction id of the control database.

use super::{Store, StoreError};
use std::collections::BTreeSet;
use std::sync::Arc;
use tokio_postgres::Client;

/// The `application_name` of every replica's lease session, before its
/// process id.
pub const APPLICATION: &str = "pglab-scoring";
/// A lease session idle this long is ended by the server (a hung replica).
pub const IDLE_SECS: u32 = 15;
/// First key of the leases' advisory locks (the second: the server name's
/// hash); apart from the one-key locks of applies.
pub(super) const NAMESPACE: i32 = 0x7067_6c73;

/// How often the lease session is asked something by a task of its own,
/// so that it is not ended as idle while a long round evaluates (a hung
/// process asks nothing, and loses its leases).
const PING_SECS: u64 = 3;

/// Who writes under the leases (`Store::put_board_rows`): a lease session,
/// by its backend's process id and start (after a failover, the id alone
/// may be another replica's session).
#[derive(Debug, Clone, Copy)]
pub struct Fence {
    pub pid: i32,
    pub started: chrono::DateTime<chrono::Utc>,
}

/// A replica's lease session and the servers it holds.
pub struct LeaseSession {
    client: Arc<Client>,
    fence: Fence,
    held: BTreeSet<String>,
    ping: tokio::task::AbortHandle,
}

impl Drop for LeaseSession {
    fn drop(&mut self) {
        self.ping.abort();
    }
}

impl Store {
    /// A new lease session (holding nothing yet).
    pub async fn lease_session(&self) -> Result<LeaseSession, StoreError> {
        let options = format!("-c idle_session_timeout={}", IDLE_SECS * 1000);
        let mut config = self.session_config();
        config
            .application_name(format!("{APPLICATION} {}", std::process::id()))
            .options(format!("-c role=none {options}"));
        let client = Arc::new(self.session(config).await?);
        let me = client
            .query_one(
                "SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()",
                &[],
            )
            .await?;
        let fence = Fence {
            pid: me.get(0),
            started: me.get(1),
        };
        let pinged = Arc::clone(&client);
        let ping = tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(PING_SECS)).await;
                if pinged.simple_query("SELECT 1").await.is_err() {
                    return;
                }
            }
        })
        .abort_handle();
        Ok(LeaseSession {
            client,
            fence,
            held: BTreeSet::new(),
            ping,
        })
    }
}

impl LeaseSession {
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// What fences writes by these leases.
    pub fn fence(&self) -> Fence {
        self.fence
    }

    pub fn held(&self) -> &BTreeSet<String> {
        &self.held
    }

    /// Takes this replica's share of `servers` and gives back the rest;
    /// `me` orders the free servers differently per replica, so that two
    /// replicas starting together seldom reach for the same one first.
    pub async fn rebalance(
        &mut self,
        servers: &[String],
        me: u64,
    ) -> Result<&BTreeSet<String>, StoreError> {
        let live: i64 = self
            .client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE $1 AND datname = current_database()",
                &[&format!("{APPLICATION} %")],
            )
            .await?
            .get(0);
        let share = servers.len().div_ceil(live.max(1) as usize);
        let over: Vec<String> = self
            .held
            .iter()
            .filter(|s| !servers.contains(s))
            .chain(self.held.iter().filter(|s| servers.contains(s)).skip(share))
            .cloned()
            .collect();
        for server in over {
            self.lock("pg_advisory_unlock", &server).await?;
            self.held.remove(&server);
        }
        let start = (me % servers.len().max(1) as u64) as usize;
        let order = servers.iter().cycle().skip(start).take(servers.len());
        for server in order {
            if self.held.len() >= share {
                break;
            }
            if !self.held.contains(server) && self.lock("pg_try_advisory_lock", server).await? {
                self.held.insert(server.clone());
            }
        }
        Ok(&self.held)
    }

    async fn lock(&self, function: &str, server: &str) -> Result<bool, StoreError> {
        Ok(self
            .client
            .query_one(
                &format!("SELECT {function}($1, hashtext($2))"),
                &[&NAMESPACE, &server],
            )
            .await?
            .get(0))
    }
}
