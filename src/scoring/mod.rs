//! Scoring: every participant database against the lab's reference, live.

pub mod activity;
pub mod board;
pub mod checks;
mod engine;
pub mod evaluate;
pub mod exposition;
pub mod health;
pub mod hidden;
pub mod inspect;
pub mod rows;

pub use board::{Board, LabBoard, ParticipantBoard, Snapshot, TaskBoard, TaskInfo};
pub use engine::Engine;
pub use health::Health;
