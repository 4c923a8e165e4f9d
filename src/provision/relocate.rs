//! Moving a participant's database to another Postgres server: closed on
//! the source, dumped there acting as its owner, restored on the target
//! acting as its owner (by a login role made for it, never the admin), and
//! renamed into place. While it moves, both the source and the copy belong
//! to `pglab_closed` with no grant for the student: a database's owner may
//! grant on it from any session, so the student must own neither. The
//! caller switches the placement in the control database, then gives the
//! copy back to the student (`open_to_owner`, or the deadline's policy) and
//! drops the source. Each step can be run again after a crash.

use super::in_database;
use super::postgres::{self as pg, PgError, CLOSED_ROLE};
use super::tools::{self, RestoreLogin, ToolRun};
use super::ProvisionError;
use crate::ident::PgName;
use crate::settings::PgServerSettings;
use std::path::{Path, PathBuf};
use tokio_postgres::Client;

/// The database being moved.
pub struct Moving<'a> {
    pub db: &'a PgName,
    pub owner: &'a PgName,
    pub search_path: Vec<String>,
    /// Names this move's scratch database and login role.
    pub job: i64,
}

impl Moving<'_> {
    fn scratch(&self) -> PgName {
        PgName::from_catalog(format!("pglab.move.{}", self.job))
    }

    fn login(&self) -> PgName {
        PgName::from_catalog(format!("pglab_move_{}", self.job))
    }
}

/// Copies `m.db` from `from` to `to` (where the owner's roles and the
/// lab's template exist already): on return the database exists on `to`
/// with the content it had when it was closed on `from`, both closed to
/// everybody but pglab until the caller opens one of them. Returns the
/// dump, kept in `folder`.
pub async fn copy(
    from: &PgServerSettings,
    to: &PgServerSettings,
    m: &Moving<'_>,
    folder: &Path,
) -> Result<PathBuf, ProvisionError> {
    let target = crate::pgconn::connect(to, "postgres").await?;
    drop_copy(to, m).await?;
    let file = dump(from, m, folder).await?;
    let made = async {
        restore(to, &target, m, &file).await?;
        let scratch = m.scratch();
        let rename = format!(
            "ALTER DATABASE {} RENAME TO {}",
            scratch.quoted(),
            m.db.quoted()
        );
        pg::allow_connections(&target, scratch.as_str(), false)
            .await
            .map_err(pg::sql_err(&to.name, "close the copy"))?;
        pg::end_sessions(&target, scratch.as_str())
            .await
            .map_err(pg::sql_err(&to.name, "end the sessions in the copy"))?;
        target.batch_execute(&rename).await.map_err(pg::sql_err(
            &to.name,
            format!("rename the copy to {}", m.db),
        ))?;
        pg::allow_connections(&target, m.db.as_str(), true)
            .await
            .map_err(pg::sql_err(&to.name, format!("open {} to pglab", m.db)))?;
        Ok::<_, ProvisionError>(())
    };
    if let Err(e) = made.await {
        let _ = clean_up(to, &target, m).await;
        return Err(e);
    }
    Ok(file)
}

async fn exists(server: &PgServerSettings, admin: &Client, db: &str) -> Result<bool, PgError> {
    Ok(admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&db])
        .await
        .map_err(pg::sql_err(&server.name, "list databases"))?
        .is_some())
}

/// What an earlier attempt of this move left on `to`, where the database
/// is not placed: its scratch database, its login role, and a copy renamed
/// into place (owned by `pglab_closed` or the owner); a database of that
/// name that is anybody else's is refused.
pub async fn drop_copy(to: &PgServerSettings, m: &Moving<'_>) -> Result<(), ProvisionError> {
    let admin = crate::pgconn::connect(to, "postgres").await?;
    clean_up(to, &admin, m).await?;
    let owner: Option<String> = admin
        .query_opt(
            "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1",
            &[&m.db.as_str()],
        )
        .await
        .map_err(pg::sql_err(&to.name, format!("find the owner of {}", m.db)))?
        .map(|r| r.get(0));
    match owner {
        None => Ok(()),
        Some(o) if o == m.owner.as_str() || o == CLOSED_ROLE => {
            Ok(pg::drop_database(to, &admin, m.db.as_str()).await?)
        }
        Some(o) => Err(ProvisionError::Input(format!(
            "server {} already has a database {} owned by {o}, not by {}: refusing to replace it",
            to.name, m.db, m.owner
        ))),
    }
}

/// This move's scratch database and login role, gone.
async fn clean_up(
    server: &PgServerSettings,
    admin: &Client,
    m: &Moving<'_>,
) -> Result<(), PgError> {
    pg::drop_database(server, admin, m.scratch().as_str()).await?;
    pg::drop_role(server, admin, m.login().as_str()).await
}

/// Closes the source to everybody (sessions ended, handed to
/// `pglab_closed`) but its checking role, and dumps it as that role acting
/// as the owner, without pglab's schema.
async fn dump(
    from: &PgServerSettings,
    m: &Moving<'_>,
    folder: &Path,
) -> Result<PathBuf, ProvisionError> {
    std::fs::create_dir_all(folder)
        .map_err(|e| ProvisionError::Input(format!("cannot create {}: {e}", folder.display())))?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let file = folder.join(format!("{}-{stamp}.dump", m.db));
    let source = crate::pgconn::connect(from, "postgres").await?;
    pg::close_for_admin(from, &source, m.db.as_str()).await?;
    source
        .batch_execute(&format!(
            "ALTER DATABASE {d} OWNER TO {CLOSED_ROLE}; REVOKE ALL ON DATABASE {d} FROM PUBLIC, {o}; GRANT CONNECT ON DATABASE {d} TO {};",
            PgName::checker(m.owner).quoted(),
            d = m.db.quoted(),
            o = m.owner.quoted(),
        ))
        .await
        .map_err(pg::sql_err(&from.name, format!("close {} for the move", m.db)))?;
    tools::pg_dump_snapshot(from, m.db.as_str(), m.owner, &file, None).await?;
    Ok(file)
}

/// The dump into a new scratch database of `pglab_closed` on the target
/// (pglab's schema made first: views of the student's may use it),
/// restored acting as the owner (who may create in it meanwhile, and not
/// connect), then given a lab database's grants but the owner's and its
/// `search_path`.
async fn restore(
    to: &PgServerSettings,
    admin: &Client,
    m: &Moving<'_>,
    file: &Path,
) -> Result<(), ProvisionError> {
    let scratch = m.scratch();
    let (s, o) = (scratch.quoted(), m.owner.quoted());
    pg::create_closed_database(
        to,
        admin,
        &format!("CREATE DATABASE {s} OWNER {CLOSED_ROLE} TEMPLATE template0"),
        &scratch,
        &format!("REVOKE ALL ON DATABASE {s} FROM PUBLIC; GRANT CREATE ON DATABASE {s} TO {o};"),
    )
    .await?;
    let inside =
        crate::pgconn::connect_with_options(to, scratch.as_str(), in_database::SESSION).await?;
    in_database::replace_handed_in(&inside, &to.admin_user)
        .await
        .map_err(pg::sql_err(&to.name, "make pglab's schema in the copy"))?;
    inside
        .batch_execute(&format!("GRANT CREATE ON SCHEMA public TO {o}"))
        .await
        .map_err(pg::sql_err(&to.name, "let the owner restore into the copy"))?;
    drop(inside);
    let run = restore_as_owner(to, admin, file, (&scratch, m.owner), &m.login()).await?;
    if !run.ok {
        let lines: Vec<&str> = run.stderr.lines().take(10).collect();
        return Err(ProvisionError::Input(format!(
            "pg_restore on server {} failed:\n{}",
            to.name,
            lines.join("\n")
        )));
    }
    // restore_as_owner ended every session in the copy, this one too.
    let inside =
        crate::pgconn::connect_with_options(to, scratch.as_str(), in_database::SESSION).await?;
    inside
        .batch_execute(&format!("REVOKE CREATE ON SCHEMA public FROM {o}"))
        .await
        .map_err(pg::sql_err(&to.name, "close the copy's schema public"))?;
    admin
        .batch_execute(&format!(
            "REVOKE ALL ON DATABASE {s} FROM PUBLIC, {o}; GRANT CONNECT ON DATABASE {s} TO {}; {}",
            PgName::checker(m.owner).quoted(),
            pg::search_path_sql(&scratch, &m.search_path)
        ))
        .await
        .map_err(pg::sql_err(&to.name, "grant the copy as a lab database"))?;
    Ok(())
}

/// `pg_restore --role=<owner>` into `db` (made by the caller, closed),
/// logged in as `login`, a role made for it: a member of the owner only,
/// never the admin, so that student code the restore runs (index
/// expressions, constraints) cannot `SET ROLE` back to a superuser. Then
/// its sessions end, what it came to own goes to the owner, and it is
/// dropped. The tool's run, whether it succeeded or not.
pub async fn restore_as_owner(
    server: &PgServerSettings,
    admin: &Client,
    file: &Path,
    (db, owner): (&PgName, &PgName),
    login: &PgName,
) -> Result<ToolRun, PgError> {
    let password = crate::random::token();
    let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
    let until = chrono::Utc::now() + chrono::Duration::days(1);
    admin
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS {l}; {} GRANT CONNECT ON DATABASE {} TO {l};",
            pg::create_job_login_sql(login, owner, &verifier, until),
            db.quoted(),
            l = login.quoted(),
        ))
        .await
        .map_err(pg::sql_err(
            &server.name,
            format!("make the restore role of {db}"),
        ))?;
    let as_login = RestoreLogin {
        user: login.as_str(),
        password: &password,
        owner: owner.as_str(),
    };
    let run = tools::restore_archive(server, db.as_str(), file, &as_login).await;
    pg::end_sessions(admin, db.as_str())
        .await
        .map_err(pg::sql_err(
            &server.name,
            format!("end the sessions in {db}"),
        ))?;
    let inside =
        crate::pgconn::connect_with_options(server, db.as_str(), in_database::SESSION).await?;
    inside
        .batch_execute(&format!(
            "REASSIGN OWNED BY {l} TO {o}; DROP OWNED BY {l};",
            l = login.quoted(),
            o = owner.quoted()
        ))
        .await
        .map_err(pg::sql_err(
            &server.name,
            format!("take back what the restore of {db} made"),
        ))?;
    drop(inside);
    pg::drop_role(server, admin, login.as_str()).await?;
    run.map_err(PgError::Refused)
}

/// `db` given (back) to its owner as a cloned database is: owned by them,
/// CONNECT for them and their checking role only. For a database without
/// a closing deadline policy (the caller applies that one instead).
pub async fn open_to_owner(
    server: &PgServerSettings,
    db: &PgName,
    owner: &PgName,
) -> Result<(), PgError> {
    let admin = crate::pgconn::connect(server, "postgres").await?;
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {d} OWNER TO {o}; GRANT ALL ON DATABASE {d} TO {o}; {}",
            pg::close_database_sql(db, owner),
            d = db.quoted(),
            o = owner.quoted(),
        ))
        .await
        .map_err(pg::sql_err(&server.name, format!("open {db} to {owner}")))
}

/// After the switch: the source database dropped (its dump is kept), with
/// its snapshots' read-only copies and the databases earlier hand-ins
/// replaced (`previous`, dumped to `replaced` first). What was done.
pub async fn drop_source(
    from: &PgServerSettings,
    db: &PgName,
    previous: &[String],
    replaced: &Path,
) -> Result<Vec<String>, ProvisionError> {
    let admin = crate::pgconn::connect(from, "postgres").await?;
    let mut done = vec![];
    if exists(from, &admin, db.as_str()).await? {
        pg::drop_database(from, &admin, db.as_str()).await?;
        done.push(format!("{db} dropped on server {}", from.name));
    }
    let copies = pg::snapshot_copies(&admin, db.as_str())
        .await
        .map_err(pg::sql_err(&from.name, format!("list the copies of {db}")))?;
    for copy in copies {
        pg::drop_snapshot_copy(from, &admin, &copy).await?;
        done.push(format!("read-only snapshot copy {copy} dropped (restore the snapshot again to get it on the new server)"));
    }
    for name in previous {
        if exists(from, &admin, name).await? {
            let file =
                super::prune::dump_then_drop(from, &admin, name, db.as_str(), replaced).await?;
            done.push(format!(
                "{name} (kept by an earlier hand-in) dumped to {} and dropped",
                file.display()
            ));
        }
    }
    Ok(done)
}
