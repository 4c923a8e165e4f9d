//! A private PostgreSQL cluster under pglab's data directory.

use super::process::{self, io, RunAs, Service, StackError};
use crate::settings::Secret;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::process::Command;

/// Enough for a few hundred students with a session or two each, pglab's own
/// pools and a monitoring exporter (the default 100 is too small).
pub const MAX_CONNECTIONS: u32 = 600;
pub const ADMIN_USER: &str = "pglab_admin";

/// How the cluster lets people in; written anew at every start because the
/// LDAP port may change between runs.
pub struct HbaLdap<'a> {
    pub port: u16,
    pub people_dn: &'a str,
}

pub struct PgCluster {
    pub dir: PathBuf,
    pub port: u16,
    pub bin_dir: PathBuf,
    service: Service,
}

/// The newest installed PostgreSQL's bin folder (Debian keeps them versioned).
pub fn bin_dir() -> process::Result<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    let postgres = process::find_binary("postgres", &[], "postgresql")?;
    Ok(postgres
        .parent()
        .unwrap_or(Path::new("/usr/bin"))
        .to_path_buf())
}

impl PgCluster {
    /// Initialises the cluster if `dir` is new (keeping it otherwise), writes
    /// its settings and pg_hba, starts it and waits until the admin can log in.
    pub async fn start(
        dir: &Path,
        port: u16,
        password: &Secret,
        ldap: &HbaLdap<'_>,
    ) -> process::Result<Self> {
        let bin_dir = bin_dir()?;
        let run_as = RunAs::for_root("postgres", "postgresql")?;
        std::fs::create_dir_all(dir).map_err(io(dir.display().to_string()))?;
        if let Some(user) = &run_as {
            user.check_reachable(dir)?;
        }
        if !dir.join("PG_VERSION").exists() {
            init(dir, &bin_dir, password, run_as.as_ref()).await?;
        }
        // max_wal_size: cloning a class's databases with WAL_LOG writes GBs
        // of WAL; the default 1GB would force back-to-back checkpoints.
        let conf = format!(
            "# written by pglab at every start\n\
             listen_addresses = '127.0.0.1'\n\
             port = {port}\n\
             unix_socket_directories = ''\n\
             max_connections = {MAX_CONNECTIONS}\n\
             shared_buffers = '256MB'\n\
             password_encryption = 'scram-sha-256'\n\
             max_wal_size = '4GB'\n\
             track_activities = on\n\
             track_counts = on\n\
             log_line_prefix = '%m [%p] %q%u@%d '\n"
        );
        write_owned(&dir.join("pglab.conf"), &conf, run_as.as_ref())?;
        // First match wins: the admin, the checking roles and the restore
        // roles of submission jobs by password (they are members of student
        // roles, so they must match before the LDAP line), students by
        // LDAP, nobody else.
        let hba = format!(
            "# written by pglab at every start\n\
             host all {ADMIN_USER} 127.0.0.1/32 scram-sha-256\n\
             host replication {ADMIN_USER} 127.0.0.1/32 scram-sha-256\n\
             host all +pglab_checkers 127.0.0.1/32 scram-sha-256\n\
             host all +pglab_restorers 127.0.0.1/32 scram-sha-256\n\
             host all +pglab_students 127.0.0.1/32 ldap ldapserver=127.0.0.1 ldapport={} ldapprefix=\"uid=\" ldapsuffix=\",{}\"\n\
             host all all 127.0.0.1/32 scram-sha-256\n",
            ldap.port, ldap.people_dn
        );
        write_owned(&dir.join("pg_hba.conf"), &hba, run_as.as_ref())?;

        let mut cmd = Command::new(bin_dir.join("postgres"));
        cmd.arg("-D").arg(dir).current_dir(dir);
        if let Some(user) = &run_as {
            user.apply(&mut cmd);
        }
        let log = dir.with_extension("log");
        if let Some(user) = &run_as {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .map_err(io(log.display().to_string()))?;
            user.chown_tree(&log)?;
        }
        // SIGINT is Postgres' "fast" shutdown: sessions are ended, data is safe.
        let mut service = Service::spawn("postgres", cmd, &log, nix::sys::signal::Signal::SIGINT)?;
        let dsn = admin_dsn(port, password);
        process::wait_ready(&mut service, Duration::from_secs(60), || {
            let dsn = dsn.clone();
            async move {
                tokio_postgres::connect(&dsn, tokio_postgres::NoTls)
                    .await
                    .is_ok()
            }
        })
        .await?;
        Ok(Self {
            dir: dir.to_path_buf(),
            port,
            bin_dir,
            service,
        })
    }

    pub async fn stop(self) {
        self.service.stop().await;
    }

    /// A streaming standby of this cluster in `dir` (a base backup with
    /// `standby.signal`), started on `port`.
    pub async fn standby(
        &self,
        dir: &Path,
        port: u16,
        password: &Secret,
        ldap: &HbaLdap<'_>,
    ) -> process::Result<Self> {
        let run_as = RunAs::for_root("postgres", "postgresql")?;
        std::fs::create_dir_all(dir).map_err(io(dir.display().to_string()))?;
        if let Some(user) = &run_as {
            user.chown_tree(dir)?;
        }
        let mut cmd = Command::new(self.bin_dir.join("pg_basebackup"));
        cmd.args([
            "-h",
            "127.0.0.1",
            "-U",
            ADMIN_USER,
            "-X",
            "stream",
            "-R",
            // A checkpoint at once, not spread over minutes.
            "--checkpoint=fast",
            "-D",
        ])
        .arg(dir)
        .arg("-p")
        .arg(self.port.to_string())
        .env("PGPASSWORD", password.expose())
        .current_dir(dir);
        if let Some(user) = &run_as {
            user.apply(&mut cmd);
        }
        process::run("pg_basebackup", cmd).await?;
        Self::start(dir, port, password, ldap).await
    }

    /// Makes this standby the primary (`pg_ctl promote`, which waits until
    /// it accepts writes).
    pub async fn promote(&self) -> process::Result<()> {
        let run_as = RunAs::for_root("postgres", "postgresql")?;
        let mut cmd = Command::new(self.bin_dir.join("pg_ctl"));
        cmd.arg("promote")
            .arg("-w")
            .arg("-D")
            .arg(&self.dir)
            .current_dir(&self.dir);
        if let Some(user) = &run_as {
            user.apply(&mut cmd);
        }
        process::run("pg_ctl promote", cmd).await.map(|_| ())
    }
}

fn admin_dsn(port: u16, password: &Secret) -> String {
    format!(
        "host=127.0.0.1 port={port} user={ADMIN_USER} dbname=postgres password='{}' connect_timeout=2",
        password.expose().replace('\\', "\\\\").replace('\'', "\\'")
    )
}

async fn init(
    dir: &Path,
    bin_dir: &Path,
    password: &Secret,
    run_as: Option<&RunAs>,
) -> process::Result<()> {
    // Beside the data folder: initdb wants that folder empty.
    let pwfile = dir.with_extension("pwfile");
    write_owned(&pwfile, password.expose(), run_as)?;
    if let Some(user) = run_as {
        user.chown_tree(dir)?;
    }
    let mut cmd = Command::new(bin_dir.join("initdb"));
    cmd.arg("-D")
        .arg(dir)
        .args([
            "-U",
            ADMIN_USER,
            "-A",
            "scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        ])
        .arg(format!("--pwfile={}", pwfile.display()))
        .current_dir(dir);
    if let Some(user) = run_as {
        user.apply(&mut cmd);
    }
    let result = process::run("initdb", cmd).await;
    let _ = std::fs::remove_file(&pwfile);
    result?;
    let conf = dir.join("postgresql.conf");
    let mut text = std::fs::read_to_string(&conf).map_err(io(conf.display().to_string()))?;
    text.push_str("\ninclude_if_exists = 'pglab.conf'\n");
    write_owned(&conf, &text, run_as)
}

/// Writes a file (mode 0600) owned by the server's user.
fn write_owned(path: &Path, text: &str, run_as: Option<&RunAs>) -> process::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path.display().to_string()))?;
    std::io::Write::write_all(&mut f, text.as_bytes()).map_err(io(path.display().to_string()))?;
    if let Some(user) = run_as {
        user.chown_tree(path)?;
    }
    Ok(())
}

impl From<tokio_postgres::Error> for StackError {
    fn from(e: tokio_postgres::Error) -> Self {
        StackError::Failed {
            what: "postgres".into(),
            detail: e.to_string(),
        }
    }
}
