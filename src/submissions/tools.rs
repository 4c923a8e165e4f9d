//! `pg_restore` for submissions: listing an archive, and restoring it as
//! the restore role (never as pglab's admin). Plain SQL never goes to a
//! tool: see `plain_restore`.

use crate::provision::tools::tool;
pub use crate::provision::tools::{restore_archive, RestoreLogin, ToolRun};
use crate::settings::PgServerSettings;
use std::path::Path;
use std::process::Stdio;

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
