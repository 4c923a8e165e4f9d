//! Provisioning: `plan` shows what would change in LDAP and Postgres,
//! `apply` converges; both are idempotent.

mod apply;
pub mod build;
mod change;
mod checkers;
pub mod datasets;
pub mod in_database;
mod lab_sql;
pub mod ldap;
pub mod placement;
mod plan;
mod plan_ldap;
pub mod postgres;
pub mod prune;
pub mod relocate;
pub mod tools;

pub use apply::{apply, initial_password, ApplyReport};
pub use plan::{plan, plan_target, Change, Placement, Plan};

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Store(#[from] crate::control::StoreError),
    #[error(transparent)]
    Connect(#[from] crate::pgconn::ConnectError),
    #[error(transparent)]
    Pg(#[from] postgres::PgError),
    #[error(transparent)]
    Ldap(Box<ldap::LdapError>),
    #[error(transparent)]
    Build(#[from] build::BuildError),
    #[error(transparent)]
    Tool(#[from] tools::ToolError),
    #[error("apply stopped after {done} of {total} changes, at: {change}\n  cause: {source}\nNothing after it was changed; fix the cause and run apply again: it continues from here.")]
    Stopped {
        done: usize,
        total: usize,
        change: String,
        source: Box<ProvisionError>,
    },
}

// Boxed: an LDAP error is large, and errors travel through every call.
impl From<ldap::LdapError> for ProvisionError {
    fn from(e: ldap::LdapError) -> Self {
        ProvisionError::Ldap(Box::new(e))
    }
}
