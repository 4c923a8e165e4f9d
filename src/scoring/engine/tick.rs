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

    /// The activity of `names` on `s`, over the connection kept for it (made
    /// again when it broke).
    pub(super) async fn activity_of(
        &mut self,
        s: &PgServerSettings,
        names: &[String],
    ) -> Result<BTreeMap<String, Activity>, ActivityError> {
        if let Some(client) = self.clients.get(&s.name).filter(|c| !c.is_closed()) {
            if let Ok(found) = activity::read_on(client, s, names).await {
                return Ok(found);
            }
        }
        self.clients.remove(&s.name);
        let client = crate::pgconn::connect(s, "postgres").await?;
        let found = activity::read_on(&client, s, names).await?;
        self.clients.insert(s.name.clone(), client);
        Ok(found)
    }
}
