//! The real Postgres client tools (pg_restore, pg_dump) run as
//! pglab's admin against one server.

use crate::settings::PgServerSettings;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("{tool} not found: install the Debian package postgresql-client")]
    Missing { tool: String },
    #[error("{what} failed:\n{output}")]
    Failed { what: String, output: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

pub(crate) fn tool(server: &PgServerSettings, name: &str) -> Result<PathBuf, ToolError> {
    let dirs: Vec<PathBuf> = server.bin_dir.iter().cloned().collect();
    crate::binaries::find(name, &dirs).ok_or_else(|| ToolError::Missing { tool: name.into() })
}

/// A command for `name` with connection settings in the environment (the
/// password never appears on a command line).
fn command(
    server: &PgServerSettings,
    name: &str,
    db: &str,
    role: Option<&str>,
) -> Result<Command, ToolError> {
    command_as(
        server,
        name,
        db,
        &server.admin_user,
        server.admin_password.expose(),
        role,
    )
}

/// The same, logged in as `user` (a restore runs as a role of its own).
pub(crate) fn command_as(
    server: &PgServerSettings,
    name: &str,
    db: &str,
    user: &str,
    password: &str,
    role: Option<&str>,
) -> Result<Command, ToolError> {
    let mut cmd = Command::new(tool(server, name)?);
    // Only what a client tool needs: never pglab's own secrets from its
    // environment (`PGLAB_*`).
    cmd.env_clear();
    for (key, value) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if matches!(k.as_ref(), "PATH" | "HOME" | "LANG" | "LC_ALL" | "TZ")
            || k.starts_with("PGSSL")
        {
            cmd.env(&key, value);
        }
    }
    cmd.env("PGHOST", &server.host)
        .env("PGPORT", server.port.to_string())
        .env("PGUSER", user)
        .env("PGPASSWORD", password)
        .env("PGDATABASE", db)
        .env("PGAPPNAME", "pglab")
        .env("PGCONNECT_TIMEOUT", "5")
        .env_remove("PGSERVICE")
        .env_remove("PGOPTIONS")
        .stdin(Stdio::null());
    if let Some(role) = role {
        // Everything the file creates is owned by `role`, not by the admin.
        cmd.env("PGOPTIONS", format!("-c role={role}"));
    } else if user == server.admin_user {
        // As `pgconn::config`: a database's `SET role` default is ignored.
        cmd.env("PGOPTIONS", "-c role=none");
    }
    Ok(cmd)
}

async fn run(what: String, mut cmd: Command) -> Result<(), ToolError> {
    let out = cmd.output().await.map_err(|source| ToolError::Io {
        what: what.clone(),
        source,
    })?;
    if out.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let shown = lines[..lines.len().min(20)].join("\n");
    Err(ToolError::Failed {
        what,
        output: shown,
    })
}

/// Restores an archive (custom, tar or directory) without owners or grants.
pub async fn pg_restore(
    server: &PgServerSettings,
    db: &str,
    file: &Path,
    role: Option<&str>,
) -> Result<(), ToolError> {
    let mut cmd = command(server, "pg_restore", db, None)?;
    cmd.args(["--no-owner", "--no-privileges", "--exit-on-error", "-d", db]);
    if let Some(role) = role {
        cmd.arg(format!("--role={role}"));
    }
    cmd.arg(file);
    // Ended with the build that waits for it, and after an hour at most.
    bounded(format!("restoring {}", file.display()), cmd).await
}

/// Longest a dump may wait for a lock, and may run at all.
const DUMP_LOCK_WAIT: &str = "60s";
const DUMP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);

/// Writes a custom-format dump of `db` to `file`. It gives up when a lock
/// is held for a minute and is killed after an hour: a stuck dump must not
/// hold a worker (or an apply) forever. Call it on a database closed to
/// students (`prune::dump_then_drop`).
pub async fn pg_dump(server: &PgServerSettings, db: &str, file: &Path) -> Result<(), ToolError> {
    let mut cmd = command(server, "pg_dump", db, None)?;
    cmd.arg(format!("--lock-wait-timeout={DUMP_LOCK_WAIT}"))
        .args(["-Fc", "-f"])
        .arg(file);
    bounded(format!("dumping {db}"), cmd).await
}

/// How long a snapshot waits for a lock a student holds before it gives
/// up (and is tried again later): while pg_dump waits in a lock's queue,
/// the student's next statements on that table would wait behind it.
const SNAPSHOT_LOCK_WAIT: &str = "2s";

/// A snapshot of a participant's open database: a custom-format dump made
/// logged in as the owner's checking role, acting as the owner (whatever
/// the dump makes Postgres run of the student's runs with the student's
/// rights, and `SET ROLE NONE` leads back to a role that can become that
/// student only), without pglab's own schema, seeing the state `exported`
/// by another transaction if given.
pub async fn pg_dump_snapshot(
    server: &PgServerSettings,
    db: &str,
    owner: &crate::ident::PgName,
    file: &Path,
    exported: Option<&str>,
) -> Result<(), ToolError> {
    let checker = crate::ident::PgName::checker(owner);
    let password = super::checkers::checker_password(server, owner);
    let mut cmd = command_as(server, "pg_dump", db, &checker, &password, Some(owner))?;
    cmd.arg(format!("--lock-wait-timeout={SNAPSHOT_LOCK_WAIT}"))
        .args(["--exclude-schema=pglab", "-Fc", "-f"])
        .arg(file);
    if let Some(id) = exported {
        cmd.arg(format!("--snapshot={id}"));
    }
    bounded(format!("taking a snapshot of {db}"), cmd).await
}

/// Whether a pg_dump failed waiting for a lock (`--lock-wait-timeout`
/// cancels its `LOCK TABLE`).
pub fn is_lock_wait(e: &ToolError) -> bool {
    matches!(e, ToolError::Failed { output, .. }
        if output.contains("LOCK TABLE") || output.contains("could not obtain lock"))
}

async fn bounded(what: String, mut cmd: Command) -> Result<(), ToolError> {
    cmd.kill_on_drop(true);
    tokio::time::timeout(DUMP_TIMEOUT, run(what.clone(), cmd))
        .await
        .unwrap_or_else(|_| {
            Err(ToolError::Failed {
                what,
                output: "did not finish within an hour".into(),
            })
        })
}

/// Longest a restore tool may run; the lab's `submissions.timeout` (at
/// most 2 h, applied around the whole restore) normally ends it first.
pub const RESTORE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3 * 3600);

/// Who the restore connects as, and the role whose objects it creates.
pub struct RestoreLogin<'a> {
    pub user: &'a str,
    pub password: &'a str,
    pub owner: &'a str,
}

/// What the tool printed on stderr, and whether it exited cleanly.
pub struct ToolRun {
    pub ok: bool,
    pub stderr: String,
}

async fn run_reporting(mut cmd: Command, what: &str) -> Result<ToolRun, String> {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().map_err(|e| format!("{what}: {e}"))?;
    match tokio::time::timeout(RESTORE_TIMEOUT, child.wait_with_output()).await {
        Ok(Ok(out)) => Ok(ToolRun {
            ok: out.status.success(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!(
            "{what} did not finish within {} minutes",
            RESTORE_TIMEOUT.as_secs() / 60
        )),
    }
}

/// Restores an archive without owners or grants, every object owned by
/// `owner`; goes on after errors so that all of them are reported.
pub async fn restore_archive(
    server: &PgServerSettings,
    db: &str,
    archive: &Path,
    login: &RestoreLogin<'_>,
) -> Result<ToolRun, String> {
    let mut cmd = command_as(server, "pg_restore", db, login.user, login.password, None)
        .map_err(|e| e.to_string())?;
    cmd.args(["--no-owner", "--no-privileges", "-d", db])
        .arg(format!("--role={}", login.owner))
        .arg(archive);
    run_reporting(cmd, "pg_restore").await
}
