//! `apply --prune`: dump, then drop, what is no longer listed; and the one
//! dump-then-drop that hand-ins use for the databases they replaced.

use super::ldap::Directory;
use super::postgres as pg;
use super::{tools, ProvisionError};
use crate::control::Store;
use crate::ident::{LabId, PgName, Username};
use crate::settings::{PgServerSettings, Settings};
use std::path::{Path, PathBuf};
use tokio_postgres::Client;

/// Dumps `db` to `<folder>/<name>-<UTC time>.dump`, then drops it. First
/// the database is closed to everybody but pglab's admin (CONNECT revoked
/// from PUBLIC and from its owner, their sessions ended, then connections
/// allowed for the dump): no student session can hold a lock that stalls
/// pg_dump, or change a table while pg_dump, a superuser, reads it.
pub async fn dump_then_drop(
    server: &PgServerSettings,
    admin: &Client,
    db: &str,
    name: &str,
    folder: &Path,
) -> Result<PathBuf, ProvisionError> {
    std::fs::create_dir_all(folder)
        .map_err(|e| ProvisionError::Input(format!("cannot create {}: {e}", folder.display())))?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let path = folder.join(format!("{name}-{stamp}.dump"));
    pg::close_for_admin(server, admin, db).await?;
    tools::pg_dump(server, db, &path).await?;
    pg::drop_database(server, admin, db).await?;
    Ok(path)
}

/// Dumps a database into `<data_dir>/pruned/<lab>/`, drops it, and removes
/// its participants' roles and LDAP entries when no other lab uses them.
pub async fn prune(
    settings: &Settings,
    store: &Store,
    admin: &Client,
    dir: &mut Directory,
    lab: &LabId,
    (server, db, users): (&str, &PgName, &[Username]),
) -> Result<PathBuf, ProvisionError> {
    let s = settings.server(server).expect("planned");
    let folder = settings.data_dir.join("pruned").join(lab.as_str());
    let path = dump_then_drop(s, admin, db.as_str(), db.as_str(), &folder).await?;
    // Its snapshots' read-only copies go too (their grants would keep the
    // participant's role from being dropped); the snapshot files stay.
    let copies = pg::snapshot_copies(admin, db)
        .await
        .map_err(|e| ProvisionError::Input(format!("listing the copies of {db}: {e}")))?;
    for copy in copies {
        pg::drop_snapshot_copy(s, admin, &copy).await?;
    }
    store.delete_database(lab, db).await?;
    for user in users {
        store.delete_participant(lab, user).await?;
        if store.labs_of_user(user).await? == 0 {
            pg::drop_role(s, admin, user.as_str()).await?;
            dir.delete_person(user).await?;
            store.forget_initial_password(user).await?;
        }
    }
    Ok(path)
}
