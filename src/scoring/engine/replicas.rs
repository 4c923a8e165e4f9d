//! Scoring shared by pglab replicas: this replica scores the servers whose
//! lease it holds (`control::leases`), writes its participants' board rows
//! to the control database when they changed, and shows the other servers'
//! participants as the replicas holding those leases last wrote them.

use super::Engine;
use crate::control::LeaseSession;
use crate::scoring::board::ParticipantBoard;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// How often the leases are balanced again (and the lease session asked,
/// which keeps it from being ended as idle).
const REBALANCE: Duration = Duration::from_secs(2);

/// A replica's part: its lease session, and the rows it shares.
#[derive(Default)]
pub(super) struct Shared {
    session: Option<LeaseSession>,
    checked: Option<Instant>,
    me: u64,
    held: BTreeSet<String>,
    /// The newest board row read from the control database.
    seen: i64,
    /// Other replicas' rows, by (lab, database).
    foreign: BTreeMap<(String, String), ParticipantBoard>,
    /// The rows this replica wrote last, by (lab, database).
    written: BTreeMap<(String, String), ParticipantBoard>,
}

impl Engine {
    /// This engine as one replica among several: it scores only the
    /// servers whose lease it holds. (Without, an engine scores every
    /// server, as `pglab score` does.)
    pub fn shared(mut self) -> Self {
        use std::hash::{Hash, Hasher};
        let mut me = std::collections::hash_map::DefaultHasher::new();
        crate::random::token().hash(&mut me);
        self.shared = Some(Shared {
            me: me.finish(),
            ..Shared::default()
        });
        self
    }

    /// The servers whose lease this replica holds (`None`: an engine of
    /// its own, which scores every server).
    pub fn leases(&self) -> Option<&BTreeSet<String>> {
        self.shared.as_ref().map(|s| &s.held)
    }

    /// The servers this engine scores now: all (`None`) for an engine of
    /// its own, else those whose lease it holds, balanced every
    /// `REBALANCE`. A lease session that broke holds nothing.
    pub(super) async fn held_servers(&mut self) -> Option<BTreeSet<String>> {
        let names: Vec<String> = self
            .settings
            .postgres
            .iter()
            .map(|s| s.name.clone())
            .collect();
        let store = self.store.clone();
        let shared = self.shared.as_mut()?;
        let mut gained = BTreeSet::new();
        let due = shared.checked.is_none_or(|t| t.elapsed() >= REBALANCE)
            || shared.session.as_ref().is_none_or(LeaseSession::is_closed);
        if due {
            shared.checked = Some(Instant::now());
            let balanced = async {
                if shared.session.as_ref().is_none_or(LeaseSession::is_closed) {
                    shared.session = Some(store.lease_session().await?);
                    // A new session holds nothing yet: whatever it takes is
                    // gained (another replica may have scored it meanwhile;
                    // its rows are written again under the new fence).
                    shared.held.clear();
                }
                let session = shared.session.as_mut().expect("made above");
                session.rebalance(&names, shared.me).await.cloned()
            };
            match balanced.await {
                Ok(held) => {
                    if held != shared.held {
                        tracing::info!(servers = ?held, "scoring leases");
                    }
                    gained = held.difference(&shared.held).cloned().collect();
                    shared.written.retain(|_, p| !gained.contains(&p.server));
                    shared.held = held;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "scoring leases unavailable: scoring nothing meanwhile");
                    shared.session = None;
                    shared.held.clear();
                }
            }
        }
        if !gained.is_empty() {
            self.go_on_from_stored(&gained).await;
        }
        self.shared.as_ref().map(|s| s.held.clone())
    }

    /// Servers whose lease this replica just took: what it kept of their
    /// databases is old (another replica scored them meanwhile), so they
    /// go on from what the control database stores. (Before the first
    /// round nothing is kept: the labs load everything then.)
    async fn go_on_from_stored(&mut self, servers: &BTreeSet<String>) {
        let mut by_lab: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (lab, members) in &self.participant_index {
            for m in members
                .iter()
                .filter(|m| servers.contains(m.server.as_str()))
            {
                by_lab
                    .entry(lab.clone())
                    .or_default()
                    .insert(m.db.to_string());
            }
        }
        for (lab, dbs) in by_lab {
            let Some(cache) = self.labs.get_mut(&lab) else {
                continue;
            };
            cache.dbs.retain(|db, _| !dbs.contains(db));
            if let Err(e) =
                super::load_stored(&self.store, &cache.lab, &mut cache.dbs, Some(&dbs)).await
            {
                tracing::warn!(lab = %lab, error = %e, "cannot read the stored scores of a server taken over");
            }
        }
    }

    /// Reads the rows other replicas wrote since the last read (`all`:
    /// every row, as each full round does: a failover may have numbered
    /// rows again from below); whether there were any.
    pub(super) async fn read_foreign(&mut self, all: bool) -> bool {
        let Some(shared) = self.shared.as_mut() else {
            return false;
        };
        if all {
            shared.seen = 0;
            shared.foreign.clear();
            let held = shared.held.clone();
            shared.written.retain(|_, p| held.contains(&p.server));
        }
        let rows = match self.store.board_rows_since(shared.seen).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the shared board rows");
                return false;
            }
        };
        let mut fresh = false;
        for r in rows {
            shared.seen = shared.seen.max(r.seq);
            let key = (r.lab.to_string(), r.database.clone());
            // Rows of the servers this replica scores are never shown from
            // here (`foreign_row`); kept for a lease handed back later.
            match serde_json::from_value::<ParticipantBoard>(r.row) {
                Ok(row) => {
                    shared.foreign.insert(key, row);
                    fresh = true;
                }
                Err(e) => tracing::warn!(error = %e, "a shared board row does not read"),
            }
        }
        fresh
    }

    /// The row another replica wrote for a participant of a server this
    /// one does not score (`None` when it scores it).
    pub(super) fn foreign_row(
        &self,
        lab: &str,
        db: &str,
        server: &str,
    ) -> Option<ParticipantBoard> {
        let shared = self.shared.as_ref()?;
        if shared.held.contains(server) {
            return None;
        }
        shared
            .foreign
            .get(&(lab.to_string(), db.to_string()))
            .cloned()
    }

    /// Whether the servers this replica scores changed (leases taken or
    /// given back) since it last asked.
    pub(super) async fn leases_moved(&mut self) -> bool {
        let before = self.shared.as_ref().map(|s| s.held.clone());
        let after = self.held_servers().await;
        before != after
    }

    /// The tasks another replica found for a database this one scores now
    /// but has not evaluated yet (it took the lease over).
    pub(super) fn handed_over(
        &self,
        lab: &str,
        db: &str,
    ) -> Option<Vec<crate::scoring::TaskBoard>> {
        let shared = self.shared.as_ref()?;
        shared
            .foreign
            .get(&(lab.to_string(), db.to_string()))?
            .tasks
            .clone()
    }

    /// Whether this engine scores `server`.
    pub(super) fn scores(&self, server: &str) -> bool {
        self.shared.as_ref().is_none_or(|s| s.held.contains(server))
    }

    /// Writes the published rows of the servers this replica scores that
    /// changed since it last wrote them.
    pub(super) async fn write_own(&mut self) {
        let snapshot = self.board.get();
        let Some(shared) = self.shared.as_mut() else {
            return;
        };
        let mut changed = vec![];
        for lab in &snapshot.labs {
            for p in lab
                .participants
                .iter()
                .filter(|p| shared.held.contains(&p.server))
            {
                let key = (lab.id.clone(), p.database.clone());
                if shared.written.get(&key) == Some(p) {
                    continue;
                }
                if let Ok(row) = serde_json::to_value(p) {
                    changed.push((key, p.clone(), row));
                }
            }
        }
        let rows: Vec<_> = changed
            .iter()
            .map(|((lab, db), p, row)| (lab.clone(), db.clone(), p.server.clone(), row.clone()))
            .collect();
        let Some(fence) = shared.session.as_ref().map(LeaseSession::fence) else {
            return;
        };
        match self.store.put_board_rows(&rows, fence).await {
            // Rows a lost lease kept out are not written: tried again.
            Ok(written) => {
                let written: std::collections::HashSet<_> = written.into_iter().collect();
                for (key, p, _) in changed {
                    if written.contains(&key) {
                        shared.written.insert(key, p);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot share the board rows"),
        }
    }

    /// The up/down of the servers this replica does not score, as their
    /// lease holders last recorded them.
    pub(super) async fn others_health(&self, servers: &mut Vec<(String, bool)>) {
        if self.shared.is_none() {
            return;
        }
        let Ok(health) = self.store.server_health().await else {
            return;
        };
        for s in &self.settings.postgres {
            if servers.iter().any(|(n, _)| n == &s.name) {
                continue;
            }
            let down = health
                .iter()
                .any(|h| h.server.as_str() == s.name && h.down());
            servers.push((s.name.clone(), !down));
        }
    }
}
