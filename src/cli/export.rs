//! `pglab export LAB [--with dumps,snapshots,logs,bom] [--out FILE]`.

use crate::control::Store;
use crate::export::ExportOptions;
use crate::ident::LabId;
use crate::settings::Settings;
use anyhow::Context;
use std::path::Path;
use std::time::Duration;

/// Longest this command waits for its export to get its turn.
const WAIT: Duration = Duration::from_secs(600);

pub async fn export(
    config: &Path,
    lab: &str,
    with: &str,
    out: Option<&Path>,
) -> anyhow::Result<()> {
    let settings = Settings::load(config)?;
    let store = Store::open_migrated(&settings).await?;
    let id = LabId::parse(lab)?;
    let options = ExportOptions::parse(with).map_err(anyhow::Error::msg)?;
    let by = format!("cli:{}", super::evidence::whoami());
    let queue = crate::app::Queue::default();
    let export =
        crate::app::exports::start_export(&settings, &store, &queue, &id, options, &by).await?;
    println!(
        "export {} of {lab} ({}), about {}",
        export.id,
        options.describe(),
        crate::app::human_size(export.estimate.max(0) as u64)
    );
    // This process runs it, unless a running pglab's worker took it first
    // (or an export of the lab runs: it waits its turn). Jobs of a process
    // that died are taken back first.
    let worker = format!("cli-{}-{}", std::process::id(), crate::random::token());
    let _ = crate::app::jobs::sweep(&settings, &store, &worker).await;
    let waiting_since = std::time::Instant::now();
    let done = loop {
        if let Some(job) = store.claim_job_id(export.job, &worker).await? {
            crate::app::jobs::run(&settings, &store, &worker, job).await;
        }
        let e = store
            .export(export.id)
            .await?
            .context("the export is gone")?;
        if e.status.ended() {
            break e;
        }
        if e.status == crate::control::JobStatus::Queued && waiting_since.elapsed() > WAIT {
            anyhow::bail!(
                "export {} still waits behind another export of {lab} after {} minutes; it \
                 stays queued: a running pglab (pglab serve) builds it",
                e.id,
                WAIT.as_secs() / 60
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let file = crate::app::exports::export_file(&settings, &done).with_context(|| {
        format!(
            "the export failed: {}",
            done.error.as_deref().unwrap_or("no archive")
        )
    })?;
    match out {
        Some(out) => {
            std::fs::copy(&file, out).with_context(|| format!("writing {}", out.display()))?;
            println!("{}: {} bytes", out.display(), done.size.unwrap_or(0));
        }
        None => println!("{}: {} bytes", file.display(), done.size.unwrap_or(0)),
    }
    Ok(())
}
