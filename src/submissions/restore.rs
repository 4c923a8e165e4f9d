//! One restore: a fresh scratch database owned by the group's role, the
//! dump restored by a login role made for this job that is a member of the
//! group's role only (never pglab's admin, never a superuser), then an
//! atomic swap: the group's database becomes `pglab.prev.<job>` and the
//! scratch database takes its name. On failure the group's database is
//! untouched and the scratch database is dropped.

use super::issues::{self, RestoreIssue};
use super::replace::{disown_job_role, swap};
use super::tools::{self, RestoreLogin};
use crate::control::{Store, SubmissionRecord};
use crate::ident::{quote_ident, PgName};
use crate::lab::submissions::DumpFormat;
use crate::provision::postgres::{self as pg, PgError};
use crate::settings::{PgServerSettings, Settings};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_postgres::Client;

/// Names of a job's scratch database, login role and kept previous database.
pub struct JobNames {
    pub scratch: String,
    pub role: String,
    pub previous: String,
}

impl JobNames {
    pub fn of(id: i64) -> Self {
        Self {
            scratch: format!("pglab.restore.{id}"),
            role: format!("pglab_restore_{id}"),
            previous: format!("pglab.prev.{id}"),
        }
    }
}

pub enum Outcome {
    Succeeded(String),
    Failed(Vec<RestoreIssue>),
}

fn issue(what: &str, e: impl std::fmt::Display) -> Vec<RestoreIssue> {
    vec![RestoreIssue::message(format!("{what}: {e}"))]
}

fn db_error(e: &tokio_postgres::Error) -> String {
    crate::pgconn::db_message(e)
}

pub async fn database_exists(admin: &Client, name: &str) -> Result<bool, tokio_postgres::Error> {
    Ok(admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await?
        .is_some())
}

/// Removes what a job made, whatever state it is in: scratch database
/// (terminating any session still in it) and login role.
pub async fn clean_up(
    server: &PgServerSettings,
    admin: &Client,
    names: &JobNames,
) -> Result<(), PgError> {
    pg::drop_database(server, admin, &names.scratch).await?;
    // Its only privileges were on the scratch database, dropped above.
    pg::drop_role(server, admin, &names.role).await
}

/// The folder holding `toc.dat` of an unpacked directory dump.
fn directory_root(file: &Path) -> Option<PathBuf> {
    let root = super::detect::unpacked_dir(file);
    if root.join("toc.dat").is_file() {
        return Some(root);
    }
    std::fs::read_dir(&root)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.join("toc.dat").is_file())
}

fn human_duration(d: Duration) -> String {
    match d.as_secs() {
        s if s % 60 == 0 => format!("{} minutes", s / 60),
        s => format!("{s} seconds"),
    }
}

/// A plain dump, run statement by statement by pglab itself as the restore
/// role; the result in the shape of a tool run (no stderr).
async fn restore_plain(
    server: &PgServerSettings,
    job: &SubmissionRecord,
    names: &JobNames,
    login: &RestoreLogin<'_>,
    file: &Path,
) -> Result<(bool, Vec<RestoreIssue>, String), String> {
    let mut client = crate::pgconn::connect_as(
        server,
        &names.scratch,
        login.user,
        login.password,
        "pglab-restore",
    )
    .await
    .map_err(|e| e.to_string())?;
    match super::plain_restore::restore(&mut client, file, &job.database, login.owner).await {
        Ok(run) => {
            tracing::info!(
                statements = run.statements,
                skipped = run.skipped,
                "plain dump restored"
            );
            Ok((true, vec![], String::new()))
        }
        Err(found) => Ok((false, found, String::new())),
    }
}

/// Runs the job to its end; every failure becomes issues, never a panic.
#[tracing::instrument(skip_all, fields(job = job.id, lab = %job.lab, db = %job.database))]
pub async fn run(settings: &Settings, store: &Store, job: &SubmissionRecord) -> Outcome {
    let Some(server) = settings.server(&job.server) else {
        return Outcome::Failed(issue(
            "server",
            format!("{} is not in the config", job.server),
        ));
    };
    let mut admin = match crate::pgconn::connect(server, "postgres").await {
        Ok(c) => c,
        Err(e) => return Outcome::Failed(issue("connecting", e)),
    };
    let names = JobNames::of(job.id);
    if let Err(e) = clean_up(server, &admin, &names).await {
        return Outcome::Failed(issue("cleaning up an earlier attempt", e));
    }
    let outcome = restore(store, server, &mut admin, job, &names).await;
    if let Err(e) = clean_up(server, &admin, &names).await {
        tracing::warn!(error = %e, "cleaning up after the restore");
    }
    let _ = std::fs::remove_dir_all(super::detect::unpacked_dir(Path::new(&job.file)));
    outcome
}

async fn restore(
    store: &Store,
    server: &PgServerSettings,
    admin: &mut Client,
    job: &SubmissionRecord,
    names: &JobNames,
) -> Outcome {
    let started = std::time::Instant::now();
    let password = match set_up(store, server, admin, job, names).await {
        Ok(p) => p,
        Err(found) => return Outcome::Failed(found),
    };
    let set_up_took = started.elapsed();
    // While the dump runs, this session keeps the group's database from
    // being dropped by it (DROP DATABASE refuses while others are connected).
    let guard = crate::pgconn::connect(server, &job.database).await.ok();
    let login = RestoreLogin {
        user: &names.role,
        password: password.expose(),
        owner: &job.owner,
    };
    if let Err(found) = restore_dump(store, server, job, names, &login).await {
        return Outcome::Failed(found);
    }
    let restored = started.elapsed();
    if let Err(found) = finish(store, server, admin, job, names).await {
        return Outcome::Failed(found);
    }
    drop(guard);
    let granted = started.elapsed();
    if let Err(e) = swap(admin, &job.database, &names.scratch, &names.previous).await {
        let _ = store.set_previous(job.id, None).await;
        return Outcome::Failed(issue("replacing the database", e));
    }
    tracing::info!(
        setup_ms = set_up_took.as_millis() as u64,
        restored_ms = (restored - set_up_took).as_millis() as u64,
        granted_ms = (granted - restored).as_millis() as u64,
        swapped_ms = (started.elapsed() - granted).as_millis() as u64,
        "restore phases"
    );
    Outcome::Succeeded(format!(
        "restored; the database before it is kept as {} until the next successful restore",
        names.previous
    ))
}

/// The job's login role (may act as the owner and nothing else; a random
/// password, valid for a day) and its scratch database, made closed.
async fn set_up(
    store: &Store,
    server: &PgServerSettings,
    admin: &Client,
    job: &SubmissionRecord,
    names: &JobNames,
) -> Result<crate::settings::Secret, Vec<RestoreIssue>> {
    let (scratch, role, owner) = (
        quote_ident(&names.scratch),
        quote_ident(&names.role),
        quote_ident(&job.owner),
    );
    store
        .set_scratch(job.id, Some(&names.scratch))
        .await
        .map_err(|e| issue("control database", e))?;
    let password = crate::random::secret();
    let verifier = postgres_protocol::password::scram_sha_256(password.expose().as_bytes());
    let until = chrono::Utc::now() + chrono::Duration::days(1);
    let login = PgName::from_catalog(names.role.clone());
    admin
        .batch_execute(&pg::create_job_login_sql(
            &login, &job.owner, &verifier, until,
        ))
        .await
        .map_err(|e| issue("preparing the scratch database", db_error(&e)))?;
    crate::provision::postgres::create_closed_database(
        server,
        admin,
        &format!("CREATE DATABASE {scratch} OWNER {owner} TEMPLATE template0"),
        &PgName::from_catalog(names.scratch.clone()),
        &format!(
            "REVOKE ALL ON DATABASE {scratch} FROM PUBLIC; GRANT CONNECT, TEMPORARY ON DATABASE {scratch} TO {role};"
        ),
    )
    .await
    .map_err(|e| issue("preparing the scratch database", e))?;
    Ok(password)
}

/// Restores the upload into the scratch database as the job's role, within
/// the lab's time limit. Past it the restore is dropped: pg_restore is
/// killed, a plain restore's session closes, and clean_up ends whatever
/// still runs in the scratch database (DROP DATABASE ... WITH (FORCE)).
async fn restore_dump(
    store: &Store,
    server: &PgServerSettings,
    job: &SubmissionRecord,
    names: &JobNames,
    login: &RestoreLogin<'_>,
) -> Result<(), Vec<RestoreIssue>> {
    let file = PathBuf::from(&job.file);
    let format = job.format;
    let rules = match store.lab(&job.lab).await {
        Ok(Some(spec)) => spec.lab.submissions,
        _ => None,
    };
    let limit = Duration::from_secs(rules.map_or(600, |r| r.timeout_secs));
    let restoring = async {
        match format {
            DumpFormat::Plain => restore_plain(server, job, names, login, &file).await,
            DumpFormat::Directory => match directory_root(&file) {
                Some(dir) => tools::restore_archive(server, &names.scratch, &dir, login)
                    .await
                    .map(|run| (run.ok, issues::from_pg_restore(&run.stderr), run.stderr)),
                None => Err("the unpacked directory dump is gone".into()),
            },
            DumpFormat::Custom | DumpFormat::Tar => {
                tools::restore_archive(server, &names.scratch, &file, login)
                    .await
                    .map(|run| (run.ok, issues::from_pg_restore(&run.stderr), run.stderr))
            }
        }
    };
    let (ok, mut found, stderr) = match tokio::time::timeout(limit, restoring).await {
        Ok(found) => found.map_err(|e| issue("restore", e))?,
        Err(_) => {
            return Err(issue(
                "restore",
                format!(
                    "it did not finish within {} (the lab's submissions.timeout); your database is unchanged",
                    human_duration(limit)
                ),
            ))
        }
    };
    if !ok || !found.is_empty() {
        if found.is_empty() {
            found.push(RestoreIssue::message(stderr.trim().to_string()));
        }
        return Err(found);
    }
    Ok(())
}

/// After a good restore: the scratch database gets the grants of a lab
/// database, the job's role loses everything (clean_up drops it), and the
/// control database learns the name the current database will get.
async fn finish(
    store: &Store,
    server: &PgServerSettings,
    admin: &Client,
    job: &SubmissionRecord,
    names: &JobNames,
) -> Result<(), Vec<RestoreIssue>> {
    let scratch = PgName::from_catalog(names.scratch.clone());
    // The lab's search path, as every participant database has it.
    let schemas = match store.lab(&job.lab).await {
        Ok(Some(l)) => l.lab.schemas(),
        _ => vec![],
    };
    admin
        .batch_execute(&format!(
            "{} REVOKE ALL ON DATABASE {} FROM {}; {}",
            pg::close_database_sql(&scratch, &job.owner),
            scratch.quoted(),
            quote_ident(&names.role),
            pg::search_path_sql(&scratch, &pg::search_path(&schemas))
        ))
        .await
        .map_err(|e| issue("granting", db_error(&e)))?;
    disown_job_role(server, admin, names, &job.owner)
        .await
        .map_err(|e| issue("taking back what the dump gave the job's role", e))?;
    store
        .set_previous(job.id, Some(&names.previous))
        .await
        .map_err(|e| issue("control database", e))
}
