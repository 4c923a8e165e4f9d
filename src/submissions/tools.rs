//! `pg_restore` for submissions: listing an archive, and restoring it as
//! the restore role (never as pglab's admin). Plain SQL never goes to a
//! tool: see `plain_restore`.

use crate::provision::tools::{command_as, tool};
use crate::settings::PgServerSettings;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// Longest a tool may run; the lab's `submissions.timeout` (at most 2 h,
/// applied around the whole restore) normally ends it first.
pub const RESTORE_TIMEOUT: Duration = Duration::from_secs(3 * 3600);

/// `pg_restore --list` of an archive (custom, tar or unpacked directory).
pub async fn list(server: &PgServerSettings, archive: &Path) -> Result<String, String> {
    let bin = tool(server, "pg_restore").map_err(|e| e.to_string())?;
    let out = tokio::process::Command::new(bin)
        .arg("--list")
        .arg(archive)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("pg_restore: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        Err(err
            .lines()
            .map(|l| {
                l.trim_start_matches("pg_restore: ")
                    .trim_start_matches("error: ")
            })
            .collect::<Vec<_>>()
            .join("; "))
    }
}

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

async fn run(mut cmd: tokio::process::Command, what: &str) -> Result<ToolRun, String> {
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
    run(cmd, "pg_restore").await
}
