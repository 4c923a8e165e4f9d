//! Class data exports: started by a lab master (page, CLI, API), built by a
//! job on the queue, kept until they expire, downloaded by lab masters.

use super::Queue;
use crate::control::{Claim, ExportRecord, JobRecord, NewExport, Store, StoreError};
use crate::export::{archive, ExportOptions};
use crate::ident::LabId;
use crate::settings::Settings;
use anyhow::{anyhow, Context};
use chrono::Utc;
use std::path::{Path, PathBuf};

/// The expected size of an export, per part.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Estimate {
    pub tables: u64,
    pub dumps: u64,
    pub snapshots: u64,
    pub logs: u64,
}

impl Estimate {
    pub fn total(&self, o: &ExportOptions) -> u64 {
        self.tables
            + if o.dumps { self.dumps } else { 0 }
            + if o.snapshots { self.snapshots } else { 0 }
            + if o.logs { self.logs } else { 0 }
    }
}

/// Size on disk of the files that exist among `files`, with the headers a
/// zip entry of each adds.
fn files_size(files: impl Iterator<Item = (usize, PathBuf)>) -> u64 {
    files
        .filter_map(|(name_len, p)| {
            p.metadata()
                .ok()
                .map(|m| m.len() + 76 + 2 * name_len as u64)
        })
        .sum()
}

/// What an export of `lab` would take: the tables as the last export
/// measured them (or from the number of rows), and the optional files as
/// they are on disk.
pub async fn estimate(store: &Store, lab: &LabId) -> Result<Estimate, StoreError> {
    let [people, results, history, sessions, handins, jobs] = store.export_counts(lab).await?;
    let modeled = 40_000
        + people * 700
        + results * 420
        + history * 190
        + sessions * 90
        + handins * 330
        + jobs * 160;
    let tables = store.last_tables_size(lab).await?.unwrap_or(modeled) as u64;
    let dumps = files_size(
        store
            .lab_submissions(lab)
            .await?
            .into_iter()
            .map(|s| (s.database.len() + 30, PathBuf::from(s.file))),
    );
    // As recorded (one query: the page that shows it reloads while an
    // export runs).
    let snapshots = store.snapshot_bytes(lab).await?.max(0) as u64;
    Ok(Estimate {
        tables,
        dumps,
        snapshots,
        logs: jobs as u64 * 400,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum StartExportError {
    #[error("no such lab")]
    NoSuchLab,
    #[error("three exports of this lab are waiting or running already; wait until one is done")]
    Busy,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Queues an export of `lab`; returns the export's id.
pub async fn start_export(
    settings: &Settings,
    store: &Store,
    queue: &Queue,
    lab: &LabId,
    options: ExportOptions,
    by: &str,
) -> Result<ExportRecord, StartExportError> {
    store.lab(lab).await?.ok_or(StartExportError::NoSuchLab)?;
    let estimate = estimate(store, lab).await?.total(&options);
    let now = Utc::now();
    let new = NewExport {
        lab,
        started_by: by,
        options: serde_json::to_value(options).unwrap_or_default(),
        estimate: estimate as i64,
        name: format!("{lab}-{}.zip", now.format("%Y%m%dT%H%M%SZ")),
        expires_at: now + chrono::Duration::days(i64::from(settings.exports.keep_days)),
    };
    let (id, _) = store
        .insert_export(&new)
        .await?
        .ok_or(StartExportError::Busy)?;
    queue.queued();
    tracing::info!(%lab, by, id, options = %options.describe(), "export queued");
    store.export(id).await?.ok_or(StartExportError::NoSuchLab)
}

/// The private folder an export job builds in, and the folder its archive
/// goes to.
fn places(settings: &Settings, job: &JobRecord) -> (PathBuf, PathBuf) {
    let root = settings.data_dir.join("exports");
    // `.work`: no lab id starts with a dot.
    (
        root.join(".work").join(job.id.to_string()),
        root.join(job.lab.as_str()),
    )
}

/// Removes what attempts of the job left: its folder, and any archive of
/// it (partial, or whole but never recorded: its attempt died between the
/// rename and the record) but the one its export records.
pub async fn clean_up(settings: &Settings, store: &Store, job: &JobRecord) {
    let (work, folder) = places(settings, job);
    let _ = std::fs::remove_dir_all(&work);
    // `None`: not knowing which archive is recorded, only partial ones go.
    let recorded: Option<Option<PathBuf>> = store
        .export_of_job(job.id)
        .await
        .ok()
        .map(|e| e.and_then(|e| e.file).map(|f| settings.data_dir.join(f)));
    let prefix = format!("{}-", job.id);
    for e in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let unrecorded = name.ends_with(".zip")
            && recorded
                .as_ref()
                .is_some_and(|r| r.as_deref() != Some(e.path().as_path()));
        if name.starts_with(&prefix) && (name.ends_with(".partial") || unrecorded) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Runs a claimed export job and records its end.
pub async fn run_export_job(settings: &Settings, store: &Store, job: &JobRecord, claim: Claim<'_>) {
    clean_up(settings, store, job).await;
    let result = build(settings, store, job, claim).await;
    clean_up(settings, store, job).await;
    let (summary, error) = match result {
        Ok(line) => (vec![line], None),
        Err(e) => {
            tracing::warn!(job = job.id, error = %format!("{e:#}"), "export failed");
            (vec![], Some(format!("{e:#}")))
        }
    };
    if let Err(e) = store.finish_job(claim, &summary, error.as_deref()).await {
        tracing::error!(error = %e, "could not record the end of an export");
    }
}

async fn build(
    settings: &Settings,
    store: &Store,
    job: &JobRecord,
    claim: Claim<'_>,
) -> anyhow::Result<String> {
    let export = store
        .export_of_job(job.id)
        .await?
        .ok_or_else(|| anyhow!("the export of this job is gone"))?;
    let options: ExportOptions =
        serde_json::from_value(export.options.clone()).context("the export's options")?;
    let loaded = store
        .lab(&job.lab)
        .await?
        .ok_or_else(|| anyhow!("lab {} is gone", job.lab))?;
    let (work, folder) = places(settings, job);
    std::fs::create_dir_all(&work)?;
    std::fs::create_dir_all(&folder)?;
    let token = crate::random::token();
    let partial = folder.join(format!("{}-{token}.zip.partial", job.id));
    let done = folder.join(format!("{}-{token}.zip", job.id));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, String)>();
    let report = async {
        while let Some((n, what)) = rx.recv().await {
            let line = format!("{n}/{}: {what}", archive::STEPS);
            let _ = store
                .job_progress(claim, n as i32, archive::STEPS as i32, &[line])
                .await;
        }
    };
    let step = move |n: usize, what: &str| {
        let _ = tx.send((n, what.to_string()));
    };
    let run = async {
        let built = archive::build(
            store,
            &settings.data_dir,
            &loaded,
            &options,
            (&work, &partial),
            &step,
        )
        .await;
        drop(step);
        built
    };
    let (built, ()) = tokio::join!(run, report);
    let built = built?;
    std::fs::rename(&partial, &done)?;
    // The rename itself on disk before the record says so.
    std::fs::File::open(&folder)?.sync_all()?;
    let rel = done
        .strip_prefix(&settings.data_dir)
        .unwrap_or(&done)
        .display()
        .to_string();
    store
        .set_export_file(
            export.id,
            &rel,
            (built.size as i64, built.tables_size as i64),
        )
        .await?;
    tracing::info!(lab = %job.lab, id = export.id, size = built.size, "export ready");
    Ok(format!(
        "{}: {} ({})",
        export.name,
        super::human_size(built.size),
        options.describe()
    ))
}

/// Deletes the archives of expired exports.
pub async fn expire(settings: &Settings, store: &Store) -> Result<usize, StoreError> {
    let mut n = 0;
    for e in store.expired_exports().await? {
        if let Some(file) = &e.file {
            let _ = std::fs::remove_file(settings.data_dir.join(file));
        }
        store.mark_export_deleted(e.id).await?;
        tracing::info!(lab = %e.lab, id = e.id, "export expired and deleted");
        n += 1;
    }
    Ok(n)
}

/// Where a ready export's archive is.
pub fn export_file(settings: &Settings, e: &ExportRecord) -> Option<PathBuf> {
    e.ready()
        .then(|| e.file.as_deref().map(|f| settings.data_dir.join(f)))
        .flatten()
        .filter(|p: &PathBuf| p.is_file() && p.starts_with(Path::new(&settings.data_dir)))
}

/// A participant's own data in a lab (for their page): who they are in it,
/// each task's result and final state, the history of their tasks, their
/// sessions and hand-ins. `None` when they take no part in it.
pub async fn participant_data(
    store: &Store,
    lab: &LabId,
    user: &crate::ident::Username,
) -> Result<Option<serde_json::Value>, StoreError> {
    let Some(me) = store
        .participants(lab)
        .await?
        .into_iter()
        .find(|p| &p.username == user)
    else {
        return Ok(None);
    };
    let Some(loaded) = store.lab(lab).await? else {
        return Ok(None);
    };
    let db = me.database.to_string();
    let stored = store.task_scores_of(lab, std::slice::from_ref(&db)).await?;
    let tasks: Vec<serde_json::Value> = loaded
        .lab
        .tasks
        .iter()
        .map(|t| {
            let s = stored.iter().find(|s| s.task == t.id);
            serde_json::json!({
                "task": t.id,
                "title": t.title,
                "max_points": t.points,
                "passed": s.is_some_and(|s| s.passed),
                "points": s.map_or(0, |s| s.points),
                "first_passed_at": s.and_then(|s| s.first_passed_at),
                "reason": s.and_then(|s| s.reason.clone()),
            })
        })
        .collect();
    let handins: Vec<serde_json::Value> = store
        .database_submissions(lab, &me.database)
        .await?
        .iter()
        .map(|s| {
            serde_json::json!({
                "id": s.id, "uploaded_by": s.uploaded_by, "uploaded_at": s.uploaded_at,
                "size": s.size, "format": s.format.name(), "late": s.late, "status": s.status,
                "errors": s.errors,
            })
        })
        .collect();
    Ok(Some(serde_json::json!({
        "lab": lab,
        "title": loaded.lab.title,
        "username": me.username,
        "name": me.name,
        "email": me.email,
        "group": me.group,
        "database": db,
        "tasks": tasks,
        "final_state": store.final_state(lab, &db).await?,
        "history": store.task_history(lab, &db).await?,
        "sessions": store.session_history(lab, &db).await?,
        "hand_ins": handins,
    })))
}
