//! The published state of every lab after the latest round: what `/metrics`,
//! `pglab score` and (later) the web board read. Replaced as a whole at the
//! end of a round, so a reader never waits on a round nor sees half of one.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use std::sync::{Arc, RwLock};

#[derive(Debug, Clone, serde::Serialize)]
pub struct TaskBoard {
    pub passed: bool,
    pub points: u32,
    pub reason: Option<String>,
    pub first_passed: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, serde::Serialize)]
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
}

impl ParticipantBoard {
    pub fn points(&self) -> u32 {
        self.tasks.iter().flatten().map(|t| t.points).sum()
    }

    pub fn passed(&self) -> usize {
        self.tasks.iter().flatten().filter(|t| t.passed).count()
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct TaskInfo {
    pub id: String,
    pub title: String,
    pub points: u32,
}

#[derive(Debug, Clone, serde::Serialize)]
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
    pub at: Option<DateTime<Utc>>,
}

/// Shared between the scoring loop (writer) and readers.
#[derive(Clone, Default)]
pub struct Board(Arc<RwLock<Arc<Snapshot>>>);

impl Board {
    pub fn get(&self) -> Arc<Snapshot> {
        self.0.read().map(|s| Arc::clone(&s)).unwrap_or_default()
    }

    pub fn publish(&self, snapshot: Snapshot) {
        if let Ok(mut s) = self.0.write() {
            *s = Arc::new(snapshot);
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
