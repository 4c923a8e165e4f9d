//! A private Prometheus that scrapes pglab, when the Debian package is there.

use super::process::{self, io, Service};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio::process::Command;

pub struct Prometheus {
    pub port: u16,
    service: Service,
}

impl Prometheus {
    /// `None` when Prometheus is not installed (it is optional for `up`).
    pub async fn start_if_installed(
        dir: &Path,
        port: u16,
        pglab: SocketAddr,
        metrics_token: &crate::settings::Secret,
        scrape_interval: Duration,
    ) -> process::Result<Option<Self>> {
        let Ok(binary) = process::find_binary("prometheus", &[], "prometheus") else {
            tracing::info!("prometheus is not installed (apt-get install prometheus); the built-in /metrics still works");
            return Ok(None);
        };
        std::fs::create_dir_all(dir.join("data")).map_err(io(dir.display().to_string()))?;
        let config = dir.join("prometheus.yml");
        let text = format!(
            "# written by pglab up\nglobal:\n  scrape_interval: {every}s\n  evaluation_interval: {every}s\n\
             scrape_configs:\n  - job_name: pglab\n{auth}    static_configs:\n      - targets: ['{pglab}']\n\
             \x20 - job_name: prometheus\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n",
            every = scrape_interval.as_secs().max(1),
            auth = crate::generate::scrape_authorization(metrics_token.expose()),
        );
        std::fs::write(&config, text).map_err(io(config.display().to_string()))?;
        let mut cmd = Command::new(binary);
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"));
        let log = dir.with_extension("log");
        let mut service =
            Service::spawn("prometheus", cmd, &log, nix::sys::signal::Signal::SIGTERM)?;
        let url = format!("http://127.0.0.1:{port}/-/ready");
        let client = reqwest::Client::new();
        process::wait_ready(&mut service, Duration::from_secs(30), || {
            let req = client.get(&url).send();
            async move { req.await.is_ok_and(|r| r.status().is_success()) }
        })
        .await?;
        Ok(Some(Self { port, service }))
    }

    pub async fn stop(self) {
        self.service.stop().await;
    }
}
