//! The structure of a table (columns, primary key, foreign keys), read from
//! the catalogs the same way on the reference and on a participant database.

use crate::ident::quote_ident;
use crate::lab::ObjectName;
use tokio_postgres::GenericClient;

/// `schema.name`, quoted, as text for `to_regclass`.
pub fn regclass_text(name: &ObjectName) -> String {
    format!("{}.{}", quote_ident(&name.schema), quote_ident(&name.name))
}

/// Whether a relation of the given kinds (`r`, `v`, `m`, `p`, `f`) exists.
pub async fn exists<C: GenericClient>(
    client: &C,
    name: &ObjectName,
    kinds: &str,
) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c
                            WHERE c.oid = pg_catalog.to_regclass($1) AND pg_catalog.strpos($2, c.relkind::text) > 0)",
            &[&regclass_text(name), &kinds],
        )
        .await?;
    Ok(row.get(0))
}

/// Column names and types, in table order.
pub async fn columns<C: GenericClient>(
    client: &C,
    name: &ObjectName,
) -> Result<Vec<(String, String)>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod)
             FROM pg_catalog.pg_attribute a
             WHERE a.attrelid = pg_catalog.to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum",
            &[&regclass_text(name)],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Compares columns; `None` when they match.
pub fn compare_columns(got: &[(String, String)], want: &[(String, String)]) -> Option<String> {
    let missing: Vec<&str> = want
        .iter()
        .filter(|w| !got.iter().any(|g| g.0 == w.0))
        .map(|w| w.0.as_str())
        .collect();
    if !missing.is_empty() {
        return Some(format!(
            "missing column{} {}",
            if missing.len() > 1 { "s" } else { "" },
            missing.join(", ")
        ));
    }
    let extra: Vec<&str> = got
        .iter()
        .filter(|g| !want.iter().any(|w| w.0 == g.0))
        .map(|g| g.0.as_str())
        .collect();
    if !extra.is_empty() {
        return Some(format!(
            "unexpected column{} {}",
            if extra.len() > 1 { "s" } else { "" },
            extra.join(", ")
        ));
    }
    let wrong: Vec<&str> = want
        .iter()
        .filter(|w| got.iter().any(|g| g.0 == w.0 && g.1 != w.1))
        .map(|w| w.0.as_str())
        .collect();
    (!wrong.is_empty()).then(|| {
        format!(
            "wrong type for column{} {}",
            if wrong.len() > 1 { "s" } else { "" },
            wrong.join(", ")
        )
    })
}

pub fn compare_keys(kind: &str, got: &[String], want: &[String]) -> Option<String> {
    if got == want {
        return None;
    }
    if kind == "primary key" {
        return Some(if got.is_empty() {
            "no primary key".into()
        } else {
            "primary key on other columns than expected".into()
        });
    }
    let missing = want.iter().filter(|w| !got.contains(w)).count();
    let extra = got.iter().filter(|g| !want.contains(g)).count();
    Some(match (missing, extra) {
        (m, 0) => format!("{m} {kind}{} missing", if m > 1 { "s" } else { "" }),
        (0, e) => format!("{e} unexpected {kind}{}", if e > 1 { "s" } else { "" }),
        (m, e) => format!(
            "{m} {kind}{} missing, {e} unexpected",
            if m > 1 { "s" } else { "" }
        ),
    })
}

/// Everything a table check compares, read in one round trip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableShape {
    pub columns: Vec<(String, String)>,
    pub primary_key: Vec<String>,
    pub foreign_keys: Vec<String>,
}

/// The shape of a table (or partitioned or foreign table); `None` if there
/// is no such table.
pub async fn table<C: GenericClient>(
    client: &C,
    name: &ObjectName,
) -> Result<Option<TableShape>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a
                          WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum),
                    ARRAY(SELECT pg_catalog.format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a
                          WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum),
                    coalesce((SELECT array_agg(a.attname::text ORDER BY a.attname)
                              FROM pg_catalog.pg_constraint k
                              JOIN pg_catalog.pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = ANY (k.conkey)
                              WHERE k.conrelid = c.oid AND k.contype = 'p'), '{}'),
                    ARRAY(SELECT (SELECT pg_catalog.string_agg(a.attname::text, ',' ORDER BY x.i)
                                  FROM unnest(k.conkey) WITH ORDINALITY x(n, i)
                                  JOIN pg_catalog.pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = x.n)
                                 || '->' || k.confrelid::regclass::text || '(' ||
                                 (SELECT pg_catalog.string_agg(a.attname::text, ',' ORDER BY x.i)
                                  FROM unnest(k.confkey) WITH ORDINALITY x(n, i)
                                  JOIN pg_catalog.pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = x.n) || ')'
                          FROM pg_catalog.pg_constraint k
                          WHERE k.conrelid = c.oid AND k.contype = 'f' ORDER BY 1)
             FROM pg_catalog.pg_class c
             WHERE c.oid = pg_catalog.to_regclass($1) AND c.relkind IN ('r', 'p', 'f')",
            &[&regclass_text(name)],
        )
        .await?;
    Ok(row.map(|r| {
        let names: Vec<String> = r.get(0);
        let types: Vec<String> = r.get(1);
        TableShape {
            columns: names.into_iter().zip(types).collect(),
            primary_key: r.get(2),
            foreign_keys: r.get(3),
        }
    }))
}
