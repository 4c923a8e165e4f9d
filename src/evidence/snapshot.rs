//! A snapshot: a custom-format `pg_dump` of a participant's database made
//! while it stays open (as its owner, waiting at most briefly for a lock),
//! written privately under the data directory with its size and SHA-256.

use super::EvidenceError;
use crate::provision::tools;
use crate::settings::PgServerSettings;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A snapshot on disk.
#[derive(Debug, Clone)]
pub struct Taken {
    pub path: PathBuf,
    pub size: i64,
    pub sha256: String,
    pub signature: String,
    pub taken_at: DateTime<Utc>,
    pub took: Duration,
}

/// Where a database's snapshots are kept: `<data_dir>/snapshots/<lab>/<db>/`.
pub fn folder(data_dir: &Path, lab: &str, db: &str) -> PathBuf {
    data_dir.join("snapshots").join(lab).join(db)
}

/// What the database's content looks like to the statistics: its oid and
/// how many rows were ever written in it (catalogs included, so DDL counts),
/// pglab's own schema and the planner's statistics left out. Read before a
/// dump, a write it misses makes the next snapshot be taken, never skipped.
pub async fn signature(server: &PgServerSettings, db: &str) -> Result<String, EvidenceError> {
    // Nothing of the student's is found by name in this session.
    let client =
        crate::pgconn::connect_with_options(server, db, crate::provision::in_database::SESSION)
            .await?;
    let row = client
        .query_one(
            "SELECT (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())::int8,
                    coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::int8
             FROM pg_catalog.pg_stat_all_tables
             WHERE schemaname <> 'pglab' AND relname <> 'pg_statistic'",
            &[],
        )
        .await?;
    Ok(format!("{}:{}", row.get::<_, i64>(0), row.get::<_, i64>(1)))
}

/// Dumps `db` as `owner` into `<folder>/<name>.dump` (through a partial
/// file, so a file under its final name is always whole), seeing the state
/// `exported` by another transaction if given.
pub async fn take(
    server: &PgServerSettings,
    (db, owner): (&str, &crate::ident::PgName),
    folder: &Path,
    name: &str,
    exported: Option<&str>,
) -> Result<Taken, EvidenceError> {
    let io = |what: String| move |source| EvidenceError::Io { what, source };
    std::fs::create_dir_all(folder).map_err(io(format!("creating {}", folder.display())))?;
    let signature = signature(server, db).await?;
    let taken_at = Utc::now();
    let started = Instant::now();
    let partial = folder.join(format!("{name}.partial"));
    let path = folder.join(format!("{name}.dump"));
    if let Err(e) = tools::pg_dump_snapshot(server, db, owner, &partial, exported).await {
        let _ = std::fs::remove_file(&partial);
        return Err(e.into());
    }
    let (size, sha256) = checksum_in_background(&partial)
        .await
        .map_err(io(format!("reading {}", partial.display())))?;
    std::fs::rename(&partial, &path).map_err(io(format!("writing {}", path.display())))?;
    Ok(Taken {
        path,
        size,
        sha256,
        signature,
        taken_at,
        took: started.elapsed(),
    })
}

/// [`checksum`] off the async workers.
pub async fn checksum_in_background(path: &Path) -> std::io::Result<(i64, String)> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || checksum(&path))
        .await
        .map_err(std::io::Error::other)?
}

/// Size and SHA-256 (hex) of a file.
pub fn checksum(path: &Path) -> std::io::Result<(i64, String)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0i64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as i64;
        hasher.update(&buf[..n]);
    }
    Ok((size, hex::encode(hasher.finalize())))
}
