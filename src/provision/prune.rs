//! `apply --prune`: dump, then drop, what is no longer listed.

use super::ldap::Directory;
use super::postgres as pg;
use super::{tools, ProvisionError};
use crate::control::Store;
use crate::ident::Username;
use crate::settings::Settings;
use std::path::PathBuf;
use tokio_postgres::Client;

/// Dumps a database into `<data_dir>/pruned/<lab>/`, drops it, and removes
/// its participants' roles and LDAP entries when no other lab uses them.
pub async fn prune(
    settings: &Settings,
    store: &Store,
    admin: &Client,
    dir: &mut Directory,
    lab: &str,
    (server, db, users): (&str, &str, &[String]),
) -> Result<PathBuf, ProvisionError> {
    let s = settings.server(server).expect("planned");
    let folder = settings.data_dir.join("pruned").join(lab);
    std::fs::create_dir_all(&folder)
        .map_err(|e| ProvisionError::Input(format!("cannot create {}: {e}", folder.display())))?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let path = folder.join(format!("{db}-{stamp}.dump"));
    tools::pg_dump(s, db, &path).await?;
    pg::drop_database(s, admin, db).await?;
    store.delete_database(lab, db).await?;
    for user in users {
        store.delete_participant(lab, user).await?;
        if store.labs_of_user(user).await? == 0 {
            pg::drop_role(s, admin, user).await?;
            if let Ok(u) = Username::parse(user) {
                dir.delete_person(&u).await?;
            }
            store.forget_initial_password(user).await?;
        }
    }
    Ok(path)
}
