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
    // (or an export of the lab runs: it waits its turn).
    let Some(_) = super::moves::run_here(&settings, &store, export.job, Some(WAIT)).await? else {
        anyhow::bail!(
            "export {} still waits behind another export of {lab} after {} minutes; it \
             stays queued: a running pglab (pglab serve) builds it",
            export.id,
            WAIT.as_secs() / 60
        );
    };
    let done = store
        .export(export.id)
        .await?
        .context("the export is gone")?;
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
