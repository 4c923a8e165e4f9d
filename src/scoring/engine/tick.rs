//! The looks between full rounds: the activity query alone, over kept
//! connections; what changed is evaluated and published at once.

use super::{Activity, Engine};
use crate::scoring::activity::{ActivityError, Watch};
use crate::settings::PgServerSettings;
use std::collections::BTreeMap;

/// How often a server's health is written while it stays the same (well
/// within `control::HEALTH_VALID_SECS`). Each write moves the next
/// transaction id that the looks read, so the next look reads the activity
/// again: not more often than this.
const HEALTH_WRITE: std::time::Duration = std::time::Duration::from_secs(60);

impl Engine {
    /// One look at the databases the last full round placed: those that
    /// changed are evaluated, and a board is published when anything the
    /// board shows changed (a result, a session, an activity). Without a
    /// full round yet, one. The databases evaluated.
    pub async fn tick(&mut self) -> Result<usize, crate::control::StoreError> {
        if self.leases_moved().await {
            self.placed = None;
        }
        let Some(placed) = self.placed.take() else {
            return self.round(None).await;
        };
        let began = chrono::Utc::now();
        // Rows other replicas wrote: shown at once, like a change here.
        let fresh = self.read_foreign(false).await;
        if self.unchanged(&placed).await {
            self.placed = Some(placed);
            let servers = self.servers_up.clone();
            self.record_health(&servers).await;
            if fresh {
                self.publish(&self.published, servers, began);
            }
            return Ok(0);
        }
        let (activity, servers, jobs) = self.changes(&placed).await;
        self.placed = Some(placed);
        let servers = self.merged(servers);
        self.record_health(&servers).await;
        let same = activity == self.published && servers == self.servers_up;
        if jobs.is_empty() && same && !fresh {
            return Ok(0);
        }
        let evaluated = jobs.len();
        self.evaluate(jobs, &activity).await;
        self.publish(&activity, servers.clone(), began);
        self.write_own().await;
        self.published = activity;
        self.servers_up = servers;
        Ok(evaluated)
    }

    /// This look's servers, and those it did not look at as last found.
    pub(super) fn merged(&self, mut servers: Vec<(String, bool)>) -> Vec<(String, bool)> {
        for (name, up) in &self.servers_up {
            if !servers.iter().any(|(n, _)| n == name) {
                servers.push((name.clone(), *up));
            }
        }
        servers.sort_by(|a, b| {
            let at = |n: &str| self.settings.postgres.iter().position(|s| s.name == n);
            at(&a.0).cmp(&at(&b.0))
        });
        servers
    }

    /// Whether no server of `placed` changed anything since the last look
    /// (one small query each); the digests are kept for the next look. A
    /// server that does not answer counts as changed (the activity query
    /// then says it is down).
    pub(super) async fn unchanged(&mut self, placed: &super::Placements) -> bool {
        let mut same = true;
        for server in placed.keys() {
            let Some(s) = self.settings.server(server.as_str()).cloned() else {
                continue;
            };
            let now = match self.watch_of(&s).await {
                Ok(watch) => watch.digest().await.ok(),
                Err(_) => None,
            };
            if now.is_none() {
                self.clients.remove(&s.name);
            }
            let before = self
                .digests
                .insert(s.name.clone(), now.clone().unwrap_or_default());
            same &= now.is_some() && before == now;
        }
        same
    }

    /// Writes what this look found of each server to the control database
    /// (the heartbeat that the pages and placement read): at once when a
    /// server went down or came back, otherwise every `HEALTH_WRITE`.
    pub(super) async fn record_health(&mut self, servers: &[(String, bool)]) {
        for (name, up) in servers {
            if !self.scores(name) {
                continue; // its lease holder's to record
            }
            let due = self
                .health_written
                .get(name)
                .is_none_or(|(was, at)| was != up || at.elapsed() >= HEALTH_WRITE);
            if !due {
                continue;
            }
            let error = if *up {
                self.server_errors.remove(name);
                None
            } else {
                self.server_errors.get(name).cloned()
            };
            let server = crate::control::ServerName::new(name.as_str());
            let write = self
                .store
                .record_server_health(&server, *up, error.as_deref());
            // A control database that does not answer holds no look up for
            // long, and is tried again only after `HEALTH_WRITE`.
            match tokio::time::timeout(std::time::Duration::from_secs(2), write).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(server = %name, error = %e, "cannot record server health")
                }
                Err(_) => tracing::warn!(server = %name, "recording server health timed out"),
            }
            self.health_written
                .insert(name.clone(), (*up, std::time::Instant::now()));
        }
    }

    /// The connection kept for `s`, made when there is none or it broke.
    async fn watch_of(&mut self, s: &PgServerSettings) -> Result<&Watch, ActivityError> {
        if self.clients.get(&s.name).is_none_or(Watch::is_closed) {
            let watch = Watch::open(s).await?;
            self.clients.insert(s.name.clone(), watch);
        }
        Ok(self.clients.get(&s.name).expect("just made"))
    }

    /// The activity of `names` on `s`, over the connection kept for it (made
    /// again when it broke).
    pub(super) async fn activity_of(
        &mut self,
        s: &PgServerSettings,
        names: &[String],
    ) -> Result<BTreeMap<String, Activity>, ActivityError> {
        let kept = self.clients.contains_key(&s.name);
        let found = self.watch_of(s).await?.read(names).await;
        if found.is_ok() || !kept {
            return found;
        }
        // The kept connection may have broken: once more on a new one.
        self.clients.remove(&s.name);
        self.watch_of(s).await?.read(names).await
    }
}
