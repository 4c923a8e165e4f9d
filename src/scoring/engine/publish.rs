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
    ) {
        let key = self.pseudonym_key.clone().unwrap_or_default();
        let labs = self
            .labs
            .iter()
            .map(|(id, cache)| {
                let participants = self.participants_of(id);
                LabBoard::of(
                    &cache.lab,
                    participants
                        .iter()
                        .map(|(user, db, server)| {
                            let c = cache.dbs.get(db);
                            let a = activity.get(&(id.clone(), db.clone()));
                            ParticipantBoard {
                                username: user.clone(),
                                pseudonym: pseudonym(&key, id, user),
                                database: db.clone(),
                                server: server.clone(),
                                tasks: c.and_then(|c| c.outcomes.as_ref()).map(|o| {
                                    o.iter()
                                        .zip(&cache.lab.tasks)
                                        .map(|(o, t)| TaskBoard {
                                            passed: o.passed,
                                            points: o.points,
                                            reason: o.reason.clone(),
                                            first_passed: c
                                                .and_then(|c| c.first_passed.get(&t.id).copied()),
                                        })
                                        .collect()
                                }),
                                error: c.and_then(|c| c.error.clone()),
                                connected: a.map_or(0, |a| a.connected),
                                errors_total: a.map_or(0, |a| a.errors_total),
                                last_activity: c.and_then(|c| c.last_activity),
                                last_progress: c.and_then(|c| c.last_progress),
                                connected_since: a.and_then(|a| a.connected_since),
                            }
                        })
                        .collect(),
                )
            })
            .collect();
        self.board.publish(Snapshot {
            labs,
            servers,
            at: Some(Utc::now()),
        });
    }

    fn participants_of(&self, lab: &str) -> Vec<(String, String, String)> {
        self.participant_index.get(lab).cloned().unwrap_or_default()
    }
}
