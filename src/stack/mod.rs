//! The embedded default: private Postgres, slapd and Prometheus on loopback,
//! started and stopped by `pglab up` (and by the tests, with the same code).

pub mod postgres;
pub mod process;
pub mod prometheus;
pub mod slapd;

use crate::settings::{
    ControlSettings, LdapSettings, PgServerSettings, Secret, Settings, WebSettings,
};
use process::{ensure_port_free, StackError};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub const BASE_DN: &str = "dc=pglab,dc=local";

/// Ports and folders of a local stack.
#[derive(Debug, Clone)]
pub struct StackOptions {
    pub data_dir: PathBuf,
    /// Port of the first Postgres server; more servers take the next ports.
    pub pg_port: u16,
    pub pg_servers: usize,
    pub ldap_port: u16,
    pub http_port: u16,
    /// `None`: do not start Prometheus.
    pub prometheus_port: Option<u16>,
    /// How often Prometheus scrapes pglab.
    pub scrape_interval: std::time::Duration,
}

pub struct LocalStack {
    pub settings: Settings,
    /// `None` while stopped (`stop_server`).
    pub clusters: Vec<Option<postgres::PgCluster>>,
    /// `None` while stopped (`stop_ldap`).
    pub slapd: Option<slapd::Slapd>,
    pub prometheus: Option<prometheus::Prometheus>,
    /// A streaming standby of the control database's server (`add_standby`).
    pub standby: Option<postgres::PgCluster>,
    ldap_port: u16,
}

/// Secrets are made once and kept in the data directory's `pglab.yaml`
/// (mode 0600), so that a second `up` finds the same passwords.
fn load_or_make_settings(opts: &StackOptions) -> Result<Settings, StackError> {
    let path = opts.data_dir.join("pglab.yaml");
    let previous = Settings::load(&path).ok();
    let secret = |old: Option<&Secret>| {
        old.filter(|s| !s.expose().is_empty())
            .cloned()
            .unwrap_or_else(random_secret)
    };
    let pg_password = secret(previous.as_ref().map(|p| &p.postgres[0].admin_password));
    let ldap_password = secret(previous.as_ref().map(|p| &p.ldap.bind_password));
    let scorer_password = secret(previous.as_ref().map(|p| &p.postgres[0].scorer_password));
    let data_dir = std::path::absolute(&opts.data_dir).map_err(process::io("data dir"))?;
    let postgres = (0..opts.pg_servers)
        .map(|i| PgServerSettings {
            name: server_name(i),
            host: "127.0.0.1".into(),
            port: opts.pg_port + i as u16,
            admin_user: postgres::ADMIN_USER.into(),
            admin_password: pg_password.clone(),
            scorer_password: scorer_password.clone(),
            monitor_password: Secret::default(),
            public_host: None,
            bin_dir: postgres::bin_dir().ok(),
            max_databases: None,
            max_size: None,
        })
        .collect();
    Ok(Settings {
        listen: SocketAddr::from(([127, 0, 0, 1], opts.http_port)),
        data_dir,
        postgres,
        control: ControlSettings {
            server: server_name(0),
            database: "pglab".into(),
            standbys: vec![],
        },
        ldap: LdapSettings {
            url: format!("ldap://127.0.0.1:{}", opts.ldap_port),
            base_dn: BASE_DN.into(),
            bind_dn: slapd::admin_dn(BASE_DN),
            bind_password: ldap_password,
        },
        api_token: secret(previous.as_ref().map(|p| &p.api_token)),
        metrics_token: secret(previous.as_ref().map(|p| &p.metrics_token)),
        web: WebSettings {
            admin_user: "admin".into(),
            admin_password: secret(previous.as_ref().map(|p| &p.web.admin_password)),
            ..previous.as_ref().map(|p| p.web.clone()).unwrap_or_default()
        },
        exports: previous
            .as_ref()
            .map(|p| p.exports.clone())
            .unwrap_or_default(),
        api: previous.as_ref().map(|p| p.api.clone()).unwrap_or_default(),
        mail: previous
            .as_ref()
            .map(|p| p.mail.clone())
            .unwrap_or_default(),
        scoring: previous.map(|p| p.scoring).unwrap_or_default(),
    })
}

fn server_name(i: usize) -> String {
    if i == 0 {
        "main".into()
    } else {
        format!("node{}", i + 1)
    }
}

pub fn random_secret() -> Secret {
    crate::random::secret()
}

impl LocalStack {
    /// Checks every port first, then starts slapd, the Postgres servers and
    /// Prometheus, and writes `pglab.yaml` for the other commands to use.
    pub async fn start(opts: &StackOptions) -> Result<Self, StackError> {
        for i in 0..opts.pg_servers {
            ensure_port_free(opts.pg_port + i as u16, "postgres", "--pg-port")?;
        }
        ensure_port_free(opts.ldap_port, "slapd", "--ldap-port")?;
        ensure_port_free(opts.http_port, "the web app", "--http-port")?;
        if let Some(p) = opts.prometheus_port {
            ensure_port_free(p, "prometheus", "--prometheus-port")?;
        }
        crate::private_files::prepare_data_dir(&opts.data_dir)
            .map_err(process::io(opts.data_dir.display().to_string()))?;
        let settings = load_or_make_settings(opts)?;
        write_private(&opts.data_dir.join("pglab.yaml"), &settings.to_yaml())?;

        let dir = &settings.data_dir;
        let slapd = slapd::Slapd::start(
            &dir.join("ldap"),
            opts.ldap_port,
            BASE_DN,
            &settings.ldap.bind_password,
        )
        .await?;
        let people = format!("ou=people,{BASE_DN}");
        let hba = postgres::HbaLdap {
            port: opts.ldap_port,
            people_dn: &people,
        };
        let mut clusters = Vec::new();
        for server in &settings.postgres {
            let pg_dir = dir.join(format!("pg-{}", server.name));
            match postgres::PgCluster::start(&pg_dir, server.port, &server.admin_password, &hba)
                .await
            {
                Ok(c) => clusters.push(Some(c)),
                Err(e) => {
                    for c in clusters.into_iter().flatten() {
                        c.stop().await;
                    }
                    slapd.stop().await;
                    return Err(e);
                }
            }
        }
        let prometheus = match opts.prometheus_port {
            Some(port) => {
                prometheus::Prometheus::start_if_installed(
                    &dir.join("prometheus"),
                    port,
                    settings.listen,
                    &settings.metrics_token,
                    opts.scrape_interval,
                )
                .await?
            }
            None => None,
        };
        Ok(Self {
            settings,
            clusters,
            slapd: Some(slapd),
            prometheus,
            standby: None,
            ldap_port: opts.ldap_port,
        })
    }

    /// Stops Postgres server `i` (fast shutdown), as in a fault drill;
    /// [`Self::start_server`] brings it back on its folder and port.
    pub async fn stop_server(&mut self, i: usize) {
        if let Some(c) = self.clusters.get_mut(i).and_then(Option::take) {
            c.stop().await;
        }
    }

    /// Starts Postgres server `i` again after [`Self::stop_server`].
    pub async fn start_server(&mut self, i: usize) -> Result<(), StackError> {
        let server = &self.settings.postgres[i];
        let people = format!("ou=people,{BASE_DN}");
        let hba = postgres::HbaLdap {
            port: self.ldap_port,
            people_dn: &people,
        };
        let dir = self.settings.data_dir.join(format!("pg-{}", server.name));
        let c = postgres::PgCluster::start(&dir, server.port, &server.admin_password, &hba).await?;
        self.clusters[i] = Some(c);
        Ok(())
    }

    /// Starts a streaming standby of the control database's server on
    /// `port` and lists it in `control.standbys`.
    pub async fn add_standby(&mut self, port: u16) -> Result<(), StackError> {
        let i = self
            .settings
            .postgres
            .iter()
            .position(|s| s.name == self.settings.control.server)
            .expect("validated");
        let primary = self.clusters[i].as_ref().expect("control server runs");
        let people = format!("ou=people,{BASE_DN}");
        let hba = postgres::HbaLdap {
            port: self.ldap_port,
            people_dn: &people,
        };
        let dir = self.settings.data_dir.join("pg-standby");
        let password = &self.settings.postgres[i].admin_password;
        self.standby = Some(primary.standby(&dir, port, password, &hba).await?);
        self.settings.control.standbys = vec![format!("127.0.0.1:{port}")];
        Ok(())
    }

    /// Promotes the standby (`add_standby`) to primary.
    pub async fn promote_standby(&self) -> Result<(), StackError> {
        let standby = self.standby.as_ref().expect("a standby runs");
        standby.promote().await
    }

    pub async fn stop(self) {
        if let Some(p) = self.prometheus {
            p.stop().await;
        }
        if let Some(s) = self.standby {
            s.stop().await;
        }
        for c in self.clusters.into_iter().flatten() {
            c.stop().await;
        }
        if let Some(s) = self.slapd {
            s.stop().await;
        }
    }

    pub fn ldap_port(&self) -> u16 {
        self.ldap_port
    }

    /// Stops slapd (a fault drill); `start_ldap` starts it again.
    pub async fn stop_ldap(&mut self) {
        if let Some(s) = self.slapd.take() {
            s.stop().await;
        }
    }

    pub async fn start_ldap(&mut self) -> Result<(), StackError> {
        let slapd = slapd::Slapd::start(
            &self.settings.data_dir.join("ldap"),
            self.ldap_port,
            BASE_DN,
            &self.settings.ldap.bind_password,
        )
        .await?;
        self.slapd = Some(slapd);
        Ok(())
    }
}

fn write_private(path: &Path, text: &str) -> Result<(), StackError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(process::io(path.display().to_string()))?;
    std::io::Write::write_all(&mut f, text.as_bytes())
        .map_err(process::io(path.display().to_string()))
}
