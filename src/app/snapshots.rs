//! The evidence jobs (a snapshot, a final state, restoring a snapshot) as
//! the queue's workers run them, and what staff ask for: a snapshot now, a
//! snapshot restored, a participant's deadline moved.

use super::Queue;
use crate::control::{
    Claim, DatabaseRecord, JobKind, JobRecord, NewJob, NewSnapshot, SnapshotKind, SnapshotRecord,
    Store, StoreError,
};
use crate::evidence::{copy, deadline, snapshot};
use crate::ident::{LabId, PgName, Username};
use crate::lab::Lab;
use crate::scoring::checks::Limits;
use crate::scoring::evaluate;
use crate::settings::{PgServerSettings, Settings};
use anyhow::{anyhow, Context};
use chrono::{DateTime, Utc};
use std::path::PathBuf;

/// Runs a claimed evidence job and records its end.
pub async fn run_job(settings: &Settings, store: &Store, job: &JobRecord, claim: Claim<'_>) {
    let result = match job.kind {
        JobKind::Snapshot => take_snapshot(settings, store, job).await,
        JobKind::Final => super::deadlines::take_final(settings, store, job).await,
        JobKind::SnapshotRestore => restore_snapshot(settings, store, job).await,
        other => Err(anyhow!("not an evidence job: {other}")),
    };
    let (summary, error) = match result {
        Ok(summary) => (summary, None),
        Err(e) => {
            tracing::warn!(job = job.id, error = %format!("{e:#}"), "evidence job failed");
            (vec![], Some(format!("{e:#}")))
        }
    };
    match store.finish_job(claim, &summary, error.as_deref()).await {
        Ok(true) => {}
        Ok(false) => tracing::warn!("the job was taken over meanwhile"),
        Err(e) => tracing::error!(error = %e, "could not record the end of a job"),
    }
}

pub(super) fn param<T: serde::de::DeserializeOwned>(
    job: &JobRecord,
    name: &str,
) -> anyhow::Result<T> {
    serde_json::from_value(job.params.get(name).cloned().unwrap_or_default())
        .with_context(|| format!("the job's parameter {name:?} is missing or wrong"))
}

/// A database of the lab and its server.
pub(super) async fn place<'s>(
    settings: &'s Settings,
    store: &Store,
    lab: &LabId,
    db: &str,
) -> anyhow::Result<(DatabaseRecord, &'s PgServerSettings)> {
    let rec = store
        .databases(lab)
        .await?
        .into_iter()
        .find(|d| d.name.as_str() == db)
        .ok_or_else(|| anyhow!("{db} is no longer a database of lab {lab}"))?;
    let server = settings
        .server(&rec.server)
        .ok_or_else(|| anyhow!("server {} is not in the config", rec.server))?;
    Ok((rec, server))
}

pub(super) async fn lab(store: &Store, id: &LabId) -> anyhow::Result<Lab> {
    Ok(store
        .lab(id)
        .await?
        .ok_or_else(|| anyhow!("lab {id} is gone"))?
        .lab)
}

/// Where a recorded snapshot's file is.
pub fn snapshot_file(settings: &Settings, snap: &SnapshotRecord) -> PathBuf {
    settings.data_dir.join(&snap.file)
}

pub(super) async fn record(
    settings: &Settings,
    store: &Store,
    (lab, db): (&LabId, &str),
    kind: SnapshotKind,
    taken: &snapshot::Taken,
) -> anyhow::Result<SnapshotRecord> {
    let file = taken
        .path
        .strip_prefix(&settings.data_dir)
        .unwrap_or(&taken.path)
        .display()
        .to_string();
    Ok(store
        .record_snapshot(&NewSnapshot {
            lab,
            database: db,
            kind,
            taken_at: taken.taken_at,
            file: &file,
            size: taken.size,
            sha256: &taken.sha256,
            signature: &taken.signature,
            took_ms: taken.took.as_millis().min(i32::MAX as u128) as i32,
        })
        .await?)
}

pub(super) fn describe(snap: &SnapshotRecord) -> String {
    format!(
        "snapshot #{} of {}: {}, taken in {} ms, SHA-256 {}",
        snap.n,
        snap.database,
        super::human_size(snap.size as u64),
        snap.took_ms,
        snap.sha256
    )
}

async fn take_snapshot(
    settings: &Settings,
    store: &Store,
    job: &JobRecord,
) -> anyhow::Result<Vec<String>> {
    let db: String = param(job, "database")?;
    let kind: String = param(job, "kind")?;
    let kind = SnapshotKind::parse(&kind).ok_or_else(|| anyhow!("unknown snapshot kind {kind}"))?;
    let (rec, server) = place(settings, store, &job.lab, &db).await?;
    if kind == SnapshotKind::Periodic {
        let now = snapshot::signature(server, &db).await?;
        let latest = store.snapshots(&job.lab, &db).await?.into_iter().next();
        if let Some(last) = latest.filter(|l| l.signature == now) {
            return Ok(vec![format!(
                "unchanged since snapshot #{} ({}): none taken",
                last.n,
                last.taken_at.format("%Y-%m-%d %H:%M:%S UTC")
            )]);
        }
    }
    let folder = snapshot::folder(&settings.data_dir, job.lab.as_str(), &db);
    let taken = take_waiting_for_locks(server, (&db, &rec.owner), &folder, job, kind).await?;
    let snap = record(settings, store, (&job.lab, &db), kind, &taken).await?;
    let mut summary = vec![describe(&snap)];
    if let Some(rule) = lab(store, &job.lab).await?.snapshots {
        for file in store
            .prune_snapshots(&job.lab, &db, rule.keep.into())
            .await?
        {
            let _ = std::fs::remove_file(settings.data_dir.join(&file));
            summary.push(format!("older snapshot removed (keep: {})", rule.keep));
        }
    }
    Ok(summary)
}

/// Tries before a snapshot gives up until its next interval.
const DUMP_TRIES: u32 = 3;

/// A snapshot; when pg_dump fails (a student's lock held it up for 2 s,
/// rather than make their statements queue behind it, or their DDL changed
/// a table between pg_dump's reading of the catalog and of the table), it
/// is tried again a little later, a few times.
async fn take_waiting_for_locks(
    server: &PgServerSettings,
    (db, owner): (&str, &PgName),
    folder: &std::path::Path,
    job: &JobRecord,
    kind: SnapshotKind,
) -> anyhow::Result<snapshot::Taken> {
    for attempt in 1..=DUMP_TRIES {
        let name = deadline::snapshot_name(job.id, kind.as_str());
        match snapshot::take(server, (db, owner), folder, &name, None).await {
            Err(e) if e.is_dump_failure() && attempt < DUMP_TRIES => {
                tracing::info!(db, attempt, error = %e, "the snapshot is tried again");
                tokio::time::sleep(std::time::Duration::from_secs(5 * u64::from(attempt))).await;
            }
            Err(e) if e.is_dump_failure() => {
                return Err(anyhow!(
                    "pg_dump failed {DUMP_TRIES} times; the next interval tries again ({e})"
                ))
            }
            other => return Ok(other?),
        }
    }
    unreachable!("the last try returns")
}

/// Where a snapshot is restored to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RestoreTarget {
    /// A new database `<db>_snap_<n>` the participant can read.
    Copy,
    /// The participant's own database (its current state kept first).
    Own,
}

async fn restore_snapshot(
    settings: &Settings,
    store: &Store,
    job: &JobRecord,
) -> anyhow::Result<Vec<String>> {
    let id: i64 = param(job, "snapshot")?;
    let target: RestoreTarget = param(job, "target")?;
    let snap = store
        .snapshot(id)
        .await?
        .filter(|s| s.lab == job.lab)
        .ok_or_else(|| anyhow!("snapshot {id} is gone"))?;
    match target {
        RestoreTarget::Copy => restore_copy(settings, store, &snap).await,
        RestoreTarget::Own => restore_own(settings, store, &snap, &job.started_by).await,
    }
}

/// Into `<db>_snap_<n>`, then scored again there: the score of the same
/// state, to set beside the final score recorded from it.
async fn restore_copy(
    settings: &Settings,
    store: &Store,
    snap: &SnapshotRecord,
) -> anyhow::Result<Vec<String>> {
    let (rec, server) = place(settings, store, &snap.lab, &snap.database).await?;
    let name = PgName::snapshot_copy(&snap.database, snap.n)
        .ok_or_else(|| anyhow!("the copy's name would be longer than Postgres allows"))?;
    if store
        .databases(&snap.lab)
        .await?
        .iter()
        .any(|d| d.name == name)
    {
        return Err(anyhow!("{name} is a participant's database: no copy made"));
    }
    let owner = PgName::snapshot_owner(snap.id);
    copy::restore(
        server,
        &snapshot_file(settings, snap),
        (&name, &owner),
        &rec.owner,
    )
    .await?;
    let mut summary = vec![format!(
        "snapshot #{} restored into {name}: its participant can open it read-only",
        snap.n
    )];
    let (points, max) = rescore(settings, store, server, snap, (&name, &owner)).await?;
    summary.push(format!("scored again there: {points} of {max} points"));
    let recorded = store
        .final_state(&snap.lab, &snap.database)
        .await?
        .filter(|f| f.snapshot_id == Some(snap.id));
    if let Some(f) = recorded {
        let same = if f.points == points {
            "the same"
        } else {
            "DIFFERENT"
        };
        summary.push(format!(
            "the final score recorded from this snapshot: {} of {} points ({same})",
            f.points, f.max_points
        ));
    }
    Ok(summary)
}

/// Points of the lab on a snapshot's copy, checked as the copy's owner.
async fn rescore(
    settings: &Settings,
    store: &Store,
    server: &PgServerSettings,
    snap: &SnapshotRecord,
    (name, owner): (&PgName, &PgName),
) -> anyhow::Result<(i32, i32)> {
    let lab = lab(store, &snap.lab).await?;
    copy::allow_checks(server, name, owner).await?;
    let limits = Limits::of(&settings.scoring);
    let expected = evaluate::expectations(server, &lab, &limits).await?;
    let outcomes = evaluate::score_database(server, name, owner, &lab, &expected, &limits).await?;
    let points = outcomes.iter().map(|o| o.points as i32).sum();
    let max = lab.tasks.iter().map(|t| t.points as i32).sum();
    Ok((points, max))
}

/// Into the participant's own database, as a hand-in of the snapshot's
/// file (restored beside it, then swapped in), after a snapshot of what is
/// there now.
async fn restore_own(
    settings: &Settings,
    store: &Store,
    snap: &SnapshotRecord,
    by: &str,
) -> anyhow::Result<Vec<String>> {
    let (rec, server) = place(settings, store, &snap.lab, &snap.database).await?;
    let folder = snapshot::folder(&settings.data_dir, snap.lab.as_str(), &snap.database);
    let name = deadline::snapshot_name(snap.id, "before-restore");
    let taken = snapshot::take(server, (&snap.database, &rec.owner), &folder, &name, None).await?;
    let kept = record(
        settings,
        store,
        (&snap.lab, &snap.database),
        SnapshotKind::BeforeRestore,
        &taken,
    )
    .await?;
    let dir = settings
        .data_dir
        .join("submissions")
        .join(snap.lab.as_str());
    std::fs::create_dir_all(&dir)?;
    let file = dir.join(crate::random::token());
    tokio::fs::copy(snapshot_file(settings, snap), &file).await?;
    let by = Username::parse(by).map_err(|e| anyhow!("{by}: {e}"))?;
    let group = store
        .participants(&snap.lab)
        .await?
        .into_iter()
        .find(|p| p.database == rec.name)
        .and_then(|p| p.group);
    let file_text = file.display().to_string();
    let queued = store
        .insert_submission(
            &crate::control::NewSubmission {
                lab: &snap.lab,
                database: &rec.name,
                server: &rec.server,
                owner: &rec.owner,
                group: group.as_ref(),
                uploaded_by: &by,
                size: snap.size,
                format: crate::lab::submissions::DumpFormat::Custom,
                file: &file_text,
                late: false,
                contents: None,
            },
            crate::lab::submissions::MAX_PENDING,
        )
        .await?;
    let Some(restore) = queued else {
        let _ = std::fs::remove_file(&file);
        return Err(anyhow!(
            "hand-ins into {} are waiting: try again once they are done",
            rec.name
        ));
    };
    Ok(vec![
        format!("the state before it was kept as {}", describe(&kept)),
        format!(
            "restoring snapshot #{} into {} as hand-in {restore}",
            snap.n, rec.name
        ),
    ])
}

/// Why a request about snapshots was refused.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotRequestError {
    #[error("no such snapshot")]
    NoSuchSnapshot,
    #[error("{0} is not a database of this lab")]
    NoSuchDatabase(String),
    #[error("a job on this database is already waiting; wait until it is done")]
    Busy,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Queues a snapshot of `db` now (staff asked for it).
pub async fn start_snapshot(
    store: &Store,
    queue: &Queue,
    lab: &LabId,
    db: &str,
    by: &str,
) -> Result<i64, SnapshotRequestError> {
    if !store
        .databases(lab)
        .await?
        .iter()
        .any(|d| d.name.as_str() == db)
    {
        return Err(SnapshotRequestError::NoSuchDatabase(db.to_string()));
    }
    let job = NewJob {
        kind: JobKind::Snapshot,
        lab,
        lock_key: crate::control::database_key(lab, db),
        title: format!("Snapshot of {db}"),
        started_by: by,
        params: serde_json::json!({ "database": db, "kind": "manual" }),
        max_attempts: 2,
    };
    enqueue(store, queue, &job).await
}

/// Queues a job a lab master asked for (one more may wait behind a job
/// running on the same database).
async fn enqueue(
    store: &Store,
    queue: &Queue,
    job: &NewJob<'_>,
) -> Result<i64, SnapshotRequestError> {
    let id = store
        .enqueue_job(job, 2)
        .await?
        .ok_or(SnapshotRequestError::Busy)?;
    queue.queued();
    Ok(id)
}

/// Queues restoring snapshot `id` of `lab` into `target`.
pub async fn start_restore(
    store: &Store,
    queue: &Queue,
    lab: &LabId,
    id: i64,
    target: RestoreTarget,
    by: &str,
) -> Result<i64, SnapshotRequestError> {
    let snap = store
        .snapshot(id)
        .await?
        .filter(|s| &s.lab == lab)
        .ok_or(SnapshotRequestError::NoSuchSnapshot)?;
    let what = match target {
        RestoreTarget::Copy => "a read-only copy",
        RestoreTarget::Own => "its database",
    };
    let job = NewJob {
        kind: JobKind::SnapshotRestore,
        lab,
        lock_key: crate::control::database_key(lab, &snap.database),
        title: format!("Snapshot #{} of {} into {what}", snap.n, snap.database),
        started_by: by,
        params: serde_json::json!({ "snapshot": id, "target": target }),
        max_attempts: 2,
    };
    enqueue(store, queue, &job).await
}

/// When a snapshot was taken, as people read it.
pub fn when(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}
