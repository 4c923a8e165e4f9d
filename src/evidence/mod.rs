//! The evidence pglab keeps of participants' work beyond the live scores:
//! snapshots of their databases (`snapshot`), read-only copies of them
//! (`copy`), and the final state at the deadline with what then happens to
//! the database (`deadline`).

pub mod copy;
pub mod deadline;
pub mod snapshot;

use crate::pgconn::{self, ConnectError};
use crate::provision::postgres::PgError;
use crate::provision::tools::ToolError;

#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("{}", pgconn::db_message(.0))]
    Db(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error(transparent)]
    Pg(#[from] PgError),
    #[error(transparent)]
    Eval(#[from] crate::scoring::evaluate::EvalError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Refused(String),
}

impl EvidenceError {
    /// pg_dump ran and failed (a lock, a table changed under it, a table
    /// its role may not read): worth another try, unlike a server that
    /// cannot be reached.
    pub fn is_dump_failure(&self) -> bool {
        matches!(self, Self::Tool(ToolError::Failed { .. }))
    }

    /// pg_dump gave up waiting for a lock a student holds: try later.
    pub fn is_lock_wait(&self) -> bool {
        matches!(self, Self::Tool(e) if crate::provision::tools::is_lock_wait(e))
    }
}
