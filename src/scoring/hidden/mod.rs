//! Hidden datasets (issue 20): a `view` or `query` check that passes on
//! the participant's own data is also run on each of the lab's datasets.
//! The participant's answer (the view, and the views it rests on, read in
//! their own database) is created in the dataset's copy on their server,
//! as the hidden role, in a transaction that is rolled back, and its rows
//! are compared with the reference's answer there. The participant learns
//! only "fails on a hidden dataset". Their own functions are not copied: a
//! function can `SET` what other sessions see; a view that uses one fails
//! with a reason that says so.

use super::checks::{self, Failure, Limits};
use super::rows::{self, RowSet};
use crate::ident::quote_ident;
use crate::provision::datasets;
use crate::settings::PgServerSettings;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

/// The reason a participant reads.
pub const REASON: &str = "passes on your data, fails on a hidden dataset";
/// Its class, for pglab's error metric.
pub const CLASS: &str = "hidden_dataset";

mod answer;
pub use answer::{answer, applies, Answer, OWN_FUNCTIONS, TOO_LARGE};

/// The reference's rows on each dataset of `lab` on `server` (`None`
/// where the reference's answer itself fails there: that dataset judges
/// nothing for the check); `Err` when a dataset could not be reached.
pub async fn wants(
    server: &PgServerSettings,
    lab: &crate::lab::Lab,
    answer: &Answer,
    ordered: bool,
    limits: &Limits,
) -> Result<Vec<Option<RowSet>>, String> {
    let mut out = vec![];
    for i in 0..lab.datasets.len() {
        let db = datasets::dataset_db(&lab.id, i);
        out.push(match run(server, &db, answer, ordered, limits).await {
            Ok(rows) => Some(rows),
            Err(Run::Unknown(why)) => return Err(format!("hidden dataset {}: {why}", i + 1)),
            Err(Run::Failed(why)) => {
                tracing::warn!(lab = %lab.id, dataset = i + 1, %why, "the reference's answer fails on a hidden dataset");
                None
            }
            Err(Run::TimedOut) => {
                tracing::warn!(lab = %lab.id, dataset = i + 1, "the reference's answer times out on a hidden dataset");
                None
            }
        });
    }
    Ok(out)
}

/// Why a run gave no rows: the answer failed there (its error), ran out
/// of time (then its database rests like one whose checks time out), or
/// pglab could not tell (no connection, the copy being rebuilt).
#[derive(Debug)]
pub enum Run {
    Failed(String),
    TimedOut,
    Unknown(String),
}

/// Errors that say nothing about the answer: the session itself ended
/// (no SQLSTATE: the connection closed; the server shutting down or the
/// copy being rebuilt). Everything else a run meets (a missing object, a
/// lock wait, a deadlock) the answer can cause on purpose: it fails.
fn unknown(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    match e.code() {
        None => true,
        Some(code) => {
            [
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
            ]
            .contains(code)
                || code.code().starts_with("08")
        }
    }
}

fn classify(e: tokio_postgres::Error) -> Run {
    let timed_out = e.code() == Some(&tokio_postgres::error::SqlState::QUERY_CANCELED);
    let why = crate::pgconn::db_message(&e);
    match (unknown(&e), timed_out) {
        (true, _) => Run::Unknown(why),
        (false, true) => Run::TimedOut,
        (false, false) => Run::Failed(why),
    }
}

/// Runs at once on one server, per pglab process (the hidden role's
/// connection limit holds several processes' worth).
const RUNS_PER_SERVER: usize = 4;

fn permits(server: &str) -> Arc<Semaphore> {
    static ALL: Mutex<Option<HashMap<String, Arc<Semaphore>>>> = Mutex::new(None);
    let mut all = ALL.lock().expect("permits");
    all.get_or_insert_with(HashMap::new)
        .entry(server.to_string())
        .or_insert_with(|| Arc::new(Semaphore::new(RUNS_PER_SERVER)))
        .clone()
}

/// Runs `answer` in dataset database `db` of `server` as the hidden role:
/// its views created as temporary views, then (read-only) its query;
/// rolled back whatever happens. A run that outlives its limit is
/// cancelled, then its backend terminated from outside.
pub async fn run(
    server: &PgServerSettings,
    db: &str,
    answer: &Answer,
    ordered: bool,
    limits: &Limits,
) -> Result<RowSet, Run> {
    let semaphore = permits(&server.name);
    let wait = limits.statement_timeout * 2 + Duration::from_secs(1);
    let _permit = match tokio::time::timeout(wait, semaphore.acquire()).await {
        Ok(Ok(permit)) => permit,
        Ok(Err(e)) => return Err(Run::Unknown(e.to_string())),
        Err(_) => return Err(Run::Unknown("every run on this server is busy".into())),
    };
    let client = datasets::connect_hidden(server, db)
        .await
        .map_err(|e| Run::Unknown(e.to_string()))?;
    let pid: i32 = client
        .query_one("SELECT pg_catalog.pg_backend_pid()", &[])
        .await
        .map_err(classify)?
        .get(0);
    let path: Vec<String> = answer.schemas.iter().map(|s| quote_ident(s)).collect();
    let work = async {
        client
            .batch_execute(&format!(
                "BEGIN; SET LOCAL ROLE {}; SET LOCAL statement_timeout = {}; SET LOCAL lock_timeout = {}; SET LOCAL search_path = {};",
                datasets::DATASET_ROLE,
                limits.statement_timeout.as_millis(),
                limits.lock_timeout.as_millis(),
                path.join(", ")
            ))
            .await?;
        // One statement each, by the extended protocol: a definition is
        // never more than one statement.
        for (name, definition) in &answer.views {
            let create = format!(
                "CREATE TEMPORARY VIEW {} AS {}",
                quote_ident(name),
                rows::strip_sql(definition)
            );
            client.execute(create.as_str(), &[]).await?;
        }
        client
            .batch_execute("SET LOCAL transaction_read_only = on")
            .await?;
        let rows = rows::fetch(&client, &answer.query, ordered, limits.max_rows).await;
        client.batch_execute("ROLLBACK").await?;
        Ok::<_, tokio_postgres::Error>(rows)
    };
    let limit = limits.statement_timeout * 2 + Duration::from_secs(1);
    let end = super::evaluate::terminate(server, pid);
    match checks::guarded(&client.cancel_token(), limit, end, work).await {
        checks::Guarded::Done(Ok(Ok(rows))) => Ok(rows),
        checks::Guarded::Done(Ok(Err(rows::FetchError::TooMany(n)))) => {
            Err(Run::Failed(format!("more than {n} rows")))
        }
        checks::Guarded::Done(Ok(Err(rows::FetchError::Db(e))) | Err(e)) => Err(classify(e)),
        checks::Guarded::Ended => Err(Run::TimedOut),
    }
}

/// Verdicts already reached, by (server, database, dataset, answer and
/// expected rows): a database whose answer did not change is not run on
/// the datasets again.
static VERDICTS: Mutex<Option<HashMap<[u8; 32], bool>>> = Mutex::new(None);
/// Verdicts kept at most (then all are forgotten and run again).
const MOST_VERDICTS: usize = 100_000;

fn verdict_key(server: &str, db: &str, dataset: &str, answer: &Answer, want: &RowSet) -> [u8; 32] {
    let mut d = Sha256::new();
    for part in [server, db, dataset] {
        d.update((part.len() as u64).to_le_bytes());
        d.update(part.as_bytes());
    }
    d.update(answer.digest());
    d.update((want.columns as u64).to_le_bytes());
    d.update([u8::from(want.ordered)]);
    for r in &want.rows {
        d.update((r.len() as u64).to_le_bytes());
        d.update(r.as_bytes());
    }
    d.finalize().into()
}

/// Whether the participant's `answer` gives the reference's rows on every
/// dataset (`wants`, in the lab's order; `None` where the reference itself
/// failed there: skipped). `Err` with the reason a participant reads.
pub async fn verify(
    server: &PgServerSettings,
    lab: &crate::ident::LabId,
    db: &str,
    answer: &Answer,
    wants: &[Option<RowSet>],
    limits: &Limits,
) -> Result<(), Failure> {
    if let (Some(why), true) = (answer.refused, wants.iter().any(Option::is_some)) {
        return Err(Failure {
            reason: why.into(),
            class: CLASS,
        });
    }
    for (i, want) in wants.iter().enumerate() {
        let Some(want) = want else { continue };
        let dataset = datasets::dataset_db(lab, i);
        let key = verdict_key(&server.name, db, &dataset, answer, want);
        let known = VERDICTS
            .lock()
            .expect("verdicts")
            .as_ref()
            .and_then(|v| v.get(&key).copied());
        let passed = match known {
            Some(p) => p,
            None => {
                let passed = match run(server, &dataset, answer, want.ordered, limits).await {
                    Ok(got) => rows::compare(&got, want, false).is_none(),
                    Err(Run::Failed(why)) => {
                        tracing::debug!(%db, %dataset, %why, "an answer fails on a hidden dataset");
                        false
                    }
                    // Not kept: the database rests, then is checked again.
                    Err(Run::TimedOut) => {
                        return Err(Failure {
                            reason: REASON.into(),
                            class: "timeout",
                        })
                    }
                    // Not known: not kept, checked again after a rest.
                    Err(Run::Unknown(why)) => {
                        tracing::warn!(%db, %dataset, %why, "cannot run an answer on a hidden dataset");
                        return Err(Failure {
                            reason: "not checked yet on the hidden datasets".into(),
                            class: super::evaluate::SKIPPED,
                        });
                    }
                };
                let mut v = VERDICTS.lock().expect("verdicts");
                let map = v.get_or_insert_with(HashMap::new);
                if map.len() >= MOST_VERDICTS {
                    map.clear();
                }
                map.insert(key, passed);
                passed
            }
        };
        if !passed {
            return Err(Failure {
                reason: REASON.into(),
                class: CLASS,
            });
        }
    }
    Ok(())
}
