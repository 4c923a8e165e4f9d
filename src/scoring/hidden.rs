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
use super::inspect;
use super::rows::{self, RowSet};
use crate::ident::quote_ident;
use crate::lab::Check;
use crate::provision::datasets;
use crate::settings::PgServerSettings;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_postgres::GenericClient;

/// The reason a participant reads.
pub const REASON: &str = "passes on your data, fails on a hidden dataset";
/// Its class, for pglab's error metric.
pub const CLASS: &str = "hidden_dataset";

/// The reason when the answer uses the participant's own functions.
pub const OWN_FUNCTIONS: &str = "passes on your data, but uses a function of your own, which pglab does not run on its hidden datasets: write it with views and SQL only";
/// The reason when the views are too large to copy.
pub const TOO_LARGE: &str =
    "passes on your data, but its views are too large to run on the hidden datasets";

/// Views copied at most, per answer, and bytes of their definitions.
const MOST_VIEWS: i64 = 50;
const MOST_BYTES: i64 = 256 * 1024;

/// What an answer is made of: views as (name, definition), those they
/// rest on first, each created as a temporary view (so that no two runs
/// share a name or a lock); and the query whose rows are compared.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Answer {
    pub views: Vec<(String, String)>,
    pub query: String,
    /// The schemas names are resolved in, the same where the answer was
    /// read and where it runs (definitions name views without a schema).
    pub schemas: Vec<String>,
    /// Why it cannot run on a dataset at all (own functions, too large).
    pub refused: Option<&'static str>,
}

impl Answer {
    pub fn digest(&self) -> [u8; 32] {
        let mut d = Sha256::new();
        for part in self
            .views
            .iter()
            .flat_map(|(n, v)| [n, v])
            .chain([&self.query])
            .chain(&self.schemas)
        {
            d.update((part.len() as u64).to_le_bytes());
            d.update(part.as_bytes());
        }
        d.update([u8::from(self.refused.is_some())]);
        d.finalize().into()
    }
}

/// The views that `roots` (relation names as SQL would resolve them) are
/// or rest on, deepest first; only views outside the system schemas;
/// their definitions (all or none: `MOST_BYTES`), and whether any calls a
/// function outside `pg_catalog`. Every comparison names pg_catalog's
/// operator on exact types: a student's operator cannot take its place.
const VIEWS_SQL: &str = "
WITH RECURSIVE deps(oid, depth) AS (
    SELECT c.oid, 0 FROM pg_catalog.pg_class c
    WHERE c.oid OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT pg_catalog.to_regclass(r)::pg_catalog.oid FROM pg_catalog.unnest($1::pg_catalog.text[]) AS r))
      AND c.relkind OPERATOR(pg_catalog.=) 'v'::pg_catalog.\"char\"
  UNION
    SELECT d.refobjid, deps.depth OPERATOR(pg_catalog.+) 1
    FROM deps
    JOIN pg_catalog.pg_rewrite w ON w.ev_class OPERATOR(pg_catalog.=) deps.oid
    JOIN pg_catalog.pg_depend d ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_rewrite'::pg_catalog.regclass::pg_catalog.oid
         AND d.objid OPERATOR(pg_catalog.=) w.oid
         AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass::pg_catalog.oid
         AND d.refobjid OPERATOR(pg_catalog.<>) deps.oid
    JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) d.refobjid AND c.relkind OPERATOR(pg_catalog.=) 'v'::pg_catalog.\"char\"
    WHERE deps.depth OPERATOR(pg_catalog.<) 64
), views AS (
    SELECT c.oid, n.nspname::pg_catalog.text AS schema, c.relname::pg_catalog.text AS name, v.depth,
           pg_catalog.pg_get_viewdef(c.oid, true) AS def
    FROM (SELECT oid, pg_catalog.max(depth) AS depth FROM deps GROUP BY oid) v
    JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) v.oid
    JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
    WHERE n.nspname::pg_catalog.text OPERATOR(pg_catalog.<>) ALL (ARRAY['pg_catalog', 'information_schema', 'pglab']::pg_catalog.text[])
    ORDER BY depth DESC, name
    LIMIT $2
)
SELECT schema, name,
       CASE WHEN pg_catalog.sum(pg_catalog.octet_length(def)) OVER () OPERATOR(pg_catalog.<=) $3 THEN def END,
       EXISTS (SELECT 1 FROM pg_catalog.pg_rewrite w
               JOIN pg_catalog.pg_depend d ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_rewrite'::pg_catalog.regclass::pg_catalog.oid
                    AND d.objid OPERATOR(pg_catalog.=) w.oid
                    AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass::pg_catalog.oid
               JOIN pg_catalog.pg_proc p ON p.oid OPERATOR(pg_catalog.=) d.refobjid
               WHERE w.ev_class OPERATOR(pg_catalog.=) views.oid
                 AND p.pronamespace OPERATOR(pg_catalog.<>) 'pg_catalog'::pg_catalog.regnamespace::pg_catalog.oid)
FROM views
ORDER BY depth DESC, name";

/// The relations a query names (as written), for a `query` check.
fn relations(sql: &str) -> Vec<String> {
    use sqlparser::ast::Visit;
    struct Names(Vec<String>);
    impl sqlparser::ast::Visitor for Names {
        type Break = ();
        fn pre_visit_relation(
            &mut self,
            r: &sqlparser::ast::ObjectName,
        ) -> std::ops::ControlFlow<()> {
            self.0.push(r.to_string());
            std::ops::ControlFlow::Continue(())
        }
    }
    let dialect = sqlparser::dialect::PostgreSqlDialect {};
    let Ok(statements) = sqlparser::parser::Parser::parse_sql(&dialect, rows::strip_sql(sql))
    else {
        return vec![];
    };
    let mut names = Names(vec![]);
    let _ = statements.visit(&mut names);
    names.0.sort();
    names.0.dedup();
    names.0
}

/// A query with the names of `views` (schema, name) written with their
/// schema made plain, so that they find the temporary views; reprinted by
/// the parser only when a name changed.
fn unqualified(sql: &str, views: &[(String, String)]) -> String {
    use sqlparser::ast::VisitMut;
    struct Plain<'a>(&'a [(String, String)], bool);
    // An identifier as Postgres stores it: unquoted ones folded to lower case.
    fn stored(part: &sqlparser::ast::ObjectNamePart) -> Option<String> {
        let ident = part.as_ident()?;
        Some(match ident.quote_style {
            Some(_) => ident.value.clone(),
            None => ident.value.to_lowercase(),
        })
    }
    impl sqlparser::ast::VisitorMut for Plain<'_> {
        type Break = ();
        fn pre_visit_relation(
            &mut self,
            r: &mut sqlparser::ast::ObjectName,
        ) -> std::ops::ControlFlow<()> {
            if let [schema, name] = r.0.as_slice() {
                let key = stored(schema).zip(stored(name));
                if key.is_some_and(|k| self.0.contains(&k)) {
                    r.0 = vec![name.clone()];
                    self.1 = true;
                }
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let dialect = sqlparser::dialect::PostgreSqlDialect {};
    let plain = rows::strip_sql(sql).to_string();
    match sqlparser::parser::Parser::parse_sql(&dialect, &plain) {
        Ok(mut statements) if statements.len() == 1 => {
            let mut visitor = Plain(views, false);
            let _ = statements.visit(&mut visitor);
            if visitor.1 {
                statements[0].to_string()
            } else {
                plain
            }
        }
        _ => plain,
    }
}

/// The answer to a `view` or `query` check in the database `client` is in
/// (a participant's, or the reference with `reference`, where a view
/// check's `expect:` is the answer), names resolved in `schemas`; `None`
/// for other checks. Read in a savepoint of the caller's transaction.
pub async fn answer<C: GenericClient>(
    client: &C,
    check: &Check,
    reference: bool,
    schemas: &[String],
) -> Result<Option<Answer>, tokio_postgres::Error> {
    let (roots, query) = match check {
        Check::View {
            expect: Some(sql), ..
        } if reference => {
            return Ok(Some(Answer {
                views: vec![],
                query: rows::strip_sql(sql).to_string(),
                schemas: schemas.to_vec(),
                refused: None,
            }))
        }
        // The temporary view itself, never a relation of the dataset's
        // that has its name (a table a student made instead of a view is
        // not copied: it fails).
        Check::View { name, .. } => (
            vec![inspect::regclass_text(name)],
            format!("SELECT * FROM pg_temp.{}", quote_ident(&name.name)),
        ),
        Check::Query { sql, .. } => (relations(sql), rows::strip_sql(sql).to_string()),
        _ => return Ok(None),
    };
    let path: Vec<String> = schemas.iter().map(|s| quote_ident(s)).collect();
    client
        .batch_execute(&format!(
            "SAVEPOINT hidden; SET LOCAL search_path = {}",
            path.join(", ")
        ))
        .await?;
    let found = client
        .query(VIEWS_SQL, &[&roots, &(MOST_VIEWS + 1), &MOST_BYTES])
        .await;
    client.batch_execute("ROLLBACK TO SAVEPOINT hidden").await?;
    let found = found?;
    let views: Vec<(String, String, Option<String>)> = found
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let names: Vec<(String, String)> = views
        .iter()
        .map(|(s, n, _)| (s.clone(), n.clone()))
        .collect();
    let refused = if found.iter().any(|r| r.get::<_, bool>(3)) {
        Some(OWN_FUNCTIONS)
    } else if views.len() > MOST_VIEWS as usize || views.iter().any(|(_, _, d)| d.is_none()) {
        Some(TOO_LARGE)
    } else {
        None
    };
    let query = match check {
        Check::Query { .. } => unqualified(&query, &names),
        _ => query,
    };
    Ok(Some(Answer {
        views: views
            .into_iter()
            .map(|(_, n, d)| (n, d.unwrap_or_default()))
            .collect(),
        query,
        schemas: schemas.to_vec(),
        refused,
    }))
}

/// Whether hidden datasets judge `check` at all, given the reference's
/// answer: a view check always; a query check when it reads views (else
/// its answer is the participant's data, which no dataset has).
pub fn applies(check: &Check, reference: &Answer) -> bool {
    matches!(check, Check::View { .. }) || !reference.views.is_empty()
}

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
    let end = async {
        if let Ok(admin) = crate::pgconn::connect(server, "postgres").await {
            let _ = admin
                .execute("SELECT pg_terminate_backend($1)", &[&pid])
                .await;
        }
    };
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
