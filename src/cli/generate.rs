//! `pglab generate`: the monitoring files of a lab (also written by `apply`).

use crate::control::Store;
use crate::generate::{self, GenerateOptions};
use crate::lab::LoadedLab;
use crate::settings::Settings;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// The lab file (the lab must have been applied).
    pub lab: PathBuf,
    /// Output folder (default: `<data_dir>/generated`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Where Prometheus reaches the SQL exporter.
    #[arg(long, default_value = "127.0.0.1:9237")]
    pub exporter_address: String,
    /// Where Prometheus reaches itself.
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub prometheus_address: String,
}

pub fn default_options(settings: &Settings) -> GenerateOptions {
    GenerateOptions {
        exporter_address: "127.0.0.1:9237".into(),
        pglab_address: settings.listen.to_string(),
        prometheus_address: "127.0.0.1:9090".into(),
    }
}

/// Writes the files of `lab`; returns the folder.
pub async fn write(
    settings: &Settings,
    store: &Store,
    lab: &str,
    out: Option<&Path>,
    opts: &GenerateOptions,
) -> anyhow::Result<PathBuf> {
    let out = out.map_or_else(|| settings.data_dir.join("generated"), Path::to_path_buf);
    let files = generate::generate(settings, store, lab, opts).await?;
    files.write(&out)?;
    Ok(out)
}

pub async fn run(config: &Path, args: &GenerateArgs) -> anyhow::Result<()> {
    let lab = LoadedLab::load(&args.lab)?;
    let settings = Settings::load(config)?;
    let store = Store::open_migrated(&settings).await?;
    let opts = GenerateOptions {
        exporter_address: args.exporter_address.clone(),
        prometheus_address: args.prometheus_address.clone(),
        ..default_options(&settings)
    };
    let out = write(
        &settings,
        &store,
        lab.lab.id.as_str(),
        args.out.as_deref(),
        &opts,
    )
    .await?;
    println!(
        "monitoring files of lab {} written to {}",
        lab.lab.id,
        out.display()
    );
    Ok(())
}
