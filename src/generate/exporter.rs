//! `exporter/<lab>.yml`: a config for the SQL exporter Debian ships
//! (justwatchcom/sql_exporter 0.4.5) that computes each check's fingerprint
//! on every participant database, as that participant's checking role.
//! Whether the fingerprints match the reference's is decided by the
//! Prometheus rules (`prometheus/rules/<lab>.yml`), so neither expected
//! values nor participant names or pseudonyms are in the SQL that runs in a
//! participant's database.

use super::{header, Reference};
use crate::ident::{quote_literal, PgName};
use crate::lab::{Check, DatabaseMode, Lab};
use crate::settings::PgServerSettings;
use serde::Serialize;

#[derive(Serialize)]
struct Config {
    jobs: Vec<Job>,
}

#[derive(Serialize)]
struct Job {
    name: String,
    interval: String,
    connections: Vec<String>,
    startup_sql: Vec<String>,
    queries: Vec<Query>,
}

#[derive(Serialize)]
struct Query {
    name: String,
    help: String,
    labels: Vec<String>,
    values: Vec<String>,
    query: String,
}

/// A participant database the exporter connects to.
pub struct Target<'a> {
    pub server: &'a PgServerSettings,
    pub database: String,
    /// The database's owner, whose checking role the exporter logs in as.
    pub owner: PgName,
    /// The label value: username or group (pseudonym when the lab asks),
    /// set by Prometheus' relabelling from the database name.
    pub participant: String,
}

/// How often the exporter runs the queries (never 0s: 0.4.5 then loops
/// without pause).
const INTERVAL: &str = "30s";

fn clean(s: &str) -> String {
    s.replace(['-', '.'], "_")
}

/// The recorded series of a task: 1 when it passes (Prometheus rules).
pub fn metric_name(lab: &Lab, task: &str) -> String {
    format!("pglab_{}_{}_passed", clean(lab.id.as_str()), clean(task))
}

/// The exporter's series of a task's check fingerprints (`check` label).
pub fn checks_metric(lab: &Lab, task: &str) -> String {
    format!(
        "sql_pglab_{}_{}_checks",
        clean(lab.id.as_str()),
        clean(task)
    )
}

/// What a check's value must be for it to pass: the reference's
/// fingerprint, or 1 for an `sql` check.
pub fn expected_values(lab: &Lab, reference: &Reference) -> Vec<Option<Vec<i64>>> {
    lab.tasks
        .iter()
        .enumerate()
        .map(|(i, task)| {
            (0..task.checks.len())
                .map(|j| match &reference.fingerprints[i][j] {
                    Ok(Some((_, want))) => Some(*want),
                    Ok(None) => Some(1),
                    Err(_) => None,
                })
                .collect()
        })
        .collect()
}

/// What one server can take, for the connection arithmetic in the header.
pub struct Budget {
    pub server: String,
    pub databases: u32,
    pub max_connections: u32,
}

pub fn render(lab: &Lab, reference: &Reference, targets: &[Target], budgets: &[Budget]) -> String {
    let (queries, notes) = task_queries(lab, reference);
    let connections: Vec<String> = targets
        .iter()
        .map(|t| {
            format!(
                "postgres://{}:{}@{}:{}/{}?sslmode=disable&application_name=pglab-exporter",
                PgName::checker(&t.owner),
                crate::provision::postgres::checker_password(t.server, &t.owner),
                t.server.host,
                t.server.port,
                t.database
            )
        })
        .collect();
    let config = Config {
        jobs: vec![Job {
            name: format!("pglab_{}", lab.id.as_str().replace('-', "_")),
            interval: INTERVAL.into(),
            connections,
            // The checking role's own defaults (set by `pglab apply`) already
            // make every session of it read-only, bounded and the owner, also
            // when the exporter's pool opens a new connection without these.
            // Nothing here calls a function a student could have shadowed.
            startup_sql: vec![
                "SET statement_timeout = '2s'".into(),
                "SET lock_timeout = '1s'".into(),
                "SET default_transaction_read_only = on".into(),
                "SET search_path = public".into(),
            ],
            queries,
        }],
    };
    let mut out = header(lab, "#");
    out.push_str(&comments(lab, budgets, &notes));
    out.push_str(&serde_norway::to_string(&config).expect("config serializes"));
    out
}

/// One query per task: a fingerprint of each of its checks. A task with a
/// check that cannot be expressed is left out, with a note saying why.
fn task_queries(lab: &Lab, reference: &Reference) -> (Vec<Query>, Vec<String>) {
    let mut notes = Vec::new();
    let mut queries = Vec::new();
    for (i, task) in lab.tasks.iter().enumerate() {
        let mut rows = Vec::new();
        for (j, check) in task.checks.iter().enumerate() {
            let value = match (&reference.fingerprints[i][j], check) {
                (Ok(_), Check::Sql { sql }) => format!(
                    "CASE WHEN coalesce(({}), false) THEN 1 ELSE 0 END",
                    crate::scoring::rows::strip_sql(sql)
                ),
                (Ok(Some((expr, _))), _) => expr.clone(),
                (Ok(None), _) => unreachable!("only sql checks have no fingerprint"),
                (Err(why), _) => {
                    notes.push(format!(
                        "task {} check {}: not exported: {why}",
                        task.id,
                        j + 1
                    ));
                    continue;
                }
            };
            rows.push(format!(
                "SELECT {} AS task, '{}' AS \"check\", {value} AS value",
                quote_literal(&task.id),
                j + 1
            ));
        }
        if rows.len() < task.checks.len() {
            notes.push(format!(
                "task {}: left out (a check could not be expressed)",
                task.id
            ));
            continue;
        }
        queries.push(Query {
            name: checks_metric(lab, &task.id)
                .trim_start_matches("sql_")
                .to_string(),
            help: format!(
                "Fingerprint of each check of task {} of lab {}; compared with the reference by the Prometheus rules.",
                task.id, lab.id
            ),
            labels: vec!["task".into(), "check".into()],
            values: vec!["value".into()],
            query: rows.join(" UNION ALL "),
        });
    }
    (queries, notes)
}

/// The comment block of the file: how it connects, the connection budget
/// of each server, and what was left out.
fn comments(lab: &Lab, budgets: &[Budget], notes: &[String]) -> String {
    let mut out = String::from(
        "#\n# Connects to each database as its owner's checking role pglab.ck.<owner>\n\
         # (no privileges of its own; can act as that owner and nobody else),\n\
         # read-only. Exports fingerprints only: prometheus/rules/<lab>.yml\n\
         # compares them with the reference's and records pglab_<lab>_<task>_passed.\n\
         #\n# Connections: the exporter keeps one open per participant database. Per server:\n\
         #   exporter (1 per database) + participants x connection_limit\n\
         #   + pglab (control pool 8, scoring 4, clone workers 2) + 3 reserved for superusers\n\
         #   must stay within max_connections.\n",
    );
    for b in budgets {
        let students = b.databases * lab.options.connection_limit;
        let need = b.databases + students + 8 + 4 + 2 + 3;
        out.push_str(&format!(
            "#   {}: {} + {} x {} + 14 + 3 = {need} of max_connections {}: {}\n",
            b.server,
            b.databases,
            b.databases,
            lab.options.connection_limit,
            b.max_connections,
            if need <= b.max_connections {
                "ok"
            } else {
                "TOO MANY: raise max_connections or lower options.connection_limit"
            }
        ));
    }
    if lab.databases == DatabaseMode::PerGroup {
        out.push_str("# One database per group: the participant label is the group.\n");
    }
    for n in notes {
        out.push_str(&format!("# {n}\n"));
    }
    if notes.is_empty() {
        out.push_str("# Every check of every task is expressed as SQL below.\n");
    }
    out
}
