//! A participant's (or the reference's) answer to a view or query check,
//! as the hidden datasets run it: the views it rests on, read from the
//! catalog in the database's own session, and the query.

use crate::ident::quote_ident;
use crate::lab::Check;
use crate::scoring::inspect;
use crate::scoring::rows;
use sha2::{Digest, Sha256};
use tokio_postgres::GenericClient;

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
