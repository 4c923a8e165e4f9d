//! A restore job as the queue's workers run it (`app::jobs` claims it):
//! the restore, its recording, the uploads that are no longer needed, and
//! what is left to do when its worker died during it.

use super::restore::{self, JobNames, Outcome};
use crate::control::{JobStatus, Store, SubmissionRecord};
use crate::lab::submissions::KEPT_UPLOADS;
use crate::settings::Settings;

#[tracing::instrument(skip_all, fields(submission = sub.id, db = %sub.database))]
pub async fn run(settings: &Settings, store: &Store, sub: SubmissionRecord, worker: &str) {
    tracing::info!(format = sub.format.name(), "restore started");
    let saved = match restore::run(settings, store, &sub).await {
        Outcome::Succeeded(note) => {
            tracing::info!("restore succeeded");
            let saved = store
                .finish_submission(&sub, worker, true, &[], Some(&note))
                .await;
            for note in super::replace::retire_older(settings, store, &sub).await {
                tracing::info!(%note, "older database retired");
            }
            saved
        }
        Outcome::Failed(issues) => {
            tracing::info!(errors = issues.len(), "restore failed");
            store
                .finish_submission(&sub, worker, false, &issues, None)
                .await
        }
    };
    match saved {
        Ok(true) => {}
        Ok(false) => tracing::warn!(
            "the restore's job was taken over meanwhile: its end is not recorded here"
        ),
        Err(e) => tracing::error!(error = %e, "could not record the end of a restore"),
    }
    remove_uploads(store, &sub).await;
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
    let finished = all.iter().filter(|s| s.status.ended());
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

/// A restore whose worker died (pglab was killed): what it made is
/// removed; if the swap had happened it is recorded as succeeded, else the
/// job is queued again, or failed after `max_attempts`.
pub async fn recover(
    settings: &Settings,
    store: &Store,
    sub: SubmissionRecord,
    sweeper: &str,
    max_attempts: i32,
) -> anyhow::Result<()> {
    debug_assert_eq!(sub.status, JobStatus::Running);
    let Some(server) = settings.server(&sub.server) else {
        anyhow::bail!(
            "server {} of submission {} is not in the config",
            sub.server,
            sub.id
        );
    };
    let admin = crate::pgconn::connect(server, "postgres").await?;
    let names = JobNames::of(sub.id);
    let scratch_left = restore::database_exists(&admin, &names.scratch).await?;
    let swapped = sub.previous.is_some()
        && !scratch_left
        && restore::database_exists(&admin, &names.previous).await?;
    restore::clean_up(server, &admin, &names).await?;
    if swapped {
        tracing::info!(
            submission = sub.id,
            "interrupted restore had completed: recorded as succeeded"
        );
        let note = "restored (pglab stopped just after; recorded at the next start)";
        store
            .finish_submission(&sub, sweeper, true, &[], Some(note))
            .await?;
        return Ok(());
    }
    // The swap did not happen: the group's database must accept sessions
    // again if it was closed for it.
    let _ = crate::provision::postgres::allow_connections(&admin, &sub.database, true).await;
    if sub.attempts < max_attempts {
        tracing::info!(submission = sub.id, "interrupted restore queued again");
        store
            .requeue_submission(
                &sub,
                sweeper,
                "interrupted (pglab stopped during the restore); retried",
            )
            .await?;
    } else {
        tracing::info!(submission = sub.id, "interrupted restore failed");
        let issue = super::RestoreIssue::message(format!(
            "the restore was interrupted {} times (pglab stopped); nothing was changed",
            sub.attempts
        ));
        store
            .finish_submission(&sub, sweeper, false, &[issue], None)
            .await?;
    }
    Ok(())
}
