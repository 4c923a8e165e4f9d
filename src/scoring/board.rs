//! The published state of every lab after the latest round: what `/metrics`,
//! `pglab score` and the web app's boards read. Replaced as a whole at the
//! end of a round, so a reader never waits on a round nor sees half of one.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use std::sync::{Arc, RwLock};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TaskBoard {
    pub passed: bool,
    pub points: u32,
    pub reason: Option<String>,
    /// The lab's hint for the check that fails.
    pub hint: Option<String>,
    pub first_passed: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ParticipantBoard {
    pub username: String,
    pub pseudonym: String,
    pub database: String,
    pub server: String,
    /// `None` until the database was evaluated once.
    pub tasks: Option<Vec<TaskBoard>>,
    /// Why the database could not be evaluated in the latest round.
    pub error: Option<String>,
    pub connected: i64,
    pub errors_total: i64,
    pub last_activity: Option<DateTime<Utc>>,
    pub last_progress: Option<DateTime<Utc>>,
    /// When the oldest open session began (for "needs help").
    pub connected_since: Option<DateTime<Utc>>,
    /// Its Postgres server did not answer in the latest round: the tasks
    /// are the last ones found.
    pub server_down: bool,
}

/// Minutes without progress after which a connected participant needs
/// help; the generated alert `PglabParticipantStuck` uses the same.
pub const STUCK_MINUTES: i64 = 15;

/// Scripted students of the "needs help" rule, at minute `STUCK_SCRIPT_AT`:
/// (name, connected from minute, last progress at minute, needs help).
/// The board's rule is tested on them here, the generated alert in the
/// promtool test that `pglab generate` writes (run by the test suite).
pub const STUCK_SCRIPT: [(&str, Option<u32>, Option<u32>, bool); 5] = [
    ("stuck", Some(0), Some(2), true),
    ("busy", Some(0), Some(19), false),
    ("never", Some(0), None, true),
    ("fresh", Some(12), None, false),
    ("away", None, Some(0), false),
];
pub const STUCK_SCRIPT_AT: u32 = 20;

/// The rule of "needs help" (see `ParticipantBoard::stuck_minutes`), also
/// for what the control database recorded: minutes without progress.
pub fn stuck_minutes(
    connected: bool,
    last_progress: Option<DateTime<Utc>>,
    connected_since: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<i64> {
    if !connected {
        return None;
    }
    let since = match (last_progress, connected_since) {
        (Some(p), Some(c)) => p.max(c),
        (p, c) => p.or(c)?,
    };
    let minutes = (now - since).num_minutes();
    (minutes >= STUCK_MINUTES).then_some(minutes)
}

impl ParticipantBoard {
    /// The rule of "needs help" on the board and of the alert
    /// `PglabParticipantStuck`: connected, and neither progress nor a new
    /// session in the last `STUCK_MINUTES` (a participant who never passed
    /// anything counts from their session's start).
    pub fn stuck_minutes(&self, now: DateTime<Utc>) -> Option<i64> {
        stuck_minutes(
            self.connected > 0,
            self.last_progress,
            self.connected_since,
            now,
        )
    }

    pub fn points(&self) -> u32 {
        self.tasks.iter().flatten().map(|t| t.points).sum()
    }

    pub fn passed(&self) -> usize {
        self.tasks.iter().flatten().filter(|t| t.passed).count()
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TaskInfo {
    pub id: String,
    pub title: String,
    pub points: u32,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LabBoard {
    pub id: String,
    pub title: String,
    pub pseudonymize: bool,
    pub public_board: bool,
    pub tasks: Vec<TaskInfo>,
    pub participants: Vec<ParticipantBoard>,
}

impl LabBoard {
    /// The board of `lab` with these participants.
    pub fn of(lab: &crate::lab::Lab, participants: Vec<ParticipantBoard>) -> Self {
        LabBoard {
            id: lab.id.to_string(),
            title: lab.title.clone(),
            pseudonymize: lab.options.pseudonymize,
            public_board: lab.options.public_board,
            tasks: lab
                .tasks
                .iter()
                .map(|t| TaskInfo {
                    id: t.id.clone(),
                    title: t.title.clone(),
                    points: t.points,
                })
                .collect(),
            participants,
        }
    }

    pub fn max_points(&self) -> u32 {
        self.tasks.iter().map(|t| t.points).sum()
    }
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Snapshot {
    pub labs: Vec<LabBoard>,
    /// Server name and whether it answered in the latest round.
    pub servers: Vec<(String, bool)>,
    /// When the round was published.
    pub at: Option<DateTime<Utc>>,
    /// When the round began: every change made before it is on this board.
    pub began: Option<DateTime<Utc>>,
    /// Why the LDAP directory did not answer in the latest round (`None`:
    /// it did, or no round yet).
    pub ldap_error: Option<String>,
}

/// Shared between the scoring loop (writer) and readers: the latest
/// snapshot and its score families for `/metrics`, written once when it is
/// published.
#[derive(Clone, Default)]
pub struct Board(Arc<RwLock<Published>>);

#[derive(Default)]
struct Published {
    snapshot: Arc<Snapshot>,
    scores: Arc<super::exposition::Exposition>,
}

impl Board {
    pub fn get(&self) -> Arc<Snapshot> {
        self.0
            .read()
            .map(|p| Arc::clone(&p.snapshot))
            .unwrap_or_default()
    }

    /// The latest snapshot's score families (Prometheus text).
    pub fn scores(&self) -> Arc<super::exposition::Exposition> {
        self.0
            .read()
            .map(|p| Arc::clone(&p.scores))
            .unwrap_or_default()
    }

    pub fn publish(&self, snapshot: Snapshot) {
        // A round that found nothing new (most rounds of a quiet class)
        // keeps the `/metrics` text it would write again, and its gzip copy.
        let (before, kept) = match self.0.read() {
            Ok(p) => (Arc::clone(&p.snapshot), Arc::clone(&p.scores)),
            Err(_) => Default::default(),
        };
        let same = before.at.is_some()
            && before.labs == snapshot.labs
            && before.servers == snapshot.servers
            && before.ldap_error == snapshot.ldap_error;
        let scores = if same {
            kept
        } else {
            Arc::new(super::exposition::Exposition::of(&snapshot))
        };
        if let Ok(mut p) = self.0.write() {
            *p = Published {
                snapshot: Arc::new(snapshot),
                scores,
            };
        }
    }
}

/// A stable pseudonym of a participant in a lab; the key is a secret of the
/// installation, so names cannot be guessed back from pseudonyms.
pub fn pseudonym(key: &str, lab: &str, username: &str) -> String {
    let mut h = Sha256::new();
    h.update(key.as_bytes());
    h.update(b"\0");
    h.update(lab.as_bytes());
    h.update(b"\0");
    h.update(username.as_bytes());
    format!("p-{}", &hex::encode(h.finalize())[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_help_follows_the_alert_rule_on_the_scripted_students() {
        let start = DateTime::<Utc>::from_timestamp(0, 0).expect("epoch");
        let at = |m: u32| start + chrono::Duration::minutes(i64::from(m));
        for (name, connected, progress, needs_help) in STUCK_SCRIPT {
            let p = ParticipantBoard {
                username: name.into(),
                pseudonym: name.into(),
                database: name.into(),
                server: "main".into(),
                tasks: None,
                error: None,
                connected: i64::from(connected.is_some()),
                errors_total: 0,
                last_activity: None,
                last_progress: progress.map(at),
                connected_since: connected.map(at),
                server_down: false,
            };
            assert_eq!(
                p.stuck_minutes(at(STUCK_SCRIPT_AT)).is_some(),
                needs_help,
                "{name}"
            );
        }
    }
}
