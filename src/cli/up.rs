//! `pglab up`: the whole product on one machine, no Docker.

use crate::control::Store;
use crate::lab::{LoadedLab, Participants};
use crate::stack::{LocalStack, StackOptions};
use crate::{demo, provision};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Where the servers keep their data; reused by the next `up`.
    #[arg(long, default_value = ".pglab")]
    pub data_dir: PathBuf,
    /// Port of the first Postgres server (more servers take the next ports).
    #[arg(long, default_value_t = 15432)]
    pub pg_port: u16,
    /// Number of Postgres servers to start.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=8))]
    pub pg_servers: u16,
    #[arg(long, default_value_t = 13389)]
    pub ldap_port: u16,
    /// Port of the web app and /metrics.
    #[arg(long, default_value_t = 8080)]
    pub http_port: u16,
    #[arg(long, default_value_t = 19090)]
    pub prometheus_port: u16,
    /// Do not start Prometheus even when it is installed.
    #[arg(long)]
    pub no_prometheus: bool,
    /// Apply the demo lab with a handful of participants.
    #[arg(long)]
    pub demo: bool,
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let shutdown = crate::shutdown_signal();
    let opts = StackOptions {
        data_dir: args.data_dir.clone(),
        pg_port: args.pg_port,
        pg_servers: args.pg_servers as usize,
        ldap_port: args.ldap_port,
        http_port: args.http_port,
        prometheus_port: (!args.no_prometheus).then_some(args.prometheus_port),
        scrape_interval: std::time::Duration::from_secs(10),
    };
    let stack = LocalStack::start(&opts).await?;
    let result = match tokio::net::TcpListener::bind(stack.settings.listen).await {
        Ok(listener) => serve(&stack, listener, args.demo, shutdown).await,
        Err(e) => Err(anyhow::anyhow!(
            "cannot listen on {}: {e} (pass --http-port with another port)",
            stack.settings.listen
        )),
    };
    stack.stop().await;
    println!("pglab stopped; data kept in {}", args.data_dir.display());
    result
}

async fn serve(
    stack: &LocalStack,
    listener: tokio::net::TcpListener,
    with_demo: bool,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let settings = &stack.settings;
    let store = Store::open_migrated(settings).await?;
    let url = format!("http://{}", settings.listen);
    println!(
        "postgres: {}",
        settings
            .postgres
            .iter()
            .map(|s| format!("{} on {}:{}", s.name, s.host, s.port))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "slapd:    {} (base {})",
        settings.ldap.url, settings.ldap.base_dn
    );
    if let Some(p) = &stack.prometheus {
        println!("prometheus: http://127.0.0.1:{}", p.port);
    }
    let config = settings.data_dir.join("pglab.yaml");
    println!("config:   {} ({})", config.display(), config_reach(&config));
    if with_demo {
        apply_demo(settings, &store).await?;
    }
    if !settings.web.admin_user.is_empty() {
        println!(
            "lab master login: {} / {}   (web.admin_user / web.admin_password in the config)",
            settings.web.admin_user,
            settings.web.admin_password.expose()
        );
    }
    if with_demo {
        println!("live board: {url}/labs/demo/board   public: {url}/public/labs/demo/board");
    }
    println!("web app:  {url}   (Ctrl-C stops everything)");
    let state = crate::server::start(settings.clone()).await?;
    crate::web::serve(state, listener, shutdown).await?;
    Ok(())
}

/// Where the other commands find the config: `.pglab/pglab.yaml` of the
/// folder they run in is their default; for another data directory, a link
/// there points at it (unless that file exists already).
fn config_reach(config: &std::path::Path) -> String {
    let default = std::path::Path::new(".pglab/pglab.yaml");
    let same = |a: &std::path::Path, b: &std::path::Path| {
        std::fs::canonicalize(a)
            .ok()
            .zip(std::fs::canonicalize(b).ok())
            .is_some_and(|(a, b)| a == b)
    };
    if same(config, default) {
        return "used by the other pglab commands run from here".into();
    }
    let linked = default.symlink_metadata().is_err()
        && std::fs::create_dir_all(".pglab").is_ok()
        && std::path::absolute(config)
            .and_then(|target| std::os::unix::fs::symlink(target, default))
            .is_ok();
    if linked {
        "linked from .pglab/pglab.yaml: the other pglab commands run from here use it".into()
    } else {
        format!(
            "the other pglab commands: pglab --config {} ..., or export PGLAB_CONFIG={}",
            config.display(),
            config.display()
        )
    }
}

async fn apply_demo(settings: &crate::settings::Settings, store: &Store) -> anyhow::Result<()> {
    let (lab_file, csv) = demo::write(&settings.data_dir.join("demo"))?;
    let lab = LoadedLab::load(&lab_file)?;
    let people = Participants::load(&csv)?;
    let plan = provision::plan(settings, store, lab, people, false).await?;
    let applied = crate::app::apply_lab(settings, store, &plan, |_, _| {}).await?;
    // The demo's list, and whoever was added to the lab since (kept).
    let participants = store.participants(&plan.lab.lab.id).await?.len();
    println!(
        "demo lab: {participants} participants, {} changes applied",
        applied.report.applied
    );
    let out = applied.generated.map_err(anyhow::Error::msg)?;
    println!(
        "  monitoring files (SQL exporter, Prometheus, Grafana): {}",
        out.display()
    );
    let creds = store.credentials(&plan.lab.lab.id).await?;
    if let Some(c) = creds.iter().find(|c| c.initial_password.is_some()) {
        let server = settings
            .server(&c.server)
            .expect("placed on a configured server");
        println!(
            "  participant: {}  initial password: {}",
            c.username,
            c.initial_password.as_deref().unwrap_or_default()
        );
        println!(
            "  log in with: {}",
            crate::app::psql_command(server, &c.username, &c.database)
        );
        println!(
            "  all initial passwords: pglab --config {} credentials demo",
            settings.data_dir.join("pglab.yaml").display()
        );
    }
    Ok(())
}
