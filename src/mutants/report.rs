//! The mutation report: each `view`, `query` and `expect` check's
//! reference SQL, its mutants run on the reference database (read-only,
//! with the scoring's timeout and row cap) and compared as the check
//! compares; each survivor run again on every dataset, to show what each
//! one adds.

use super::explain::{self, Diff};
use super::{Class, Mutant};
use crate::lab::{Check, Lab};
use crate::scoring::checks::Limits;
use crate::scoring::inspect;
use crate::scoring::rows::{self, FetchError, RowSet};
use serde::Serialize;
use tokio_postgres::Client;

/// The databases a report runs on: the lab's reference, and its datasets
/// by name, each loaded in a scratch database.
pub struct Databases<'a> {
    pub reference: &'a Client,
    pub datasets: Vec<(String, &'a Client)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub generated: usize,
    /// Told apart from the reference by the lab's own data.
    pub killed: usize,
    /// Told apart by the lab's data or one of its datasets.
    pub killed_with_datasets: usize,
    /// Not told apart by the lab's data.
    pub survived: usize,
    /// Not told apart by any data.
    pub survived_with_datasets: usize,
    /// Failed to run (a type error, a timeout): reported apart.
    pub errored: usize,
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.generated += other.generated;
        self.killed += other.killed;
        self.killed_with_datasets += other.killed_with_datasets;
        self.survived += other.survived;
        self.survived_with_datasets += other.survived_with_datasets;
        self.errored += other.errored;
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Survivor {
    pub class: Class,
    pub change: String,
    pub sql: String,
    pub diff: Diff,
    pub explanation: String,
    /// The datasets that kill it.
    pub killed_by: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Errored {
    pub change: String,
    pub sql: String,
    pub error: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    pub task: String,
    /// Index of the check in its task.
    pub check: usize,
    /// `view cd.x`, `view cd.x (expect)` or `query`.
    pub label: String,
    /// The reference SQL the mutants are made of (empty if unknown).
    pub sql: String,
    /// Why no mutants could be run, if so.
    pub problem: Option<String>,
    #[serde(flatten)]
    pub counts: Counts,
    /// Per dataset (in the lab's order), how many survivors it kills.
    pub kills_by_dataset: Vec<usize>,
    pub survivors: Vec<Survivor>,
    pub errors: Vec<Errored>,
    /// A dataset on which the reference SQL itself fails.
    pub dataset_problems: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub lab: String,
    pub datasets: Vec<String>,
    #[serde(flatten)]
    pub counts: Counts,
    pub checks: Vec<CheckReport>,
}

/// Words for a result that could not be fetched.
fn failed(e: &FetchError, limits: &Limits) -> String {
    match e {
        FetchError::TooMany(n) => format!("more than {n} rows"),
        FetchError::Db(e) if e.code() == Some(&tokio_postgres::error::SqlState::QUERY_CANCELED) => {
            format!(
                "timed out after {} s",
                limits.statement_timeout.as_secs_f64()
            )
        }
        FetchError::Db(e) => crate::pgconn::db_message(e),
    }
}

/// Runs `sql` in its own savepoint of the open transaction on `client`.
async fn run(
    client: &Client,
    sql: &str,
    ordered: bool,
    limits: &Limits,
) -> Result<RowSet, FetchError> {
    client.batch_execute("SAVEPOINT m").await?;
    let out = rows::fetch(client, rows::strip_sql(sql), ordered, limits.max_rows).await;
    client.batch_execute("ROLLBACK TO SAVEPOINT m").await?;
    out
}

async fn begin(client: &Client, limits: &Limits) -> Result<(), tokio_postgres::Error> {
    client
        .batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET LOCAL statement_timeout = {}; SET LOCAL search_path = public;",
            limits.statement_timeout.as_millis()
        ))
        .await
}

/// The report of `lab` on `dbs`; `Err` only when a database fails (not
/// when a check's SQL does).
pub async fn report(
    dbs: &Databases<'_>,
    lab: &Lab,
    limits: &Limits,
) -> Result<Report, tokio_postgres::Error> {
    let mut out = Report {
        lab: lab.id.to_string(),
        datasets: dbs.datasets.iter().map(|(n, _)| n.clone()).collect(),
        counts: Counts::default(),
        checks: vec![],
    };
    for task in &lab.tasks {
        for (i, check) in task.checks.iter().enumerate() {
            let Some((label, sql, ordered)) = target(dbs.reference, check).await? else {
                continue;
            };
            let mut c = CheckReport {
                task: task.id.clone(),
                check: i,
                label,
                sql: sql.clone().unwrap_or_default(),
                problem: None,
                counts: Counts::default(),
                kills_by_dataset: vec![0; dbs.datasets.len()],
                survivors: vec![],
                errors: vec![],
                dataset_problems: vec![],
            };
            match sql {
                Some(sql) => one_check(dbs, &mut c, &sql, ordered, limits).await?,
                None => c.problem = Some("the reference has no such view".into()),
            }
            out.counts.add(&c.counts);
            out.checks.push(c);
        }
    }
    Ok(out)
}

/// What a check's mutants are made of: its label, its reference SQL
/// (`None`: a view the reference lacks), and whether order counts.
async fn target(
    reference: &Client,
    check: &Check,
) -> Result<Option<(String, Option<String>, bool)>, tokio_postgres::Error> {
    Ok(match check {
        Check::View {
            name,
            expect: Some(sql),
            ordered,
        } => Some((format!("view {name} (expect)"), Some(sql.clone()), *ordered)),
        Check::View {
            name,
            expect: None,
            ordered,
        } => {
            let row = reference
                .query_one(
                    "SELECT pg_catalog.pg_get_viewdef(pg_catalog.to_regclass($1), true)",
                    &[&inspect::regclass_text(name)],
                )
                .await?;
            Some((format!("view {name}"), row.get(0), *ordered))
        }
        Check::Query { sql, ordered } => Some(("query".into(), Some(sql.clone()), *ordered)),
        Check::Table { .. } | Check::Sql { .. } => None,
    })
}

async fn one_check(
    dbs: &Databases<'_>,
    c: &mut CheckReport,
    sql: &str,
    ordered: bool,
    limits: &Limits,
) -> Result<(), tokio_postgres::Error> {
    let (printed, mut all) = match super::printed_and_mutants(rows::strip_sql(sql)) {
        Ok(m) => m,
        Err(e) => {
            c.problem = Some(format!("pglab's SQL parser cannot read it: {e}"));
            return Ok(());
        }
    };
    if !ordered {
        // The check compares rows as a multiset: the order is no mistake,
        // except where a LIMIT takes the first rows.
        all.retain(|m| m.class != Class::OrderBy || m.sql.contains(" LIMIT "));
    }
    let reference = dbs.reference;
    begin(reference, limits).await?;
    let survivors = on_reference(reference, c, sql, &printed, all, ordered, limits).await;
    reference.batch_execute("ROLLBACK").await?;
    let survivors = survivors?;
    for (d, (name, client)) in dbs.datasets.iter().enumerate() {
        begin(client, limits).await?;
        let kills = on_dataset(client, sql, &survivors, ordered, limits).await;
        client.batch_execute("ROLLBACK").await?;
        match kills? {
            Ok(kills) => {
                for (s, killed) in kills.into_iter().enumerate() {
                    if killed {
                        c.survivors[s].killed_by.push(name.clone());
                    }
                }
            }
            Err(why) => c.dataset_problems.push(format!("{name}: {why}")),
        }
        c.kills_by_dataset[d] = c
            .survivors
            .iter()
            .filter(|s| s.killed_by.contains(name))
            .count();
    }
    let alive = c
        .survivors
        .iter()
        .filter(|s| s.killed_by.is_empty())
        .count();
    c.counts.survived_with_datasets = alive;
    c.counts.killed_with_datasets = c.counts.killed + c.counts.survived - alive;
    Ok(())
}

/// Runs the mutants on the reference; fills the check's counts, errors
/// and survivors (with their sentences) and returns the survivors.
async fn on_reference(
    client: &Client,
    c: &mut CheckReport,
    sql: &str,
    printed: &str,
    all: Vec<Mutant>,
    ordered: bool,
    limits: &Limits,
) -> Result<Vec<Mutant>, tokio_postgres::Error> {
    let want = match run(client, sql, ordered, limits).await {
        Ok(rows) => rows,
        Err(e) => {
            c.problem = Some(format!("fails on the reference: {}", failed(&e, limits)));
            return Ok(vec![]);
        }
    };
    // The mutants are printed by the parser: the reference printed by it
    // must give the same rows, or no mutant can be trusted.
    if !matches!(run(client, printed, ordered, limits).await, Ok(ref r) if *r == want) {
        c.problem = Some(
            "pglab's SQL parser prints this SQL back with another meaning; no mutants were run"
                .into(),
        );
        return Ok(vec![]);
    }
    let mut survivors = vec![];
    c.counts.generated = all.len();
    for m in all {
        match run(client, &m.sql, ordered, limits).await {
            Ok(got) if rows::compare(&got, &want, false).is_none() => {
                let found = probe(client, &m, limits).await;
                c.survivors.push(Survivor {
                    class: m.class,
                    change: m.change.clone(),
                    diff: Diff::of(printed, &m.sql),
                    sql: m.sql.clone(),
                    explanation: explain::sentence(&m, found.as_deref()),
                    killed_by: vec![],
                });
                survivors.push(m);
            }
            Ok(_) | Err(FetchError::TooMany(_)) => c.counts.killed += 1,
            Err(e) => c.errors.push(Errored {
                change: m.change,
                sql: m.sql,
                error: failed(&e, limits),
            }),
        }
    }
    c.counts.survived = survivors.len();
    c.counts.errored = c.errors.len();
    Ok(survivors)
}

/// Whether the probe's table has rows on each telling side.
async fn probe(client: &Client, m: &Mutant, limits: &Limits) -> Option<Vec<bool>> {
    let queries = m.probe.as_ref().and_then(explain::probe_queries)?;
    let mut found = vec![];
    for q in queries {
        let rows = run(client, &q, false, limits).await.ok()?;
        found.push(rows.rows.first().is_some_and(|r| r == "(t)"));
    }
    Some(found)
}

/// Which survivors the dataset kills (`Ok(Err(..))`: the reference SQL
/// itself fails there).
async fn on_dataset(
    client: &Client,
    sql: &str,
    survivors: &[Mutant],
    ordered: bool,
    limits: &Limits,
) -> Result<Result<Vec<bool>, String>, tokio_postgres::Error> {
    let want = match run(client, sql, ordered, limits).await {
        Ok(rows) => rows,
        Err(e) => return Ok(Err(failed(&e, limits))),
    };
    let mut kills = vec![];
    for m in survivors {
        let killed = match run(client, &m.sql, ordered, limits).await {
            Ok(got) => rows::compare(&got, &want, false).is_some(),
            Err(FetchError::TooMany(_)) => true,
            Err(_) => false,
        };
        kills.push(killed);
    }
    Ok(Ok(kills))
}
