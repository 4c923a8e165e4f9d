//! The restore queue: workers claim jobs from the control database (so any
//! number of pglab processes can share it), keep a heartbeat while they run
//! one, and sweep jobs whose worker died: a job interrupted by a crash is
//! retried once or marked failed, and what it left behind is removed.

use super::restore::{self, JobNames, Outcome};
use crate::control::{Store, SubmissionRecord};
use crate::lab::submissions::KEPT_UPLOADS;
use crate::settings::Settings;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Restores running at once in one pglab process.
pub const WORKERS: usize = 2;
const HEARTBEAT: Duration = Duration::from_secs(5);
/// A running job not heard of for this long belongs to a dead worker.
const STALE_SECS: f64 = 20.0;
const IDLE_POLL: Duration = Duration::from_secs(2);
/// Attempts before an interrupted job is given up.
const MAX_ATTEMPTS: i32 = 2;

/// Wakes the workers when an upload was queued, and counts the uploads
/// this process is receiving per database.
#[derive(Clone, Default)]
pub struct Queue {
    wake: Arc<Notify>,
    receiving: Arc<std::sync::Mutex<std::collections::HashMap<String, i64>>>,
}

/// An upload being received; its place is freed when it is dropped.
pub struct Receiving {
    key: String,
    receiving: Arc<std::sync::Mutex<std::collections::HashMap<String, i64>>>,
}

impl Drop for Receiving {
    fn drop(&mut self) {
        let mut map = self.receiving.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.key) {
            *n -= 1;
            if *n <= 0 {
                map.remove(&self.key);
            }
        }
    }
}

impl Queue {
    pub fn queued(&self) {
        self.wake.notify_waiters();
    }

    /// Takes a place for an upload into `key` (a lab's database) before its
    /// body is read, unless `pending` jobs plus the uploads being received
    /// reach `max`: parallel uploads cannot all pass the cap and fill the
    /// disk before any of them is counted.
    pub fn receive(&self, key: String, pending: i64, max: i64) -> Option<Receiving> {
        let mut map = self.receiving.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(key.clone()).or_insert(0);
        if pending + *n >= max {
            return None;
        }
        *n += 1;
        Some(Receiving {
            key,
            receiving: Arc::clone(&self.receiving),
        })
    }
}

/// Starts the workers and the sweeper of this process.
pub fn start(settings: Arc<Settings>, store: Store, queue: Queue) -> Vec<tokio::task::AbortHandle> {
    let instance = format!("{}-{}", std::process::id(), crate::random::token());
    let mut tasks =
        vec![tokio::spawn(sweep_loop(Arc::clone(&settings), store.clone())).abort_handle()];
    for i in 0..WORKERS {
        let worker = work_loop(
            Arc::clone(&settings),
            store.clone(),
            queue.clone(),
            format!("{instance}-{i}"),
        );
        tasks.push(tokio::spawn(worker).abort_handle());
    }
    tasks
}

async fn work_loop(settings: Arc<Settings>, store: Store, queue: Queue, worker: String) {
    loop {
        let notified = queue.wake.notified();
        match store.claim_submission(&worker).await {
            Ok(Some(job)) => run_job(&settings, &store, &worker, job).await,
            Ok(None) => {
                let _ = tokio::time::timeout(IDLE_POLL, notified).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "restore queue unavailable");
                tokio::time::sleep(IDLE_POLL).await;
            }
        }
    }
}

#[tracing::instrument(skip_all, fields(job = job.id, lab = %job.lab, db = %job.database))]
async fn run_job(settings: &Settings, store: &Store, worker: &str, job: SubmissionRecord) {
    tracing::info!(attempt = job.attempts, format = %job.format, "restore started");
    // In the same task as the restore: when the restore is dropped (pglab
    // stops), the heartbeat stops too and the job becomes stale.
    let outcome = tokio::select! {
        outcome = restore::run(settings, store, &job) => outcome,
        () = heartbeat(store, worker, job.id) => unreachable!("the heartbeat never ends"),
    };
    let saved = match &outcome {
        Outcome::Succeeded(note) => {
            tracing::info!("restore succeeded");
            let saved = store.finish_submission(job.id, true, &[], Some(note)).await;
            for note in super::replace::retire_older(settings, store, &job).await {
                tracing::info!(%note, "older database retired");
            }
            saved
        }
        Outcome::Failed(issues) => {
            tracing::info!(errors = issues.len(), "restore failed");
            store.finish_submission(job.id, false, issues, None).await
        }
    };
    if let Err(e) = saved {
        tracing::error!(error = %e, "could not record the end of a restore");
    }
    remove_uploads(store, &job).await;
}

/// Uploads do not pile up: a restored (or failed) upload's file is removed,
/// unless the lab keeps uploads, and then only the newest
/// `KEPT_UPLOADS` finished ones of the database stay.
async fn remove_uploads(store: &Store, job: &SubmissionRecord) {
    let keep = match store.lab(&job.lab).await {
        Ok(Some(spec)) => spec.lab.submissions.is_some_and(|r| r.keep_uploads),
        _ => false,
    };
    let Ok(all) = store.database_submissions(&job.lab, &job.database).await else {
        return;
    };
    let finished = all
        .iter()
        .filter(|s| matches!(s.status.as_str(), "succeeded" | "failed"));
    let kept = if keep { KEPT_UPLOADS } else { 0 };
    for old in finished.skip(kept) {
        let file = std::path::Path::new(&old.file);
        if file.exists() {
            if let Err(e) = std::fs::remove_file(file) {
                tracing::warn!(job = old.id, error = %e, "could not remove an upload");
            }
        }
        let _ = std::fs::remove_dir_all(super::detect::unpacked_dir(file));
    }
}

async fn heartbeat(store: &Store, worker: &str, id: i64) {
    loop {
        tokio::time::sleep(HEARTBEAT).await;
        let _ = store.heartbeat(id, worker).await;
    }
}

async fn sweep_loop(settings: Arc<Settings>, store: Store) {
    loop {
        if let Err(e) = sweep(&settings, &store).await {
            tracing::warn!(error = %e, "sweeping interrupted restores");
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// Ends or requeues the jobs whose worker stopped (pglab was killed).
pub async fn sweep(settings: &Settings, store: &Store) -> anyhow::Result<()> {
    for job in store.stale_submissions(STALE_SECS).await? {
        let Some(server) = settings.server(&job.server) else {
            continue;
        };
        let admin = crate::pgconn::connect(server, "postgres").await?;
        let names = JobNames::of(job.id);
        let scratch_left = restore::database_exists(&admin, &names.scratch).await?;
        let swapped = job.previous.is_some()
            && !scratch_left
            && restore::database_exists(&admin, &names.previous).await?;
        restore::clean_up(&admin, &names).await?;
        if swapped {
            tracing::info!(
                job = job.id,
                "interrupted restore had completed: recorded as succeeded"
            );
            store
                .finish_submission(
                    job.id,
                    true,
                    &[],
                    Some("restored (pglab stopped just after; recorded at the next start)"),
                )
                .await?;
            continue;
        }
        // The swap did not happen: the group's database must accept
        // sessions again if it was closed for it.
        let live = crate::ident::quote_ident(&job.database);
        let _ = admin
            .batch_execute(&format!("ALTER DATABASE {live} ALLOW_CONNECTIONS true"))
            .await;
        if job.attempts < MAX_ATTEMPTS {
            tracing::info!(job = job.id, "interrupted restore queued again");
            store
                .requeue_submission(
                    job.id,
                    "interrupted (pglab stopped during the restore); retried",
                )
                .await?;
        } else {
            tracing::info!(job = job.id, "interrupted restore failed");
            store
                .finish_submission(
                    job.id,
                    false,
                    &[super::RestoreIssue::message(format!(
                        "the restore was interrupted {} times (pglab stopped); nothing was changed",
                        job.attempts
                    ))],
                    None,
                )
                .await?;
        }
    }
    Ok(())
}
