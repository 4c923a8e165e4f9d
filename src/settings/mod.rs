//! pglab's configuration: one YAML file, secrets overridable from the
//! environment, validated once at start.

mod mail;
mod proxies;

pub use mail::{MailSecurity, MailSettings};
pub use proxies::AddressBlock;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// A secret that never shows in logs or `Debug` output.
#[derive(Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address of the web app and `/metrics`.
    pub listen: SocketAddr,
    /// Where pglab keeps its files (dumps of pruned databases, generated configs).
    pub data_dir: PathBuf,
    /// Postgres servers that host lab databases; the first is the default.
    pub postgres: Vec<PgServerSettings>,
    pub control: ControlSettings,
    pub ldap: LdapSettings,
    #[serde(default)]
    pub scoring: ScoringSettings,
    /// Bearer token of the JSON API (`/api/...`); overridden by
    /// `PGLAB_API_TOKEN`. Empty: the API answers 401 to everything.
    #[serde(default)]
    pub api_token: Secret,
    /// When set, `/metrics` answers only requests with
    /// `Authorization: Bearer <metrics_token>` (the generated Prometheus
    /// config carries it); overridden by `PGLAB_METRICS_TOKEN`. Empty:
    /// `/metrics` is open.
    #[serde(default)]
    pub metrics_token: Secret,
    #[serde(default)]
    pub web: WebSettings,
    #[serde(default)]
    pub exports: ExportSettings,
    #[serde(default)]
    pub api: ApiSettings,
    /// Outgoing mail (credentials, reminders, hand-in results).
    #[serde(default)]
    pub mail: MailSettings,
}

/// Class data exports.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExportSettings {
    /// Days an export's archive is kept before it is deleted.
    pub keep_days: u32,
}

impl Default for ExportSettings {
    fn default() -> Self {
        Self { keep_days: 7 }
    }
}

/// The JSON API (`/api/v1`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSettings {
    /// Requests per minute per token and per client address (bursts of as
    /// many).
    pub rate_per_minute: u32,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            rate_per_minute: 600,
        }
    }
}

impl Settings {
    pub fn api_rate_per_minute(&self) -> f64 {
        f64::from(self.api.rate_per_minute.max(1))
    }
}

/// Who may use the web app, and how its sessions work.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebSettings {
    /// LDAP group (`cn=<name>,ou=groups,<base_dn>`, groupOfNames) of the lab
    /// masters: they manage labs and participants.
    pub master_group: String,
    /// LDAP group of the staff (TAs): read-only pages.
    pub staff_group: String,
    /// A lab master who is not in LDAP, for the first login; empty: none.
    pub admin_user: String,
    /// Overridden by `PGLAB_ADMIN_PASSWORD`.
    pub admin_password: Secret,
    /// Mark session cookies `Secure` (set when pglab is served over HTTPS).
    pub secure_cookies: bool,
    /// Hours a login lasts.
    pub session_hours: u32,
    /// Shortest password a student may choose.
    pub min_password_length: usize,
    /// Base URL of Grafana; when set, boards link to the generated dashboard.
    pub grafana_url: Option<String>,
    /// Reverse proxies (TLS terminators, HAProxy) in front of pglab,
    /// addresses or blocks (`10.0.0.0/24`): for requests from these the
    /// client is the right-most address of `X-Forwarded-For` that is not
    /// one of them (the login limiter counts per client). Empty: the TCP
    /// peer is the client.
    pub trusted_proxies: Vec<AddressBlock>,
    /// The address people and scripts reach pglab at (`https://lab.example.org`),
    /// for absolute links in API answers and on credential slips. Unset:
    /// the `Host` the request came with.
    pub public_url: Option<String>,
}

impl Default for WebSettings {
    fn default() -> Self {
        Self {
            master_group: "labmasters".into(),
            staff_group: "labstaff".into(),
            admin_user: String::new(),
            admin_password: Secret::default(),
            secure_cookies: false,
            session_hours: 12,
            min_password_length: 10,
            grafana_url: None,
            trusted_proxies: Vec::new(),
            public_url: None,
        }
    }
}

/// How the scoring engine runs; every field has a default.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScoringSettings {
    /// Seconds between two full rounds (labs, participants and servers
    /// read again from the control database).
    pub interval_secs: u64,
    /// Milliseconds between two looks for changed databases between full
    /// rounds (one query per server); a change is evaluated and on the board
    /// at the next look. At least 100, at most the interval.
    pub tick_ms: u64,
    /// Longest a single check may run on a participant's database.
    pub statement_timeout_ms: u64,
    /// Longest a check waits for a lock a student holds.
    pub lock_timeout_ms: u64,
    /// Rows fetched from one result at most (more is reported as such).
    pub max_rows: usize,
    /// Databases evaluated at once per Postgres server.
    pub concurrency_per_server: usize,
    /// Longest a whole round may take; databases not scored by then keep
    /// their last results and are scored in the next round.
    pub round_deadline_secs: u64,
    /// Longest rest of a database whose checks keep timing out: it is
    /// checked again after 1, 2, 4, ... intervals, up to this.
    pub max_backoff_secs: u64,
}

impl ScoringSettings {
    fn validate(&self) -> Result<(), String> {
        let most = self.interval_secs.max(1) * 1000;
        if self.tick_ms < 100 || self.tick_ms > most {
            return Err(format!(
                "scoring.tick_ms {}: from 100 to scoring.interval_secs x 1000 ({most})",
                self.tick_ms
            ));
        }
        Ok(())
    }
}

impl Default for ScoringSettings {
    fn default() -> Self {
        Self {
            interval_secs: 10,
            tick_ms: 1000,
            statement_timeout_ms: 2000,
            lock_timeout_ms: 1000,
            max_rows: 100_000,
            concurrency_per_server: 4,
            round_deadline_secs: 300,
            max_backoff_secs: 120,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PgServerSettings {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub admin_user: String,
    /// Overridden by `PGLAB_PG_<NAME>_PASSWORD`.
    #[serde(default)]
    pub admin_password: Secret,
    /// Key from which the password of every checking role
    /// (`pglab.ck.<owner>`, which runs a participant's checks as that
    /// participant and nobody else) is derived; overridden by
    /// `PGLAB_PG_<NAME>_SCORER_PASSWORD`. Changing it is safe: the scorer
    /// sets each checking role's password again at its next login.
    #[serde(default)]
    pub scorer_password: Secret,
    /// Not used any more (the generated SQL-exporter config connects as
    /// the checking roles); still read so that older config files load.
    #[serde(default, skip_serializing)]
    pub monitor_password: Secret,
    /// Host name students put in `psql -h` (default: `host`).
    #[serde(default)]
    pub public_host: Option<String>,
    /// Directory holding psql, pg_dump, pg_restore (default: found on PATH).
    #[serde(default)]
    pub bin_dir: Option<PathBuf>,
    /// Most participant databases (of every lab) pglab places here; a
    /// full server gets no new ones (default: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_databases: Option<u32>,
    /// Most bytes all databases of this server may take, like `200GB`
    /// (`pg_database_size`); a server at or over it gets no new databases
    /// (default: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<String>,
}

impl PgServerSettings {
    /// `max_size` in bytes (validated when the config is loaded).
    pub fn max_bytes(&self) -> Option<u64> {
        self.max_size
            .as_deref()
            .and_then(crate::lab::submissions::parse_size)
    }

    /// This server's entry (`postgres[i]`) alone.
    fn validate(&self, i: usize) -> Result<(), String> {
        let s = self;
        let ok = !s.name.is_empty()
            && s.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            return Err(format!(
                "postgres[{i}].name {:?}: use letters, digits, '-' and '_'",
                s.name
            ));
        }
        // A known key would let anybody log in as every checking role.
        if s.scorer_password.expose().chars().count() < 16 {
            return Err(format!(
                "postgres[{i}].scorer_password: set 16 or more random characters (or PGLAB_PG_{}_SCORER_PASSWORD); the checking roles' passwords are derived from it",
                s.name.to_ascii_uppercase().replace('-', "_")
            ));
        }
        if let Some(size) = s.max_size.as_deref().filter(|_| s.max_bytes().is_none()) {
            return Err(format!(
                "postgres[{i}].max_size {size:?}: a size like 500MB or 200GB"
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ControlSettings {
    /// Name of the Postgres server holding the control database.
    pub server: String,
    pub database: String,
    /// Streaming standbys of that server (`host:port`), tried after it:
    /// pglab uses whichever accepts writes, so it follows a promoted
    /// standby without a restart.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub standbys: Vec<String>,
}

impl ControlSettings {
    /// The standbys as (host, port); validated when the config is loaded.
    pub fn standby_addresses(&self) -> Vec<(String, u16)> {
        self.standbys.iter().filter_map(|s| host_port(s)).collect()
    }
}

/// `host:port` as (host, port).
fn host_port(text: &str) -> Option<(String, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    let port = port.parse::<u16>().ok().filter(|p| *p > 0)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty() && !host.contains(char::is_whitespace)).then(|| (host.to_string(), port))
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LdapSettings {
    pub url: String,
    pub base_dn: String,
    pub bind_dn: String,
    /// Overridden by `PGLAB_LDAP_BIND_PASSWORD`.
    #[serde(default)]
    pub bind_password: Secret,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read config {path}: {source} (create one with `pglab config example > {path}`, or run `pglab up`)")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config {path}: {message}")]
    Invalid { path: String, message: String },
}

impl Settings {
    pub fn load(path: &Path) -> Result<Self, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let invalid = |message: String| SettingsError::Invalid {
            path: path.display().to_string(),
            message,
        };
        let mut s: Settings = serde_norway::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        s.apply_env(|k| std::env::var(k).ok());
        s.validate().map_err(invalid)?;
        Ok(s)
    }

    /// Secrets from the environment win over the file.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) {
        if let Some(t) = get("PGLAB_METRICS_TOKEN") {
            self.metrics_token = Secret(t);
        }
        if let Some(t) = get("PGLAB_API_TOKEN") {
            self.api_token = Secret(t);
        }
        if let Some(p) = get("PGLAB_SMTP_PASSWORD") {
            self.mail.password = Secret(p);
        }
        if let Some(p) = get("PGLAB_ADMIN_PASSWORD") {
            self.web.admin_password = Secret(p);
        }
        if let Some(p) = get("PGLAB_LDAP_BIND_PASSWORD") {
            self.ldap.bind_password = Secret(p);
        }
        for server in &mut self.postgres {
            let key = format!(
                "PGLAB_PG_{}_PASSWORD",
                server.name.to_ascii_uppercase().replace('-', "_")
            );
            if let Some(p) = get(&key) {
                server.admin_password = Secret(p);
            }
            if let Some(p) = get(&key.replace("_PASSWORD", "_SCORER_PASSWORD")) {
                server.scorer_password = Secret(p);
            }
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.postgres.is_empty() {
            return Err("postgres: list at least one server".into());
        }
        for (i, s) in self.postgres.iter().enumerate() {
            if self.postgres[..i].iter().any(|o| o.name == s.name) {
                return Err(format!("postgres[{i}].name {:?} is used twice", s.name));
            }
            s.validate(i)?;
        }
        if let Some(bad) = self
            .control
            .standbys
            .iter()
            .find(|s| host_port(s).is_none())
        {
            return Err(format!(
                "control.standbys: {bad:?} is not an address like 10.0.0.12:5432"
            ));
        }
        if self.server(&self.control.server).is_none() {
            return Err(format!(
                "control.server {:?} is not one of the postgres servers",
                self.control.server
            ));
        }
        self.scoring.validate()?;
        if !self.ldap.url.starts_with("ldap://") && !self.ldap.url.starts_with("ldapi://") {
            return Err(format!("ldap.url {:?} must start with ldap:// (TLS is not built in; use a loopback or ldapi URL)", self.ldap.url));
        }
        let w = &self.web;
        for (field, group) in [
            ("master_group", &w.master_group),
            ("staff_group", &w.staff_group),
        ] {
            if crate::ident::GroupName::parse(group).is_err()
                && crate::ident::LabId::parse(group).is_err()
            {
                return Err(format!(
                    "web.{field} {group:?}: use lowercase letters, digits and '_'"
                ));
            }
        }
        if let Some(url) = &w.public_url {
            let rest = url
                .strip_prefix("https://")
                .or_else(|| url.strip_prefix("http://"));
            let ok = rest.is_some_and(|r| {
                !r.is_empty()
                    && !r.ends_with('/')
                    && r.chars().all(|c| {
                        c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '-' | '[' | ']' | '/')
                    })
            });
            if !ok {
                return Err(format!(
                    "web.public_url {url:?}: an http:// or https:// address without a trailing '/', like https://lab.example.org"
                ));
            }
        }
        if w.master_group == w.staff_group {
            return Err("web.master_group and web.staff_group must differ".into());
        }
        if !w.admin_user.is_empty() && w.admin_password.expose().len() < 12 {
            return Err("web.admin_password: at least 12 characters when web.admin_user is set (or PGLAB_ADMIN_PASSWORD)".into());
        }
        if w.min_password_length < 8 {
            return Err("web.min_password_length: at least 8".into());
        }
        if w.session_hours == 0 {
            return Err("web.session_hours: at least 1".into());
        }
        self.mail.validate()
    }

    pub fn server(&self, name: &str) -> Option<&PgServerSettings> {
        self.postgres.iter().find(|s| s.name == name)
    }

    pub fn example() -> Self {
        Self {
            listen: "127.0.0.1:8080".parse().expect("literal address"),
            data_dir: ".pglab".into(),
            postgres: vec![PgServerSettings {
                name: "main".into(),
                host: "127.0.0.1".into(),
                port: 5432,
                admin_user: "pglab_admin".into(),
                admin_password: Secret::default(),
                scorer_password: Secret::default(),
                monitor_password: Secret::default(),
                public_host: None,
                bin_dir: None,
                max_databases: None,
                max_size: None,
            }],
            control: ControlSettings {
                server: "main".into(),
                database: "pglab".into(),
                standbys: vec![],
            },
            ldap: LdapSettings {
                url: "ldap://127.0.0.1:389".into(),
                base_dn: "dc=pglab,dc=local".into(),
                bind_dn: "cn=admin,dc=pglab,dc=local".into(),
                bind_password: Secret::default(),
            },
            scoring: ScoringSettings::default(),
            api_token: Secret::default(),
            metrics_token: Secret::default(),
            web: WebSettings::default(),
            exports: ExportSettings::default(),
            api: ApiSettings::default(),
            mail: MailSettings::default(),
        }
    }

    pub fn to_yaml(&self) -> String {
        serde_norway::to_string(self).expect("settings serialize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compose_config_trusts_the_compose_haproxy() {
        let mut s: Settings = serde_norway::from_str(include_str!("../../compose/pglab.yaml"))
            .expect("compose/pglab.yaml parses");
        s.apply_env(|_| Some("0123456789abcdef0123".to_string()));
        s.validate().expect("compose/pglab.yaml is valid");
        let compose = include_str!("../../compose.yaml");
        let haproxy = compose
            .split("ipv4_address: ")
            .nth(1)
            .and_then(|rest| rest.lines().next())
            .expect("HAProxy's address in compose.yaml");
        let ip = haproxy.trim().parse().expect("an address");
        assert!(
            s.web.trusted_proxies.iter().any(|b| b.contains(ip)),
            "{haproxy} is trusted"
        );
    }

    #[test]
    fn example_round_trips_and_secrets_hide() {
        let mut s = Settings::example();
        s.apply_env(|k| (k == "PGLAB_PG_MAIN_PASSWORD").then(|| "hunter2".to_string()));
        assert_eq!(s.postgres[0].admin_password.expose(), "hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        let mut back: Settings = serde_norway::from_str(&Settings::example().to_yaml()).unwrap();
        assert!(back.validate().unwrap_err().contains("scorer_password"));
        back.apply_env(|k| {
            (k == "PGLAB_PG_MAIN_SCORER_PASSWORD").then(|| "0123456789abcdef0123".to_string())
        });
        back.validate().unwrap();
    }

    #[test]
    fn unknown_keys_are_refused() {
        let text = Settings::example().to_yaml() + "colour: blue\n";
        let err = serde_norway::from_str::<Settings>(&text)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `colour`"), "{err}");
    }
}
