//! `pglab move LAB USER --to SERVER` and `pglab drain SERVER`: the moves
//! are jobs of the durable queue; this command runs them itself unless a
//! running pglab takes them first, and waits for each to end.

use crate::control::{JobRecord, Store};
use crate::ident::{LabId, Username};
use crate::settings::Settings;
use anyhow::Context;
use std::path::Path;
use std::time::Duration;

pub async fn move_one(config: &Path, lab: &str, user: &str, to: &str) -> anyhow::Result<()> {
    let settings = Settings::load(config)?;
    let store = Store::open_migrated(&settings).await?;
    let (lab, user) = (LabId::parse(lab)?, Username::parse(user)?);
    let by = format!("cli:{}", super::evidence::whoami());
    let queue = crate::app::Queue::default();
    let queued =
        crate::app::moves::start_move(&settings, &store, &queue, (&lab, &user), to, &by).await?;
    let failed = wait_all(&settings, &store, &[queued]).await?;
    if failed > 0 {
        anyhow::bail!("the move failed; {user}'s database stays where it was");
    }
    Ok(())
}

pub async fn drain(config: &Path, server: &str) -> anyhow::Result<()> {
    let settings = Settings::load(config)?;
    let store = Store::open_migrated(&settings).await?;
    let by = format!("cli:{}", super::evidence::whoami());
    let queue = crate::app::Queue::default();
    let queued = crate::app::moves::start_drain(&settings, &store, &queue, server, &by).await?;
    if queued.is_empty() {
        println!("server {server} holds no lab databases (or their moves are queued already)");
        return Ok(());
    }
    println!("{} databases to move off {server}", queued.len());
    let failed = wait_all(&settings, &store, &queued).await?;
    if failed > 0 {
        anyhow::bail!(
            "{failed} of {} moves failed; run pglab drain {server} again to retry them",
            queued.len()
        );
    }
    println!("server {server} holds no lab databases any more");
    Ok(())
}

/// Runs or waits for each move; prints what each did. How many failed.
async fn wait_all(
    settings: &Settings,
    store: &Store,
    moves: &[crate::app::moves::QueuedMove],
) -> anyhow::Result<usize> {
    let mut failed = 0;
    for (i, m) in moves.iter().enumerate() {
        println!(
            "[{}/{}] {} of lab {}: {} -> {} (job {})",
            i + 1,
            moves.len(),
            m.database,
            m.lab,
            m.from,
            m.to,
            m.job
        );
        let job = run_here(settings, store, m.job, None)
            .await?
            .context("the move never ran")?;
        for line in &job.summary {
            println!("  {line}");
        }
        if let Some(e) = &job.error {
            println!("  FAILED: {e}");
            failed += 1;
        }
    }
    Ok(failed)
}

/// Runs job `id` in this process, unless a running pglab's worker took it
/// first (then waits for it); jobs of a process that died are taken back
/// first. The job as it ended; `None` when it still waits for its turn
/// (behind a job with the same key) after `queued_for`.
pub(super) async fn run_here(
    settings: &Settings,
    store: &Store,
    id: i64,
    queued_for: Option<Duration>,
) -> anyhow::Result<Option<JobRecord>> {
    let worker = format!("cli-{}-{}", std::process::id(), crate::random::token());
    let _ = crate::app::jobs::sweep(settings, store, &worker).await;
    let since = std::time::Instant::now();
    loop {
        if let Some(job) = store.claim_job_id(id, &worker).await? {
            crate::app::jobs::run(settings, store, &worker, job).await;
        }
        let job = store.job(id).await?.context("the job is gone")?;
        if job.status.ended() {
            return Ok(Some(job));
        }
        let waited = queued_for.is_some_and(|limit| since.elapsed() > limit);
        if job.status == crate::control::JobStatus::Queued && waited {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
