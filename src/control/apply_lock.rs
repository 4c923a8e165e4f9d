//! A lab's apply lock: one apply, reset or move preparation of a lab at a
//! time, in any pglab process.

use super::{Store, StoreError};
use crate::ident::LabId;
use std::time::{Duration, Instant};

/// How long an apply goes on without its lock's session (the control
/// database failing over) before it stops.
const LOCK_REGAIN: Duration = Duration::from_secs(30);

/// The lock is a session-level advisory lock: held by the session of its
/// own, released by `release`, or when dropped (its session ends, a moment
/// later).
pub struct ApplyLock {
    session: tokio_postgres::Client,
    /// The session's backend process id.
    pid: i32,
    lab: LabId,
    store: Store,
}

impl Store {
    /// Takes the apply lock of `lab`, unless another apply (a job, another
    /// `pglab apply`) holds it: `None` then.
    pub async fn lock_apply(&self, lab: &LabId) -> Result<Option<ApplyLock>, StoreError> {
        Ok(self
            .try_apply_lock(lab)
            .await?
            .map(|(session, pid)| ApplyLock {
                session,
                pid,
                lab: lab.clone(),
                store: self.clone(),
            }))
    }

    /// A session of its own holding `lab`'s apply lock (and its process
    /// id), unless another holds the lock. The server ends the session when
    /// it is idle for 15 s (`ApplyLock::guard` asks it every second): a lock
    /// whose pglab vanished without a word is free again soon.
    async fn try_apply_lock(
        &self,
        lab: &LabId,
    ) -> Result<Option<(tokio_postgres::Client, i32)>, StoreError> {
        let mut config = self.session_config();
        config.options("-c idle_session_timeout=15000");
        let session = self.session(config).await?;
        let row = session
            .query_one(
                "SELECT pg_try_advisory_lock(hashtext('pglab apply ' || $1)), pg_backend_pid()",
                &[lab],
            )
            .await?;
        Ok(row.get::<_, bool>(0).then(|| (session, row.get(1))))
    }

    /// The process id of the session holding `lab`'s apply lock.
    async fn apply_lock_holder(&self, lab: &LabId) -> Result<Option<i32>, StoreError> {
        // A one-key lock: its 64-bit key split in classid (high) and objid.
        Ok(self
            .client()
            .await?
            .query_opt(
                "SELECT pid FROM pg_locks, (SELECT hashtext('pglab apply ' || $1)::bigint AS k) key
                 WHERE locktype = 'advisory' AND granted AND objsubid = 1
                   AND classid::bigint = ((k >> 32) & 4294967295) AND objid::bigint = (k & 4294967295)",
                &[lab],
            )
            .await?
            .map(|r| r.get(0)))
    }
}

impl ApplyLock {
    /// Runs `work` under the lock, asking the lock's session every second.
    /// When the session is gone (a failover to a standby ends every
    /// session), the lock is taken again on a new one while `work` waits;
    /// when another apply took it meanwhile, or the control database stays
    /// away for `LOCK_REGAIN`, `work` is stopped at its next await (as a
    /// crash would stop it: applies and moves are made to be run again)
    /// and the error says why.
    pub async fn guard<T>(
        &mut self,
        work: impl std::future::Future<Output = T>,
    ) -> Result<T, StoreError> {
        tokio::pin!(work);
        let mut every = tokio::time::interval(Duration::from_secs(1));
        let mut lost_since: Option<Instant> = None;
        loop {
            tokio::select! {
                out = &mut work => return Ok(out),
                _ = every.tick() => {}
            }
            if self.alive().await {
                continue;
            }
            let since = *lost_since.get_or_insert_with(Instant::now);
            match self.store.try_apply_lock(&self.lab).await {
                Ok(Some((session, pid))) => {
                    tracing::warn!(lab = %self.lab, "the apply lock's session ended: lock taken again");
                    (self.session, self.pid) = (session, pid);
                    lost_since = None;
                }
                // Still held by the old session, which its server has not
                // ended yet (it does after 15 s idle): wait for it.
                Ok(None) if since.elapsed() < LOCK_REGAIN && self.old_session_holds().await => {}
                Ok(None) => return Err(StoreError::ApplyLockLost(self.lab.clone())),
                Err(e) if since.elapsed() >= LOCK_REGAIN => return Err(e),
                Err(e) => {
                    tracing::warn!(lab = %self.lab, error = %e, "the apply lock's session ended: taking it again")
                }
            }
        }
    }

    /// Whether the lock's session answers (asked, the server does not end
    /// it as idle, and a dead connection shows).
    async fn alive(&self) -> bool {
        let asked = tokio::time::timeout(
            Duration::from_secs(5),
            self.session.simple_query("SELECT 1"),
        );
        !self.session.is_closed() && asked.await.is_ok_and(|r| r.is_ok())
    }

    async fn old_session_holds(&self) -> bool {
        self.store.apply_lock_holder(&self.lab).await.ok().flatten() == Some(self.pid)
    }

    /// Releases the lock before the session ends: the next apply finds it
    /// free at once.
    pub async fn release(self) {
        let _ = self
            .session
            .execute(
                "SELECT pg_advisory_unlock(hashtext('pglab apply ' || $1))",
                &[&self.lab],
            )
            .await;
    }
}
