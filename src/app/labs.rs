//! Labs: checking that a lab's files load, applying a lab with its
//! participants, and writing its monitoring files.

use crate::control::Store;
use crate::generate::{self, GenerateError, GenerateOptions};
use crate::lab::LoadedLab;
use crate::provision::{self, ApplyReport, Change, Plan, ProvisionError};
use crate::settings::{PgServerSettings, Settings};
use std::path::{Path, PathBuf};

/// Where the generated Prometheus config looks for the SQL exporter, pglab
/// and itself, unless told otherwise.
pub fn default_generate_options(settings: &Settings) -> GenerateOptions {
    GenerateOptions {
        exporter_address: "127.0.0.1:9237".into(),
        pglab_address: settings.listen.to_string(),
        prometheus_address: "127.0.0.1:9090".into(),
    }
}

/// Writes the monitoring files of `lab` into `out` (default:
/// `<data_dir>/generated`); returns the folder.
pub async fn write_generated(
    settings: &Settings,
    store: &Store,
    lab: &str,
    out: Option<&Path>,
    opts: &GenerateOptions,
) -> Result<PathBuf, GenerateError> {
    let out = out.map_or_else(|| settings.data_dir.join("generated"), Path::to_path_buf);
    let files = generate::generate(settings, store, lab, opts).await?;
    files.write(&out)?;
    Ok(out)
}

/// Loads a lab's reference and starter into scratch databases of `server`
/// and drops them: the lab's SQL works (`pglab lab check`, the upload page).
pub async fn check_lab_loads(server: &PgServerSettings, lab: &LoadedLab) -> anyhow::Result<()> {
    let admin = crate::pgconn::connect(server, "postgres").await?;
    provision::postgres::ensure_baseline(server, &admin).await?;
    provision::build::build_lab(server, &admin, &lab.lab, false).await?;
    Ok(())
}

/// What applying a lab did.
pub struct Applied {
    pub report: ApplyReport,
    /// Where the monitoring files went, or why they could not be written
    /// (the apply itself succeeded either way).
    pub generated: Result<PathBuf, String>,
}

impl Applied {
    /// The lines a face shows after the progress lines.
    pub fn summary(&self, plan: &Plan) -> Vec<String> {
        let mut lines: Vec<String> = plan.notices.iter().map(|n| format!("! {n}")).collect();
        lines.extend(
            self.report
                .dumps
                .iter()
                .map(|d| format!("dumped before dropping: {}", d.display())),
        );
        lines.push(match &self.generated {
            Ok(out) => format!("monitoring files written to {}", out.display()),
            Err(e) => format!("! monitoring files not written: {e}"),
        });
        lines.push(format!(
            "lab {}: {} participants, {} changes applied",
            plan.lab.lab.id,
            plan.participants.0.len(),
            self.report.applied
        ));
        lines
    }
}

/// Applies a planned lab (provisioning, then the control database's
/// records), then writes its monitoring files; `progress` hears of each
/// change as it is made.
pub async fn apply_lab(
    settings: &Settings,
    store: &Store,
    plan: &Plan,
    progress: impl FnMut(usize, &Change),
) -> Result<Applied, ProvisionError> {
    let report = provision::apply(settings, store, plan, progress).await?;
    let id = plan.lab.lab.id.to_string();
    let generated = write_generated(
        settings,
        store,
        &id,
        None,
        &default_generate_options(settings),
    )
    .await
    .map_err(|e| e.to_string());
    Ok(Applied { report, generated })
}
