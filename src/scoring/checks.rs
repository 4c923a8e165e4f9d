//! Running a lab's checks: once on the reference database to learn what is
//! expected, then on each participant database, as the participant's role,
//! read-only, with timeouts and a row cap.

use super::inspect;
use super::rows::{self, FetchError, RowSet};
use crate::ident::quote_ident;
use crate::lab::{Check, Compare, ObjectName};
use std::time::Duration;
use tokio_postgres::error::SqlState;
use tokio_postgres::{CancelToken, GenericClient, NoTls};

/// What a participant's database must show for one check.
#[derive(Debug, Clone)]
pub enum Expected {
    Table {
        columns: Vec<(String, String)>,
        primary_key: Vec<String>,
        foreign_keys: Vec<String>,
        rows: Option<RowSet>,
    },
    /// The rows, and the rows on each hidden dataset where they judge the
    /// check (empty: no dataset does).
    Rows(RowSet, Vec<Option<RowSet>>),
    /// `sql:` checks need nothing from the reference.
    True,
    /// The check fails on the reference itself: the lab needs fixing.
    Broken(String),
}

/// Limits that keep a check on a hostile database bounded.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub statement_timeout: Duration,
    pub lock_timeout: Duration,
    pub max_rows: usize,
    /// Whether a reason may quote the participant's own unexpected rows
    /// (the lab's `feedback: rows`); never the reference's.
    pub show_rows: bool,
}

impl Limits {
    /// The configured limits (`show_rows` is set per lab by the scorer).
    pub fn of(s: &crate::settings::ScoringSettings) -> Self {
        Limits {
            statement_timeout: Duration::from_millis(s.statement_timeout_ms),
            lock_timeout: Duration::from_millis(s.lock_timeout_ms),
            max_rows: s.max_rows,
            show_rows: false,
        }
    }
}

/// Why a check failed, in words a student may read; `class` groups them
/// for pglab's own error metric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: String,
    pub class: &'static str,
}

impl Failure {
    fn wrong(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            class: "wrong",
        }
    }
}

/// Characters of an error message kept in a reason (student code chooses
/// its exceptions' texts, and reasons are stored and shown).
const REASON_LIMIT: usize = 300;

fn clip(message: &str) -> String {
    match message.char_indices().nth(REASON_LIMIT) {
        Some((at, _)) => format!("{}…", &message[..at]),
        None => message.to_string(),
    }
}

fn describe(e: &tokio_postgres::Error, limits: &Limits) -> Failure {
    match e.code() {
        Some(c) if *c == SqlState::QUERY_CANCELED => Failure {
            reason: format!(
                "timed out after {} s",
                limits.statement_timeout.as_secs_f64()
            ),
            class: "timeout",
        },
        Some(c) if *c == SqlState::LOCK_NOT_AVAILABLE => Failure {
            reason: format!(
                "waited more than {} s for a lock",
                limits.lock_timeout.as_secs_f64()
            ),
            class: "lock_timeout",
        },
        _ => Failure {
            reason: format!("error: {}", clip(&crate::pgconn::db_message(e))),
            class: "error",
        },
    }
}

fn fetch_failure(e: FetchError, limits: &Limits) -> Failure {
    match e {
        FetchError::TooMany(n) => Failure {
            reason: format!("more than {n} rows"),
            class: "too_many_rows",
        },
        FetchError::Db(e) => describe(&e, limits),
    }
}

fn table_rows_sql(name: &ObjectName, columns: &[(String, String)]) -> String {
    let cols: Vec<String> = columns.iter().map(|c| quote_ident(&c.0)).collect();
    format!(
        "SELECT {} FROM {}",
        cols.join(", "),
        inspect::regclass_text(name)
    )
}

/// Learns on the reference database what `check` expects.
pub async fn expect<C: GenericClient>(client: &C, check: &Check, limits: &Limits) -> Expected {
    let broken = |e: &tokio_postgres::Error| Expected::Broken(crate::pgconn::db_message(e));
    match check {
        Check::Table { name, compare } => {
            let inspect::TableShape {
                columns,
                primary_key,
                foreign_keys,
            } = match inspect::table(client, name).await {
                Ok(Some(shape)) => shape,
                Ok(None) => return Expected::Broken(format!("the reference has no table {name}")),
                Err(e) => return broken(&e),
            };
            let rows = if compare.contains(&Compare::Rows) {
                match rows::fetch(
                    client,
                    &table_rows_sql(name, &columns),
                    false,
                    limits.max_rows,
                )
                .await
                {
                    Ok(r) => Some(r),
                    Err(e) => return Expected::Broken(fetch_failure(e, limits).reason),
                }
            } else {
                None
            };
            Expected::Table {
                columns,
                primary_key,
                foreign_keys,
                rows,
            }
        }
        Check::View {
            name,
            expect,
            ordered,
        } => {
            let sql = match expect {
                Some(sql) => rows::strip_sql(sql).to_string(),
                None => format!("SELECT * FROM {}", inspect::regclass_text(name)),
            };
            match rows::fetch(client, &sql, *ordered, limits.max_rows).await {
                Ok(r) => Expected::Rows(r, vec![]),
                Err(e) => Expected::Broken(fetch_failure(e, limits).reason),
            }
        }
        Check::Query { sql, ordered } => {
            match rows::fetch(client, rows::strip_sql(sql), *ordered, limits.max_rows).await {
                Ok(r) => Expected::Rows(r, vec![]),
                Err(e) => Expected::Broken(fetch_failure(e, limits).reason),
            }
        }
        Check::Sql { .. } => Expected::True,
    }
}

/// Runs one check on a participant's database; `Ok` when it passes.
pub async fn verify<C: GenericClient>(
    client: &C,
    check: &Check,
    expected: &Expected,
    limits: &Limits,
) -> Result<(), Failure> {
    let db = |e: tokio_postgres::Error| describe(&e, limits);
    match (check, expected) {
        // The reference's own error text is for the lab master (the log,
        // `pglab lab check`), never for a student's page.
        (_, Expected::Broken(_)) => Err(Failure {
            reason:
                "this check fails on the lab's reference database: the lab master must fix the lab"
                    .into(),
            class: "broken_check",
        }),
        (
            Check::Table { name, compare },
            Expected::Table {
                columns,
                primary_key,
                foreign_keys,
                rows,
            },
        ) => {
            let want = TableWanted {
                columns,
                primary_key,
                foreign_keys,
                rows: rows.as_ref(),
            };
            verify_table(client, name, compare, &want, limits).await
        }
        (Check::View { name, ordered, .. }, Expected::Rows(want, _)) => {
            if !inspect::exists(client, name, "vmrpf").await.map_err(db)? {
                return Err(Failure::wrong(format!("missing view {name}")));
            }
            let sql = format!("SELECT * FROM {}", inspect::regclass_text(name));
            let got = rows::fetch(client, &sql, *ordered, limits.max_rows)
                .await
                .map_err(|e| fetch_failure(e, limits))?;
            rows::compare(&got, want, limits.show_rows)
                .map_or(Ok(()), |why| Err(Failure::wrong(why)))
        }
        (Check::Query { sql, ordered }, Expected::Rows(want, _)) => {
            let got = rows::fetch(client, rows::strip_sql(sql), *ordered, limits.max_rows)
                .await
                .map_err(|e| fetch_failure(e, limits))?;
            rows::compare(&got, want, limits.show_rows)
                .map_or(Ok(()), |why| Err(Failure::wrong(why)))
        }
        (Check::Sql { sql }, _) => verify_sql(client, sql, limits).await,
        _ => Err(Failure {
            reason: "the check changed since the reference was read".into(),
            class: "broken_check",
        }),
    }
}

/// What the reference's table looks like.
struct TableWanted<'a> {
    columns: &'a [(String, String)],
    primary_key: &'a [String],
    foreign_keys: &'a [String],
    rows: Option<&'a RowSet>,
}

/// A `table:` check: the table exists, then each part the check compares.
async fn verify_table<C: GenericClient>(
    client: &C,
    name: &ObjectName,
    compare: &[Compare],
    want: &TableWanted<'_>,
    limits: &Limits,
) -> Result<(), Failure> {
    let db = |e: tokio_postgres::Error| describe(&e, limits);
    let Some(got) = inspect::table(client, name).await.map_err(db)? else {
        return Err(Failure::wrong(format!("missing table {name}")));
    };
    let differences = [
        (
            Compare::Columns,
            inspect::compare_columns(&got.columns, want.columns),
        ),
        (
            Compare::PrimaryKey,
            inspect::compare_keys("primary key", &got.primary_key, want.primary_key),
        ),
        (
            Compare::ForeignKeys,
            inspect::compare_keys("foreign key", &got.foreign_keys, want.foreign_keys),
        ),
    ];
    for (part, why) in differences {
        if let (true, Some(why)) = (compare.contains(&part), why) {
            return Err(Failure::wrong(why));
        }
    }
    let Some(rows_wanted) = want.rows else {
        return Ok(());
    };
    if let Some(why) =
        inspect::compare_columns(&got.columns, want.columns).filter(|w| w.starts_with("missing"))
    {
        return Err(Failure::wrong(why));
    }
    let got = rows::fetch(
        client,
        &table_rows_sql(name, want.columns),
        false,
        limits.max_rows,
    )
    .await
    .map_err(|e| fetch_failure(e, limits))?;
    rows::compare(&got, rows_wanted, limits.show_rows)
        .map_or(Ok(()), |why| Err(Failure::wrong(why)))
}

/// An `sql:` check: one boolean, true.
async fn verify_sql<C: GenericClient>(
    client: &C,
    sql: &str,
    limits: &Limits,
) -> Result<(), Failure> {
    let rows = client
        .query(rows::strip_sql(sql), &[])
        .await
        .map_err(|e| describe(&e, limits))?;
    let value = match rows.as_slice() {
        [] => return Err(Failure::wrong("not yet: the check's query found no row")),
        [row] if row.len() == 1 => row
            .try_get::<_, Option<bool>>(0)
            .map_err(|_| Failure::wrong("did not return a boolean"))?,
        _ => return Err(Failure::wrong("did not return exactly one value")),
    };
    match value {
        Some(true) => Ok(()),
        Some(false) => Err(Failure::wrong("not yet: the check's condition is false")),
        None => Err(Failure::wrong(
            "not yet: the check's condition is unknown (NULL: is something missing?)",
        )),
    }
}

/// How long a check may go on after its query was cancelled before its
/// backend is terminated from outside.
pub const GRACE: Duration = Duration::from_secs(2);

/// The end of a guarded check.
pub enum Guarded<T> {
    Done(T),
    /// It outlived its limit and the cancel: its backend was terminated and
    /// the connection is gone.
    Ended,
}

/// Runs `fut`; if Postgres' own timeout did not stop it in time (a student
/// function may have changed `statement_timeout`), cancels the query from
/// outside; if it still runs `GRACE` later (student code can catch
/// `query_canceled` in a loop), runs `terminate`, which ends the backend,
/// and gives the check up. Student code cannot catch a termination.
pub async fn guarded<T>(
    cancel: &CancelToken,
    limit: Duration,
    terminate: impl std::future::Future<Output = ()>,
    fut: impl std::future::Future<Output = T>,
) -> Guarded<T> {
    tokio::pin!(fut);
    tokio::select! {
        out = &mut fut => return Guarded::Done(out),
        _ = tokio::time::sleep(limit) => {}
    }
    if let Err(e) = cancel.cancel_query(NoTls).await {
        tracing::warn!(error = %e, "could not cancel a check that ran too long");
    }
    tokio::select! {
        out = &mut fut => return Guarded::Done(out),
        _ = tokio::time::sleep(GRACE) => {}
    }
    terminate.await;
    Guarded::Ended
}
