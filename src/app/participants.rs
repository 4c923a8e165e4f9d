//! Participants: what one needs to reach their database, and a new
//! initial password when theirs is lost.

use crate::control::Store;
use crate::ident::{LabId, PgName, Username};
use crate::provision::{self, ldap};
use crate::settings::{PgServerSettings, Settings};

/// The `psql` command `user` logs in to `database` with.
pub fn psql_command(server: &PgServerSettings, user: &Username, database: &PgName) -> String {
    let host = server.public_host.as_deref().unwrap_or(&server.host);
    format!("psql -h {host} -p {} -U {user} -d {database}", server.port)
}

/// Gives `user`, a participant of `lab`, a new initial password (shown on
/// the credential slips until handed out); `false` when they take no part
/// in the lab. The password is kept before LDAP gets it, so that a
/// password in force is never one pglab lost.
pub async fn reset_password(
    settings: &Settings,
    store: &Store,
    lab: &LabId,
    user: &Username,
) -> Result<bool, ResetError> {
    let takes_part = store
        .participants(lab)
        .await?
        .iter()
        .any(|p| &p.username == user);
    if !takes_part {
        return Ok(false);
    }
    let password = provision::initial_password();
    store.set_initial_password(user, &password).await?;
    let mut dir = ldap::Directory::connect(&settings.ldap).await?;
    let result = dir.set_password(user, &password).await;
    dir.close().await;
    result?;
    Ok(true)
}

#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    #[error(transparent)]
    Store(#[from] crate::control::StoreError),
    #[error(transparent)]
    Ldap(#[from] ldap::LdapError),
}
