//! Dump submissions: participants or groups upload a `pg_dump`; pglab
//! checks it, queues a restore job in the control database, and a worker
//! restores it into the group's database as the group's own role.

pub mod detect;
pub mod issues;
pub use crate::sqlscript as plain;
pub mod plain_restore;
mod replace;
pub mod restore;
pub mod tools;
pub mod worker;

pub use issues::RestoreIssue;
