//! Evaluating a whole lab on one database: the reference (to learn what is
//! expected) or a participant's (to score it).

use super::checks::{self, Expected, Failure, Limits};
use super::hidden;
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
    /// A hidden dataset could not be reached to learn the reference's rows.
    #[error("{0}")]
    Hidden(String),
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TaskOutcome {
    pub passed: bool,
    pub points: u32,
    pub reason: Option<String>,
    /// The lab's hint for the check that failed.
    pub hint: Option<String>,
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
    snapshot: Option<&str>,
) -> Result<Transaction<'a>, tokio_postgres::Error> {
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    // First in the transaction: it sees what the exporting one saw.
    let mut setup = snapshot.map_or_else(String::new, |id| {
        format!(
            "SET TRANSACTION SNAPSHOT {}; ",
            crate::ident::quote_literal(id)
        )
    });
    setup += &format!(
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
    let tx = begin(&mut client, &limits, None, None).await?;
    tx.batch_execute("SAVEPOINT c").await?;
    let mut out = Vec::new();
    let mut answers = Vec::new();
    for (t, task) in lab.tasks.iter().enumerate() {
        let mut per_task = Vec::new();
        for (c, check) in task.checks.iter().enumerate() {
            let expected = checks::expect(&tx, check, &limits).await;
            tx.batch_execute("ROLLBACK TO SAVEPOINT c").await?;
            if matches!(expected, Expected::Rows(..)) && !lab.datasets.is_empty() {
                if let Some(answer) =
                    hidden::answer(&tx, check, true, &lab.search_schemas()).await?
                {
                    answers.push((t, c, answer));
                }
            }
            per_task.push(expected);
        }
        out.push(per_task);
    }
    tx.commit().await?;
    for (t, c, answer) in answers {
        let check = &lab.tasks[t].checks[c];
        if !hidden::applies(check, &answer) {
            continue;
        }
        let ordered = matches!(
            check,
            crate::lab::Check::View { ordered: true, .. }
                | crate::lab::Check::Query { ordered: true, .. }
        );
        let wants = hidden::wants(server, lab, &answer, ordered, &limits)
            .await
            .map_err(EvalError::Hidden)?;
        if let Expected::Rows(_, hidden) = &mut out[t][c] {
            *hidden = wants;
        }
    }
    Ok(out)
}

/// Ends a backend from outside, through pglab's admin connection.
pub(super) async fn terminate(server: &PgServerSettings, pid: i32) {
    let ended = async {
        let admin = pgconn::connect(server, "postgres").await.ok()?;
        admin
            .execute("SELECT pg_terminate_backend($1)", &[&pid])
            .await
            .ok()
    };
    if ended.await.is_none() {
        tracing::warn!(server = %server.name, pid, "could not terminate a check's backend");
    }
}

/// Terminates a check's backend when dropped armed: when the scoring of a
/// database is abandoned (its time budget or the round's deadline), its
/// session must not go on running student code.
struct Terminator {
    server: PgServerSettings,
    pid: i32,
    armed: bool,
}

impl Drop for Terminator {
    fn drop(&mut self) {
        if self.armed {
            let (server, pid) = (self.server.clone(), self.pid);
            tokio::spawn(async move { terminate(&server, pid).await });
        }
    }
}

/// What a task gets when its database used up its sessions in this round
/// (`SESSIONS_PER_ROUND` checks had to be terminated): not run. The engine
/// keeps the task's previous result.
pub fn not_checked() -> TaskOutcome {
    TaskOutcome {
        passed: false,
        points: 0,
        reason: Some("not checked yet: another check of this database had to be stopped".into()),
        hint: None,
        class: Some(SKIPPED),
    }
}

/// The class of [`not_checked`] outcomes.
pub const SKIPPED: &str = "skipped";

/// Sessions a database may need in one round: a check that had to be
/// stopped ends its session, and the next tasks go on in a new one, up to
/// this many; tasks after that are [`not_checked`].
const SESSIONS_PER_ROUND: usize = 3;

/// Scores one participant (or group) database as its owner `role`, logged
/// in as the owner's checking role (which can become `role` and nobody
/// else). A check that had to be terminated from outside counts as a
/// timeout, and the next tasks are checked in a new session, so that one
/// runaway view does not hide the student's other work.
pub async fn score_database(
    server: &PgServerSettings,
    db: &str,
    role: &str,
    lab: &Lab,
    expected: &Expectations,
    limits: &Limits,
) -> Result<Vec<TaskOutcome>, EvalError> {
    let target = Target {
        server,
        db,
        role,
        snapshot: None,
    };
    score_target(&target, lab, expected, limits).await
}

/// A database to score, and the moment to see it at: a snapshot another
/// transaction exported (`pg_export_snapshot`), or now.
#[derive(Clone, Copy)]
pub struct Target<'a> {
    pub server: &'a PgServerSettings,
    pub db: &'a str,
    pub role: &'a str,
    pub snapshot: Option<&'a str>,
}

/// [`score_database`] at the target's moment.
pub async fn score_target(
    target: &Target<'_>,
    lab: &Lab,
    expected: &Expectations,
    limits: &Limits,
) -> Result<Vec<TaskOutcome>, EvalError> {
    let limits = &Limits {
        show_rows: lab.options.feedback_rows,
        ..*limits
    };
    let mut outcomes = Vec::with_capacity(lab.tasks.len());
    for _ in 0..SESSIONS_PER_ROUND {
        if outcomes.len() == lab.tasks.len() {
            break;
        }
        score_in_one_session(target, lab, expected, limits, &mut outcomes).await?;
    }
    outcomes.resize_with(lab.tasks.len(), not_checked);
    Ok(outcomes)
}

/// A task's outcome from its first failing check (index and failure), if
/// any: the failure's reason, and the lab's hint for that check.
fn outcome(task: &crate::lab::Task, failure: Option<(Failure, usize)>) -> TaskOutcome {
    let Some((f, j)) = failure else {
        return TaskOutcome {
            passed: true,
            points: task.points,
            reason: None,
            hint: None,
            class: None,
        };
    };
    TaskOutcome {
        passed: false,
        points: 0,
        reason: Some(f.reason),
        hint: task.hints.get(j).cloned().flatten(),
        class: Some(f.class),
    }
}

/// The failure of a check whose session had to be terminated.
fn stopped(limits: &Limits) -> Failure {
    Failure {
        reason: format!(
            "timed out after {} s and was stopped",
            limits.statement_timeout.as_secs_f64()
        ),
        class: "timeout",
    }
}

/// A participant's checking session, as one check needs it.
struct Session<'a> {
    tx: &'a Transaction<'a>,
    cancel: tokio_postgres::CancelToken,
    /// Postgres' statement_timeout normally ends a check; this outer limit
    /// catches checks whose student code turned that timeout off.
    hard_limit: Duration,
    pid: i32,
    target: &'a Target<'a>,
    lab: &'a Lab,
    schemas: Vec<String>,
}

/// One check in the session, then (when it passed and hidden datasets
/// judge it) on the hidden datasets; `true` with it when the session had
/// to be ended.
async fn run_check(
    s: &Session<'_>,
    check: &crate::lab::Check,
    want: &Expected,
    limits: &Limits,
) -> Result<(Result<(), Failure>, bool), tokio_postgres::Error> {
    let server = s.target.server;
    let verify = checks::verify(s.tx, check, want, limits);
    let result =
        match checks::guarded(&s.cancel, s.hard_limit, terminate(server, s.pid), verify).await {
            checks::Guarded::Done(result) => result,
            checks::Guarded::Ended => return Ok((Err(stopped(limits)), true)),
        };
    s.tx.batch_execute("ROLLBACK TO SAVEPOINT c").await?;
    let wants = match (&result, want) {
        (Ok(()), Expected::Rows(_, wants)) if !wants.is_empty() => wants,
        _ => return Ok((result, false)),
    };
    let read = hidden::answer(s.tx, check, false, &s.schemas);
    let answer =
        match checks::guarded(&s.cancel, s.hard_limit, terminate(server, s.pid), read).await {
            checks::Guarded::Ended => return Ok((Err(stopped(limits)), true)),
            checks::Guarded::Done(Err(e)) => {
                s.tx.batch_execute("ROLLBACK TO SAVEPOINT c").await?;
                let reason = format!("error: {}", pgconn::db_message(&e));
                return Ok((
                    Err(Failure {
                        reason,
                        class: "error",
                    }),
                    false,
                ));
            }
            checks::Guarded::Done(Ok(None)) => return Ok((Ok(()), false)),
            checks::Guarded::Done(Ok(Some(a))) => a,
        };
    let judged = hidden::verify(server, &s.lab.id, s.target.db, &answer, wants, limits).await;
    Ok((judged, false))
}

/// Checks tasks from `outcomes.len()` on in one session, until all are
/// done or a check had to be terminated (that session is then gone).
async fn score_in_one_session(
    target: &Target<'_>,
    lab: &Lab,
    expected: &Expectations,
    limits: &Limits,
    outcomes: &mut Vec<TaskOutcome>,
) -> Result<(), EvalError> {
    let Target {
        server,
        db,
        role,
        snapshot,
    } = *target;
    let owner = PgName::from_catalog(role.to_string());
    let mut client = crate::provision::postgres::connect_checker(server, db, &owner).await?;
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await?
        .get(0);
    let mut terminator = Terminator {
        server: server.clone(),
        pid,
        armed: true,
    };
    let cancel = client.cancel_token();
    let tx = begin(&mut client, limits, Some(role), snapshot).await?;
    // Each check ends with a rollback to this savepoint: whatever it did
    // (an error, a role or setting changed by student code) is undone, and
    // the role set in `begin` is back.
    tx.batch_execute("SAVEPOINT c").await?;
    let session = Session {
        tx: &tx,
        cancel,
        hard_limit: limits.statement_timeout + Duration::from_secs(1),
        pid,
        target,
        lab,
        schemas: lab.search_schemas(),
    };
    let first = outcomes.len();
    for (task, expected) in lab.tasks.iter().zip(expected).skip(first) {
        let mut failure: Option<(Failure, usize)> = None;
        let mut ended = false;
        for (j, (check, want)) in task.checks.iter().zip(expected).enumerate() {
            let (result, stopped) = run_check(&session, check, want, limits).await?;
            ended = stopped;
            if let Err(f) = result {
                failure = Some((f, j));
                break;
            }
        }
        outcomes.push(outcome(task, failure));
        if ended {
            // Terminated already; the session is gone.
            terminator.armed = false;
            return Ok(());
        }
    }
    tx.commit().await?;
    terminator.armed = false;
    Ok(())
}
