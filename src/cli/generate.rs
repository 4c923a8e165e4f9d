//! `pglab generate`: the monitoring files of a lab (also written by `apply`).

use crate::control::Store;
use crate::generate::GenerateOptions;
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

pub async fn run(config: &Path, args: &GenerateArgs) -> anyhow::Result<()> {
    let lab = LoadedLab::load(&args.lab)?;
    let settings = Settings::load(config)?;
    let store = Store::open_migrated(&settings).await?;
    let opts = GenerateOptions {
        exporter_address: args.exporter_address.clone(),
        prometheus_address: args.prometheus_address.clone(),
        ..crate::app::default_generate_options(&settings)
    };
    let out =
        crate::app::write_generated(&settings, &store, &lab.lab.id, args.out.as_deref(), &opts)
            .await?;
    println!(
        "monitoring files of lab {} written to {}",
        lab.lab.id,
        out.folder.display()
    );
    Ok(())
}

/// `pglab haproxy`: the config, printed or written to `out`.
pub fn haproxy(listen: &str, replicas: &[String], out: Option<&Path>) -> anyhow::Result<()> {
    let text = crate::generate::haproxy::config(listen, replicas);
    match out {
        Some(path) => {
            std::fs::write(path, text)?;
            println!("{} written ({} replicas)", path.display(), replicas.len());
        }
        None => print!("{text}"),
    }
    Ok(())
}
