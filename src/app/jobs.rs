//! The job queue's workers: every pglab process runs a few, each claims a
//! job from the control database (applies, restores), keeps its heartbeat
//! while it runs, and a sweeper retries or fails the jobs whose worker
//! died. Any process may run any job, so a second replica shares the work
//! and shows the same progress.

use crate::control::{Claim, JobKind, JobRecord, Store};
use crate::settings::Settings;
use crate::submissions::worker as restores;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// Jobs running at once in one pglab process.
pub const WORKERS: usize = 2;
const HEARTBEAT: Duration = Duration::from_secs(5);
/// A running job not heard of for this long belongs to a dead worker.
const STALE_SECS: f64 = 20.0;
const IDLE_POLL: Duration = Duration::from_secs(2);

/// Wakes this process's workers when a job was queued, and counts the
/// uploads this process is receiving per database.
#[derive(Clone, Default)]
pub struct Queue {
    wake: Arc<Notify>,
    receiving: Arc<Mutex<HashMap<String, i64>>>,
}

/// An upload being received; its place is freed when it is dropped.
pub struct Receiving {
    key: String,
    receiving: Arc<Mutex<HashMap<String, i64>>>,
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
    let sweeper = sweep_loop(
        Arc::clone(&settings),
        store.clone(),
        format!("{instance}-sweep"),
    );
    let mut tasks = vec![tokio::spawn(sweeper).abort_handle()];
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
        match store.claim_job(&worker).await {
            Ok(Some(job)) => run(&settings, &store, &worker, job).await,
            Ok(None) => {
                let _ = tokio::time::timeout(IDLE_POLL, notified).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "job queue unavailable");
                tokio::time::sleep(IDLE_POLL).await;
            }
        }
    }
}

/// Runs a job `worker` claimed, with its heartbeat, to its end.
#[tracing::instrument(skip_all, fields(job = job.id, kind = %job.kind, lab = %job.lab))]
pub async fn run(settings: &Settings, store: &Store, worker: &str, job: JobRecord) {
    tracing::info!(attempt = job.attempts, "job started");
    let claim = Claim {
        job: job.id,
        worker,
    };
    // In the same task as the job: when the job is dropped (pglab stops),
    // the heartbeat stops too and the job becomes stale; when the job is no
    // longer this worker's (its heartbeat was missed and a sweeper took it
    // over), it is dropped here.
    tokio::select! {
        () = dispatch(settings, store, &job, claim) => {},
        () = heartbeat(store, claim) => {
            tracing::warn!("the job was taken over by a sweeper: stopped here");
        }
    }
}

/// Runs a claimed job; each kind records its own end.
async fn dispatch(settings: &Settings, store: &Store, job: &JobRecord, claim: Claim<'_>) {
    match job.kind {
        JobKind::Restore => match store.submission_of_job(job.id).await {
            Ok(Some(sub)) => {
                let (db, id) = (sub.database.to_string(), sub.id);
                restores::run(settings, store, sub, claim.worker).await;
                super::deadlines::reenforce(settings, store, &job.lab, &db).await;
                mail_result(settings, store, id).await;
            }
            Ok(None) => end(store, claim, "the submission of this restore is gone").await,
            Err(e) => end(store, claim, &e.to_string()).await,
        },
        JobKind::Apply => super::labs::run_apply_job(settings, store, job, claim).await,
        // Both end with the database's deadline policy applied again (on
        // its new server, after a move).
        JobKind::Reset | JobKind::Move => {
            if job.kind == JobKind::Reset {
                super::participants::run_reset_job(settings, store, job, claim).await;
            } else {
                super::moves::run_move_job(settings, store, job, claim).await;
            }
            reenforce_job_database(settings, store, job).await;
        }
        JobKind::Snapshot | JobKind::Final | JobKind::SnapshotRestore => {
            super::snapshots::run_job(settings, store, job, claim).await
        }
        JobKind::Export => super::exports::run_export_job(settings, store, job, claim).await,
        JobKind::Mail => super::mail::run_mail_job(settings, store, job, claim).await,
    }
}

/// The deadline policy of the database a job names, applied again.
async fn reenforce_job_database(settings: &Settings, store: &Store, job: &JobRecord) {
    if let Some(db) = job.params.get("database").and_then(|d| d.as_str()) {
        super::deadlines::reenforce(settings, store, &job.lab, db).await;
    }
}

/// A hand-in that ended: its result by mail, when its lab says so.
async fn mail_result(settings: &Settings, store: &Store, id: i64) {
    if let Err(e) = super::mail::hand_in_result(settings, store, id).await {
        tracing::warn!(hand_in = id, error = %e, "could not queue the hand-in's result mail");
    }
}

/// An apply or reset that stopped because its lab's apply lock was lost
/// (the control database failed over and another apply took the lock):
/// both are made to be run again, so the job is queued again while it has
/// attempts left. Whether it was.
pub(super) async fn requeued_after_lost_lock(
    store: &Store,
    job: &JobRecord,
    claim: Claim<'_>,
    error: &anyhow::Error,
) -> bool {
    use crate::control::StoreError;
    let lost = |e: &StoreError| matches!(e, StoreError::ApplyLockLost(_));
    let lock_lost = error.chain().any(|c| {
        c.downcast_ref::<StoreError>().is_some_and(lost)
            || matches!(c.downcast_ref(), Some(crate::provision::ProvisionError::Store(e)) if lost(e))
    });
    if !lock_lost || job.attempts >= job.max_attempts {
        return false;
    }
    tracing::warn!(job = job.id, "the apply lock was lost: job queued again");
    store
        .requeue_job(
            claim,
            "the lab's apply lock was lost (control database failover); retried",
        )
        .await
        .is_ok_and(|queued| queued)
}

async fn end(store: &Store, claim: Claim<'_>, error: &str) {
    tracing::warn!(job = claim.job, error, "job failed");
    if let Err(e) = store.finish_job(claim, &[], Some(error)).await {
        tracing::error!(error = %e, "could not record the end of a job");
    }
}

/// Returns when the job is no longer this worker's.
async fn heartbeat(store: &Store, claim: Claim<'_>) {
    loop {
        tokio::time::sleep(HEARTBEAT).await;
        // A control database that does not answer is not a lost job: the
        // sweeper waits `STALE_SECS` before taking it over.
        if let Ok(false) = store.job_heartbeat(claim).await {
            return;
        }
    }
}

async fn sweep_loop(settings: Arc<Settings>, store: Store, sweeper: String) {
    loop {
        if let Err(e) = sweep(&settings, &store, &sweeper).await {
            tracing::warn!(error = %e, "sweeping interrupted jobs");
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// Ends or requeues the jobs whose worker stopped (pglab was killed), one
/// at a time; a job that cannot be recovered now (its server is down) is
/// tried again at a later sweep, and does not hold up the others.
pub async fn sweep(settings: &Settings, store: &Store, sweeper: &str) -> anyhow::Result<()> {
    while let Some(job) = store.take_stale_job(STALE_SECS, sweeper).await? {
        let claim = Claim {
            job: job.id,
            worker: sweeper,
        };
        if let Err(e) = recover(settings, store, &job, claim).await {
            tracing::warn!(job = job.id, error = %e, "cannot recover an interrupted job yet");
        }
    }
    Ok(())
}

async fn recover(
    settings: &Settings,
    store: &Store,
    job: &JobRecord,
    claim: Claim<'_>,
) -> anyhow::Result<()> {
    match job.kind {
        JobKind::Restore => match store.submission_of_job(job.id).await? {
            Some(sub) => {
                let (db, id) = (sub.database.to_string(), sub.id);
                restores::recover(settings, store, sub, claim.worker, job.max_attempts).await?;
                super::deadlines::reenforce(settings, store, &job.lab, &db).await;
                mail_result(settings, store, id).await;
            }
            None => end(store, claim, "the submission of this restore is gone").await,
        },
        // Applying, resetting and the evidence jobs are idempotent: the
        // next attempt starts from what the interrupted one left. An
        // export starts again from nothing: what it left is removed.
        _ if job.attempts < job.max_attempts => {
            if job.kind == JobKind::Export {
                super::exports::clean_up(settings, store, job).await;
            }
            if job.kind == JobKind::Mail {
                super::mail::recover(store, job).await?;
            }
            tracing::info!(job = job.id, kind = %job.kind, "interrupted job queued again");
            store
                .requeue_job(claim, "interrupted (pglab stopped during it); retried")
                .await?;
        }
        _ => {
            if job.kind == JobKind::Export {
                super::exports::clean_up(settings, store, job).await;
            }
            let error = format!(
                "interrupted {} times (pglab stopped); start it again",
                job.attempts
            );
            if job.kind == JobKind::Move {
                super::moves::give_up(settings, store, job).await?;
                reenforce_job_database(settings, store, job).await;
            }
            if job.kind == JobKind::Mail {
                super::mail::give_up(store, claim, Some(&error)).await;
            } else {
                end(store, claim, &error).await;
            }
        }
    }
    Ok(())
}
