//! Connections to the configured Postgres servers as pglab's admin.

use crate::settings::PgServerSettings;
use std::time::Duration;
use tokio_postgres::{Client, Config, NoTls};

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The admin's connection settings. `role=none` as a startup option wins
/// over a database's own defaults: a student who owns a database can run
/// `ALTER DATABASE ... SET role = <themselves>`, which would otherwise make
/// every admin session in it start as them (and let their code, run by
/// that session, `SET ROLE NONE` back to the superuser).
pub fn config(server: &PgServerSettings, dbname: &str) -> Config {
    let mut c = base(server, dbname);
    c.options("-c role=none");
    c
}

fn base(server: &PgServerSettings, dbname: &str) -> Config {
    let mut c = Config::new();
    c.host(&server.host)
        .port(server.port)
        .user(&server.admin_user)
        .password(server.admin_password.expose())
        .dbname(dbname)
        .application_name("pglab")
        .connect_timeout(CONNECT_TIMEOUT);
    c
}

#[derive(Debug, thiserror::Error)]
#[error(
    "cannot connect to Postgres server {server:?} ({host}:{port}) database {dbname:?}: {source}"
)]
pub struct ConnectError {
    pub server: String,
    pub host: String,
    pub port: u16,
    pub dbname: String,
    #[source]
    pub source: tokio_postgres::Error,
}

/// One admin connection; its driver task ends when the client is dropped.
pub async fn connect(server: &PgServerSettings, dbname: &str) -> Result<Client, ConnectError> {
    connect_with(server, config(server, dbname)).await
}

/// An admin connection with these startup options (which must set the
/// role, `-c role=none` or the role to act as, for the reason of
/// [`config`]): settings without a round trip of their own.
pub async fn connect_with_options(
    server: &PgServerSettings,
    dbname: &str,
    options: &str,
) -> Result<Client, ConnectError> {
    debug_assert!(options.contains("-c role="));
    let mut c = base(server, dbname);
    c.options(options);
    connect_with(server, c).await
}

/// The admin's config for the control database on `server`, then on each
/// of its `standbys`: the first that accepts writes is used, so a
/// promoted standby is followed by every new connection.
pub fn control_config(
    server: &PgServerSettings,
    dbname: &str,
    standbys: &[(String, u16)],
) -> Config {
    let mut c = config(server, dbname);
    for (host, port) in standbys {
        c.host(host).port(*port);
    }
    // A primary that stops answering (power, network) is given up within
    // seconds, not after TCP's quarter of an hour.
    c.keepalives(true)
        .keepalives_idle(Duration::from_secs(5))
        .keepalives_interval(Duration::from_secs(2))
        .keepalives_retries(3)
        .tcp_user_timeout(Duration::from_secs(15));
    if !standbys.is_empty() {
        c.target_session_attrs(tokio_postgres::config::TargetSessionAttrs::ReadWrite);
    }
    c
}

/// A connection with a config of the caller's (see [`control_config`]).
pub async fn connect_config(
    server: &PgServerSettings,
    config: Config,
) -> Result<Client, ConnectError> {
    connect_with(server, config).await
}

/// A connection as a login role other than the admin (a restore job's
/// role, a participant's checking role).
pub async fn connect_as(
    server: &PgServerSettings,
    dbname: &str,
    user: &str,
    password: &str,
    application: &str,
) -> Result<Client, ConnectError> {
    // The role's own defaults apply (a checking role starts as its owner).
    let mut c = base(server, dbname);
    c.user(user)
        .password(password)
        .application_name(application);
    connect_with(server, c).await
}

async fn connect_with(server: &PgServerSettings, config: Config) -> Result<Client, ConnectError> {
    let dbname = config.get_dbname().unwrap_or_default().to_string();
    let (client, conn) = config.connect(NoTls).await.map_err(|source| ConnectError {
        server: server.name.clone(),
        host: server.host.clone(),
        port: server.port,
        dbname,
        source,
    })?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "postgres connection ended");
        }
    });
    Ok(client)
}

/// The message of a Postgres error (without the "db error:" wrapper).
pub fn db_message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map_or_else(|| e.to_string(), |d| d.message().to_string())
}

/// A server error in the words psql would print.
pub fn error_text(e: &tokio_postgres::Error) -> String {
    let Some(db) = e.as_db_error() else {
        return e.to_string();
    };
    let mut text = format!("{}:  {}", db.severity(), db.message());
    for (label, part) in [
        ("DETAIL", db.detail()),
        ("HINT", db.hint()),
        ("CONTEXT", db.where_()),
    ] {
        if let Some(part) = part {
            text.push_str(&format!("\n{label}:  {part}"));
        }
    }
    text
}

/// Runs `sql` (catalog changes that are the same when made twice), again
/// when another session made the same change at the same moment: every
/// pglab command and replica start makes them, and two sessions changing
/// one catalog row at once fail ("tuple concurrently updated").
pub async fn execute_raced(
    client: &tokio_postgres::Client,
    sql: &str,
) -> Result<(), tokio_postgres::Error> {
    for attempt in 1u64.. {
        match client.batch_execute(sql).await {
            Err(e) if attempt < 5 && raced(&e) => {
                tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
            }
            done => return done,
        }
    }
    unreachable!("the loop returns")
}

/// Whether `e` says that another session made the same catalog change at
/// the same moment (a role created twice, a row updated twice).
fn raced(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|d| {
        d.code() == &tokio_postgres::error::SqlState::UNIQUE_VIOLATION
            || d.message().contains("concurrently updated")
    })
}
