//! Each Postgres server's health as the scoring engine last found it: the
//! board, the pages and placement read it.

use super::{ServerName, Store, StoreError};
use chrono::{DateTime, Utc};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServerHealth {
    pub server: ServerName,
    pub up: bool,
    /// When it last became up (or down).
    pub since: DateTime<Utc>,
    pub checked_at: DateTime<Utc>,
    pub error: Option<String>,
    /// Checked within the last `HEALTH_VALID_SECS` (by the control
    /// database's clock, as `checked_at` was written).
    pub fresh: bool,
}

/// How long a finding stays true: an older one (no pglab looked since)
/// says nothing.
pub const HEALTH_VALID_SECS: i64 = 180;

impl ServerHealth {
    /// Found down within the last `HEALTH_VALID_SECS`.
    pub fn down(&self) -> bool {
        !self.up && self.fresh
    }
}

impl Store {
    /// Records what a look found; `since` moves only when `up` changed.
    pub async fn record_server_health(
        &self,
        server: &ServerName,
        up: bool,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "INSERT INTO server_health AS h (server, up, since, checked_at, error)
                 VALUES ($1, $2, now(), now(), $3)
                 ON CONFLICT (server) DO UPDATE
                 SET up = EXCLUDED.up,
                     since = CASE WHEN h.up = EXCLUDED.up THEN h.since ELSE EXCLUDED.since END,
                     checked_at = EXCLUDED.checked_at,
                     error = EXCLUDED.error",
                &[&server.as_str(), &up, &error],
            )
            .await?;
        Ok(())
    }

    /// The servers found down within the last `HEALTH_VALID_SECS`.
    pub async fn servers_down(&self) -> Result<std::collections::BTreeSet<String>, StoreError> {
        Ok(self
            .server_health()
            .await?
            .into_iter()
            .filter(ServerHealth::down)
            .map(|h| h.server.to_string())
            .collect())
    }

    /// Every server's last finding.
    pub async fn server_health(&self) -> Result<Vec<ServerHealth>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT server, up, since, checked_at, error,
                        checked_at > now() - make_interval(secs => $1)
                 FROM server_health ORDER BY server",
                &[&(HEALTH_VALID_SECS as f64)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| ServerHealth {
                server: ServerName::new(r.get::<_, String>(0).as_str()),
                up: r.get(1),
                since: r.get(2),
                checked_at: r.get(3),
                error: r.get(4),
                fresh: r.get(5),
            })
            .collect())
    }
}
