//! Evaluating a whole lab on one database: the reference (to learn what is
//! expected) or a participant's (to score it).

use super::checks::{self, Expected, Failure, Limits};
use crate::ident::{quote_ident, PgName};

use crate::lab::Lab;
use crate::pgconn::{self, ConnectError};
use crate::settings::PgServerSettings;
use std::time::Duration;
use tokio_postgres::{Client, IsolationLevel, Transaction};

/// How long checks on the lab master's own reference may take.
const REFERENCE_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("{}", pgconn::db_message(.0))]
    Db(#[from] tokio_postgres::Error),
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TaskOutcome {
    pub passed: bool,
    pub points: u32,
    pub reason: Option<String>,
    /// Class of the failure (`wrong`, `timeout`, `error`, ...), for metrics.
    #[serde(skip)]
    pub class: Option<&'static str>,
}

/// Expectations per task and check, from the lab's reference database.
pub type Expectations = Vec<Vec<Expected>>;

async fn begin<'a>(
    client: &'a mut Client,
    limits: &Limits,
    role: Option<&str>,
) -> Result<Transaction<'a>, tokio_postgres::Error> {
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let mut setup = format!(
        "SET LOCAL statement_timeout = {}; SET LOCAL lock_timeout = {}; SET LOCAL search_path = public;",
        limits.statement_timeout.as_millis(),
        limits.lock_timeout.as_millis()
    );
    if let Some(role) = role {
        setup.push_str(&format!(" SET LOCAL ROLE {};", quote_ident(role)));
    }
    tx.batch_execute(&setup).await?;
    Ok(tx)
}

pub async fn expectations(
    server: &PgServerSettings,
    lab: &Lab,
    limits: &Limits,
) -> Result<Expectations, EvalError> {
    let mut client = pgconn::connect(server, PgName::reference_db(&lab.id).as_str()).await?;
    let limits = Limits {
        statement_timeout: REFERENCE_TIMEOUT,
        ..*limits
    };
    let tx = begin(&mut client, &limits, None).await?;
    tx.batch_execute("SAVEPOINT c").await?;
    let mut out = Vec::new();
    for task in &lab.tasks {
        let mut per_task = Vec::new();
        for check in &task.checks {
            per_task.push(checks::expect(&tx, check, &limits).await);
            tx.batch_execute("ROLLBACK TO SAVEPOINT c").await?;
        }
        out.push(per_task);
    }
    tx.commit().await?;
    Ok(out)
}

/// Scores one participant (or group) database as its owner `role`.
pub async fn score_database(
    server: &PgServerSettings,
    db: &str,
    role: &str,
    lab: &Lab,
    expected: &Expectations,
    limits: &Limits,
) -> Result<Vec<TaskOutcome>, EvalError> {
    let mut client = pgconn::connect_scorer(server, db).await?;
    let cancel = client.cancel_token();
    // Postgres' statement_timeout normally ends a check; this outer limit
    // catches checks whose student code turned that timeout off.
    let hard_limit = limits.statement_timeout + Duration::from_secs(2);
    let tx = begin(&mut client, limits, Some(role)).await?;
    // Each check ends with a rollback to this savepoint: whatever it did
    // (an error, a role or setting changed by student code) is undone, and
    // the role set in `begin` is back.
    tx.batch_execute("SAVEPOINT c").await?;
    let mut outcomes = Vec::with_capacity(lab.tasks.len());
    for (task, expected) in lab.tasks.iter().zip(expected) {
        let mut failure: Option<Failure> = None;
        for (check, want) in task.checks.iter().zip(expected) {
            let result = checks::guarded(
                &cancel,
                hard_limit,
                checks::verify(&tx, check, want, limits),
            )
            .await;
            tx.batch_execute("ROLLBACK TO SAVEPOINT c").await?;
            if let Err(f) = result {
                failure = Some(f);
                break;
            }
        }
        outcomes.push(TaskOutcome {
            passed: failure.is_none(),
            points: if failure.is_none() { task.points } else { 0 },
            class: failure.as_ref().map(|f| f.class),
            reason: failure.map(|f| f.reason),
        });
    }
    tx.commit().await?;
    Ok(outcomes)
}
