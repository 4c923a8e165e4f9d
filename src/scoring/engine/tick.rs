//! The looks between full rounds: the activity query alone, over kept
//! connections; what changed is evaluated and published at once.

use super::{Activity, Engine};
use crate::scoring::activity::{self, ActivityError};
use crate::settings::PgServerSettings;
use std::collections::BTreeMap;

impl Engine {
    /// One look at the databases the last full round placed: those that
    /// changed are evaluated, and a board is published when anything the
    /// board shows changed (a result, a session, an activity). Without a
    /// full round yet, one. The databases evaluated.
    pub async fn tick(&mut self) -> Result<usize, crate::control::StoreError> {
        let Some(placed) = self.placed.take() else {
            return self.round(None).await;
        };
        let began = chrono::Utc::now();
        if self.unchanged(&placed).await {
            self.placed = Some(placed);
            return Ok(0);
        }
        let (activity, servers, jobs) = self.changes(&placed).await;
        self.placed = Some(placed);
        let servers = self.merged(servers);
        if jobs.is_empty() && activity == self.published && servers == self.servers_up {
            return Ok(0);
        }
        let evaluated = jobs.len();
        self.evaluate(jobs, &activity).await;
        self.publish(&activity, servers.clone(), began);
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
            let now = match self.client_of(&s).await {
                Ok(client) => activity::digest(client, &s).await.ok(),
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

    /// The connection kept for `s`, made when there is none or it broke.
    async fn client_of(
        &mut self,
        s: &PgServerSettings,
    ) -> Result<&tokio_postgres::Client, ActivityError> {
        if self.clients.get(&s.name).is_none_or(|c| c.is_closed()) {
            let client = crate::pgconn::connect(s, "postgres").await?;
            self.clients.insert(s.name.clone(), client);
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
        let found = activity::read_on(self.client_of(s).await?, s, names).await;
        if found.is_ok() || !kept {
            return found;
        }
        // The kept connection may have broken: once more on a new one.
        self.clients.remove(&s.name);
        activity::read_on(self.client_of(s).await?, s, names).await
    }
}
