//! Turning the engine's caches into the board that readers see.

use super::Engine;
use crate::scoring::activity::Activity;
use crate::scoring::board::{pseudonym, LabBoard, ParticipantBoard, Snapshot, TaskBoard};
use chrono::Utc;
use std::collections::BTreeMap;

impl Engine {
    pub(super) fn publish(
        &self,
        activity: &BTreeMap<(String, String), Activity>,
        servers: Vec<(String, bool)>,
        began: chrono::DateTime<Utc>,
    ) {
        let key = self.pseudonym_key.clone().unwrap_or_default();
        let down: Vec<&str> = servers
            .iter()
            .filter(|(_, up)| !up)
            .map(|(n, _)| n.as_str())
            .collect();
        let labs = self
            .labs
            .iter()
            .map(|(id, cache)| {
                let rows = self
                    .participants_of(id)
                    .iter()
                    .map(|m| {
                        self.row(
                            id,
                            cache,
                            m,
                            activity.get(&(id.clone(), m.db.to_string())),
                            &down,
                            &key,
                        )
                    })
                    .collect();
                LabBoard::of(&cache.lab, rows)
            })
            .collect();
        self.board.publish(Snapshot {
            labs,
            servers,
            at: Some(Utc::now()),
            began: Some(began),
            ldap_error: self.ldap_error.clone(),
        });
    }

    /// One participant's row: from this engine's cache for the servers it
    /// scores, else as the replica that scores it last wrote it.
    fn row(
        &self,
        id: &str,
        cache: &super::LabCache,
        m: &super::Member,
        a: Option<&Activity>,
        down: &[&str],
        key: &str,
    ) -> ParticipantBoard {
        let server_down = down.contains(&m.server.as_str());
        if let Some(mut row) = self.foreign_row(id, m.db.as_str(), m.server.as_str()) {
            row.username = m.username.to_string();
            row.server_down = server_down;
            return row;
        }
        let c = cache.dbs.get(m.db.as_str());
        let error = if server_down {
            Some(format!(
                "its Postgres server ({}) does not answer; the last scores found are kept",
                m.server
            ))
        } else {
            c.and_then(|c| c.error.clone())
        };
        let tasks = c.and_then(|c| c.outcomes.as_ref()).map(|o| {
            o.iter()
                .zip(&cache.lab.tasks)
                .map(|(o, t)| TaskBoard {
                    passed: o.passed,
                    points: o.points,
                    reason: o.reason.clone(),
                    hint: o.hint.clone(),
                    first_passed: c.and_then(|c| c.first_passed.get(&t.id).copied()),
                })
                .collect()
        });
        ParticipantBoard {
            username: m.username.to_string(),
            pseudonym: pseudonym(key, id, m.username.as_str()),
            database: m.db.to_string(),
            server: m.server.to_string(),
            tasks: tasks.or_else(|| self.handed_over(id, m.db.as_str())),
            error,
            server_down,
            connected: a.map_or(0, |a| a.connected),
            errors_total: a.map_or(0, |a| a.errors_total),
            last_activity: c.and_then(|c| c.last_activity),
            last_progress: c.and_then(|c| c.last_progress),
            connected_since: a.and_then(|a| a.connected_since),
        }
    }

    fn participants_of(&self, lab: &str) -> &[super::Member] {
        self.participant_index.get(lab).map_or(&[], Vec::as_slice)
    }
}
