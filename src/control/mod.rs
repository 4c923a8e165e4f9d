//! pglab's own state in a control database on Postgres, with versioned
//! migrations.

mod apply_lock;
mod board_rows;
mod evidence;
mod exports;
mod history;
mod jobs;
mod leases;
mod logins;
mod mail;
mod moves;
mod records;
mod scores;
mod servers;
mod submissions;
mod tokens;
mod types;

pub use apply_lock::ApplyLock;
pub use board_rows::*;
pub use evidence::*;
pub use exports::*;
pub use history::*;
pub use jobs::*;
pub use leases::*;
pub use mail::*;
pub use records::*;
pub use scores::*;
pub use servers::*;
pub use submissions::*;
pub use tokens::*;
pub use types::{JobKind, JobStatus, MailKind, MailStatus, ServerName, SnapshotKind, TokenScope};

use crate::ident::quote_ident;
use crate::pgconn;
use crate::settings::Settings;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

/// Migrations in order; a version is never edited once released.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "init", include_str!("migrations/0001_init.sql")),
    (2, "scores", include_str!("migrations/0002_scores.sql")),
    (
        3,
        "submissions",
        include_str!("migrations/0003_submissions.sql"),
    ),
    (4, "jobs", include_str!("migrations/0004_jobs.sql")),
    (
        5,
        "lab sources",
        include_str!("migrations/0005_lab_sources.sql"),
    ),
    (
        6,
        "reset jobs",
        include_str!("migrations/0006_reset_jobs.sql"),
    ),
    (7, "history", include_str!("migrations/0007_history.sql")),
    (8, "evidence", include_str!("migrations/0008_evidence.sql")),
    (9, "exports", include_str!("migrations/0009_exports.sql")),
    (
        10,
        "api tokens",
        include_str!("migrations/0010_api_tokens.sql"),
    ),
    (11, "mail", include_str!("migrations/0011_mail.sql")),
    (
        12,
        "mail waits",
        include_str!("migrations/0012_mail_waits.sql"),
    ),
    (
        13,
        "server health",
        include_str!("migrations/0013_server_health.sql"),
    ),
    (
        14,
        "placement",
        include_str!("migrations/0014_placement.sql"),
    ),
    (
        15,
        "board rows",
        include_str!("migrations/0015_board_rows.sql"),
    ),
    (
        16,
        "login attempts",
        include_str!("migrations/0016_login_attempts.sql"),
    ),
    (
        17,
        "lab datasets",
        include_str!("migrations/0017_lab_datasets.sql"),
    ),
];

/// Serialises migrations between pglab replicas that start together.
const MIGRATION_LOCK: i64 = 0x0070_676c_6162;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Connect(#[from] pgconn::ConnectError),
    #[error("control database: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("control database: {}", pgconn::db_message(.0))]
    Db(#[from] tokio_postgres::Error),
    #[error("control database: migration {version} ({name}) failed: {}", pgconn::db_message(.source))]
    Migration {
        version: i32,
        name: &'static str,
        source: tokio_postgres::Error,
    },
    #[error(
        "control database is at version {0}, newer than this pglab knows ({1}): upgrade pglab"
    )]
    TooNew(i32, i32),
    #[error("the apply lock of lab {0} was lost (the control database failed over, or its session ended) and another apply holds it now: this one stopped; run it again when that has ended")]
    ApplyLockLost(crate::ident::LabId),
    #[error("control database: {what} {key:?} cannot be read: {reason}")]
    BadRecord {
        what: &'static str,
        key: String,
        reason: String,
    },
}

#[derive(Clone)]
pub struct Store {
    pool: Pool,
    /// For sessions of their own (a lock held for as long as they live).
    server: crate::settings::PgServerSettings,
    database: String,
    /// Streaming standbys of the control database's server, tried after it.
    standbys: Vec<(String, u16)>,
}

/// Takes PUBLIC's rights on the control database and opens it, unless that
/// is so already: every `pglab` command opens the store, and two sessions
/// changing the same `pg_database` row at once fail ("tuple concurrently
/// updated"), so a command started next to `pglab serve` must not write it.
async fn close_to_public(admin: &tokio_postgres::Client, db: &str) -> Result<(), StoreError> {
    let ready: bool = admin
        .query_one(
            "SELECT datallowconn AND datacl IS NOT NULL \
               AND NOT EXISTS (SELECT 1 FROM aclexplode(datacl) WHERE grantee = 0) \
             FROM pg_database WHERE datname = $1",
            &[&db],
        )
        .await?
        .get(0);
    if !ready {
        let sql = format!(
            "REVOKE ALL ON DATABASE {db} FROM PUBLIC; ALTER DATABASE {db} ALLOW_CONNECTIONS true;",
            db = quote_ident(db)
        );
        pgconn::execute_raced(admin, &sql).await?;
    }
    Ok(())
}

impl Store {
    /// Creates the control database if needed, then opens a pool on it.
    pub async fn open(settings: &Settings) -> Result<Self, StoreError> {
        let server = settings
            .server(&settings.control.server)
            .expect("validated: control server exists");
        let db = &settings.control.database;
        let standbys = settings.control.standby_addresses();
        let admin = pgconn::connect_config(
            server,
            pgconn::control_config(server, "postgres", &standbys),
        )
        .await?;
        let exists = admin
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[db])
            .await?
            .is_some();
        if !exists {
            // Made closed, so that nobody connects before the REVOKE below.
            match admin
                .batch_execute(&format!(
                    "CREATE DATABASE {} ALLOW_CONNECTIONS false",
                    quote_ident(db)
                ))
                .await
            {
                Ok(()) => {}
                // Another replica created it first.
                Err(e)
                    if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) => {}
                Err(e) => return Err(e.into()),
            }
        }
        close_to_public(&admin, db).await?;
        let manager = Manager::from_config(
            pgconn::control_config(server, db, &standbys),
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(8)
            .build()
            .expect("pool without runtime-specific options");
        Ok(Self {
            pool,
            server: server.clone(),
            database: db.clone(),
            standbys,
        })
    }

    /// A session of its own in the control database, with `config` (made
    /// by `pgconn::control_config`).
    async fn session(
        &self,
        config: tokio_postgres::Config,
    ) -> Result<tokio_postgres::Client, StoreError> {
        Ok(pgconn::connect_config(&self.server, config).await?)
    }

    /// The config of a session of its own in the control database.
    fn session_config(&self) -> tokio_postgres::Config {
        pgconn::control_config(&self.server, &self.database, &self.standbys)
    }

    pub async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        Ok(self.pool.get().await?)
    }

    /// Applies pending migrations; returns the versions applied.
    pub async fn migrate(&self) -> Result<Vec<i32>, StoreError> {
        self.migrate_until(i32::MAX).await
    }

    /// Applies pending migrations up to version `last` (tests of upgrades
    /// start from an older version).
    pub async fn migrate_until(&self, last: i32) -> Result<Vec<i32>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS pglab_migrations (
                 version integer PRIMARY KEY,
                 name text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await?;
        let current: i32 = tx
            .query_one(
                "SELECT coalesce(max(version), 0) FROM pglab_migrations",
                &[],
            )
            .await?
            .get(0);
        let known = MIGRATIONS.last().map_or(0, |m| m.0);
        if current > known {
            return Err(StoreError::TooNew(current, known));
        }
        let mut applied = vec![];
        for &(version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > current && m.0 <= last) {
            tx.batch_execute(sql)
                .await
                .map_err(|source| StoreError::Migration {
                    version,
                    name,
                    source,
                })?;
            tx.execute(
                "INSERT INTO pglab_migrations (version, name) VALUES ($1, $2)",
                &[&version, &name],
            )
            .await?;
            applied.push(version);
        }
        tx.commit().await?;
        Ok(applied)
    }

    pub async fn open_migrated(settings: &Settings) -> Result<Self, StoreError> {
        let store = Self::open(settings).await?;
        store.migrate().await?;
        Ok(store)
    }
}
