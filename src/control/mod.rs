//! pglab's own state in a control database on Postgres, with versioned
//! migrations.

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

/// A lab's apply lock: held by one apply at a time, in any pglab process;
/// released by `release`, or when dropped (its own session ends, a moment
/// later).
pub struct ApplyLock {
    session: tokio_postgres::Client,
    lab: crate::ident::LabId,
    store: Store,
}

/// How long an apply goes on without its lock's session (the control
/// database failing over) before it stops.
const LOCK_REGAIN: std::time::Duration = std::time::Duration::from_secs(30);

impl ApplyLock {
    /// Runs `work` under the lock. The lock lives as long as its session:
    /// when that ends (a failover to a standby ends every session), the lock
    /// is taken again on a new one; when another apply took it meanwhile,
    /// or the control database stays away for `LOCK_REGAIN`, `work` is
    /// stopped at its next await (as a crash would stop it; applies are
    /// made to be run again) and the error says why.
    pub async fn guard<T>(
        &mut self,
        work: impl std::future::Future<Output = T>,
    ) -> Result<T, StoreError> {
        tokio::pin!(work);
        let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
        let mut lost_since: Option<std::time::Instant> = None;
        loop {
            tokio::select! {
                out = &mut work => return Ok(out),
                _ = every.tick() => {}
            }
            if !self.session.is_closed() {
                continue;
            }
            let since = *lost_since.get_or_insert_with(std::time::Instant::now);
            match self.store.try_apply_lock(&self.lab).await {
                Ok(Some(session)) => {
                    tracing::warn!(lab = %self.lab, "the apply lock's session ended: lock taken again");
                    self.session = session;
                    lost_since = None;
                }
                Ok(None) => return Err(StoreError::ApplyLockLost(self.lab.clone())),
                Err(e) if since.elapsed() >= LOCK_REGAIN => return Err(e),
                Err(e) => {
                    tracing::warn!(lab = %self.lab, error = %e, "the apply lock's session ended: taking it again")
                }
            }
        }
    }

    /// Releases the lock before the session ends: the next apply finds it
    /// free at once.
    pub async fn release(self) {
        let _ = self
            .session
            .execute(
                "SELECT pg_advisory_unlock(hashtext('pglab apply ' || $1))",
                &[&self.lab],
            )
            .await;
    }
}

/// Takes PUBLIC's rights on the control database and opens it, unless that
/// is so already: every `pglab` command opens the store, and two sessions
/// changing the same `pg_database` row at once fail ("tuple concurrently
/// updated"), so a command started next to `pglab serve` must not write it.
async fn close_to_public(admin: &tokio_postgres::Client, db: &str) -> Result<(), StoreError> {
    for attempt in 1.. {
        let ready: bool = admin
            .query_one(
                "SELECT datallowconn AND datacl IS NOT NULL \
                   AND NOT EXISTS (SELECT 1 FROM aclexplode(datacl) WHERE grantee = 0) \
                 FROM pg_database WHERE datname = $1",
                &[&db],
            )
            .await?
            .get(0);
        if ready {
            return Ok(());
        }
        let made = admin
            .batch_execute(&format!(
                "REVOKE ALL ON DATABASE {db} FROM PUBLIC; ALTER DATABASE {db} ALLOW_CONNECTIONS true;",
                db = quote_ident(db)
            ))
            .await;
        match made {
            Ok(()) => return Ok(()),
            // Another command did the same at the same moment: look again.
            Err(e)
                if attempt < 5
                    && e.as_db_error()
                        .is_some_and(|d| d.message().contains("concurrently updated")) =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(50 * attempt)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    unreachable!("the loop returns")
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

    /// Takes the apply lock of `lab`, unless another apply (a job, another
    /// `pglab apply`) holds it: `None` then.
    pub async fn lock_apply(
        &self,
        lab: &crate::ident::LabId,
    ) -> Result<Option<ApplyLock>, StoreError> {
        Ok(self.try_apply_lock(lab).await?.map(|session| ApplyLock {
            session,
            lab: lab.clone(),
            store: self.clone(),
        }))
    }

    /// A session of its own holding `lab`'s apply lock, unless another
    /// holds the lock.
    async fn try_apply_lock(
        &self,
        lab: &crate::ident::LabId,
    ) -> Result<Option<tokio_postgres::Client>, StoreError> {
        let session = self.session(self.session_config()).await?;
        let locked: bool = session
            .query_one(
                "SELECT pg_try_advisory_lock(hashtext('pglab apply ' || $1))",
                &[lab],
            )
            .await?
            .get(0);
        Ok(locked.then_some(session))
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
