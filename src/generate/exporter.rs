//! `exporter/<lab>.yml`: a config for the SQL exporter Debian ships
//! (justwatchcom/sql_exporter 0.4.5) that computes each task's pass/fail on
//! every participant database the way pglab does.

use super::{header, Reference};
use crate::ident::quote_literal;
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
    /// The label value: username or group (pseudonym when the lab asks).
    pub participant: String,
}

/// How often the exporter runs the queries (never 0s: 0.4.5 then loops
/// without pause).
const INTERVAL: &str = "30s";

pub fn metric_name(lab: &Lab, task: &str) -> String {
    let clean = |s: &str| s.replace(['-', '.'], "_");
    format!("pglab_{}_{}_passed", clean(lab.id.as_str()), clean(task))
}

/// What one server can take, for the connection arithmetic in the header.
pub struct Budget {
    pub server: String,
    pub databases: u32,
    pub max_connections: u32,
}

pub fn render(lab: &Lab, reference: &Reference, targets: &[Target], budgets: &[Budget]) -> String {
    let mut notes = Vec::new();
    let mut queries = Vec::new();
    // The participant label comes from the database name, mapped with a CASE
    // so that pseudonyms and group names need no lookup table.
    let mut case = String::from("CASE current_database()");
    for t in targets {
        case.push_str(&format!(
            " WHEN {} THEN {}",
            quote_literal(&t.database),
            quote_literal(&t.participant)
        ));
    }
    case.push_str(" END");
    for (i, task) in lab.tasks.iter().enumerate() {
        let mut conditions = Vec::new();
        for (j, check) in task.checks.iter().enumerate() {
            match (&reference.fingerprints[i][j], check) {
                (Ok(_), Check::Sql { sql }) => conditions.push(format!(
                    "coalesce(({}), false)",
                    crate::scoring::rows::strip_sql(sql)
                )),
                (Ok(Some((expr, expected))), _) => {
                    let want = expected
                        .as_deref()
                        .map_or_else(|| "NULL".to_string(), quote_literal);
                    conditions.push(format!("({expr}) IS NOT DISTINCT FROM {want}"))
                }
                (Ok(None), _) => unreachable!("only sql checks have no fingerprint"),
                (Err(why), _) => notes.push(format!(
                    "task {} check {}: not exported: {why}",
                    task.id,
                    j + 1
                )),
            }
        }
        if conditions.len() < task.checks.len() {
            notes.push(format!(
                "task {}: left out (a check could not be expressed)",
                task.id
            ));
            continue;
        }
        queries.push(Query {
            name: metric_name(lab, &task.id),
            help: format!("1 when task {} of lab {} passes (same checks as pglab).", task.id, lab.id),
            labels: vec!["participant".into(), "task".into()],
            values: vec!["passed".into()],
            query: format!(
                "SELECT {case} AS participant, {} AS task, CASE WHEN {} THEN 1 ELSE 0 END AS passed",
                quote_literal(&task.id),
                conditions.join(" AND ")
            ),
        });
    }
    let connections: Vec<String> = targets
        .iter()
        .map(|t| {
            format!(
                "postgres://pglab_monitor:{}@{}:{}/{}?sslmode=disable&application_name=pglab-exporter",
                t.server.monitor_password.expose(),
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
            startup_sql: vec![
                "SET statement_timeout = '2s'".into(),
                "SET lock_timeout = '1s'".into(),
                "SET default_transaction_read_only = on".into(),
                "SET search_path = public".into(),
                // Act as the database's owner, as pglab's scorer does.
                "DO $$ BEGIN EXECUTE format('SET ROLE %I', (SELECT pg_catalog.pg_get_userbyid(datdba) FROM pg_catalog.pg_database WHERE datname = current_database())); END $$".into(),
            ],
            queries,
        }],
    };
    let mut out = header(lab, "#");
    out.push_str(
        "#\n# Connects as pglab_monitor (no privileges of its own; a member of every\n\
         # participant role, so it acts as the database owner, read-only).\n\
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
    for n in &notes {
        out.push_str(&format!("# {n}\n"));
    }
    if notes.is_empty() {
        out.push_str("# Every check of every task is expressed as SQL below.\n");
    }
    out.push_str(&serde_norway::to_string(&config).expect("config serializes"));
    out
}
