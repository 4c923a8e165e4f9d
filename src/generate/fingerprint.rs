//! A check as one SQL expression with a text value, the same on every
//! database: evaluated on the reference when the files are generated, and
//! by the stock SQL exporter on each participant database. Equal
//! fingerprints mean what pglab's own comparison means. The exporter
//! exports a number made from the fingerprint ([`numeric`]); the value
//! expected is only in the Prometheus rules, never in SQL sent to a
//! participant's database (where student code could read it with
//! `current_query()`).

use crate::ident::quote_ident;
use crate::lab::{Check, Compare, ObjectName};
use crate::scoring::inspect::regclass_text;
use crate::scoring::rows::strip_sql;

/// `'schema.name'::regclass` fails when the relation is missing, which
/// makes the exporter's query fail: the task is then reported as not passed.
fn regclass(name: &ObjectName) -> String {
    format!(
        "{}::regclass",
        crate::ident::quote_literal(&regclass_text(name))
    )
}

fn rows_md5(source: &str, ordered: bool) -> String {
    let order = if ordered { "" } else { " ORDER BY r" };
    format!("(SELECT md5(coalesce(string_agg(r, E'\\n'{order}), '')) FROM (SELECT t::text AS r FROM {source} t) s)")
}

/// The fingerprint expression of a check on the participant's side; `None`
/// for `sql` checks, which are a boolean already. Table rows need the
/// reference's columns, to select them in the same order.
pub fn participant_side(check: &Check, reference_columns: &[String]) -> Option<String> {
    match check {
        Check::Table { name, compare } => {
            let rc = regclass(name);
            let mut parts = vec![format!("{rc}::text")];
            for c in compare {
                parts.push(match c {
                    Compare::Columns => format!(
                        "(SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ',' ORDER BY a.attname) \
                         FROM pg_attribute a WHERE a.attrelid = {rc} AND a.attnum > 0 AND NOT a.attisdropped)"
                    ),
                    Compare::PrimaryKey => format!(
                        "(SELECT string_agg(a.attname, ',' ORDER BY a.attname) FROM pg_constraint c \
                         JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey) \
                         WHERE c.conrelid = {rc} AND c.contype = 'p')"
                    ),
                    // As `scoring::inspect::table` describes them.
                    Compare::ForeignKeys => format!(
                        "(SELECT string_agg(k, ';' ORDER BY k) FROM (SELECT \
                         (SELECT string_agg(a.attname::text, ',' ORDER BY x.i) FROM unnest(c.conkey) WITH ORDINALITY x(n, i) \
                          JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = x.n) || '->' || c.confrelid::regclass::text || '(' || \
                         (SELECT string_agg(a.attname::text, ',' ORDER BY x.i) FROM unnest(c.confkey) WITH ORDINALITY x(n, i) \
                          JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = x.n) || ')' AS k \
                         FROM pg_constraint c WHERE c.conrelid = {rc} AND c.contype = 'f') s)"
                    ),
                    Compare::Rows => {
                        let cols: Vec<String> = reference_columns.iter().map(|c| quote_ident(c)).collect();
                        rows_md5(&format!("(SELECT {} FROM {})", cols.join(", "), regclass_text(name)), false)
                    }
                });
            }
            Some(format!("concat_ws('|', {})", parts.join(", ")))
        }
        Check::View { name, ordered, .. } => Some(rows_md5(&regclass_text(name), *ordered)),
        Check::Query { sql, ordered } => Some(rows_md5(&format!("({})", strip_sql(sql)), *ordered)),
        Check::Sql { .. } => None,
    }
}

/// The same on the reference (a view's `expect` replaces the view).
pub fn reference_side(check: &Check, reference_columns: &[String]) -> Option<String> {
    match check {
        Check::View {
            expect: Some(sql),
            ordered,
            ..
        } => Some(rows_md5(&format!("({})", strip_sql(sql)), *ordered)),
        other => participant_side(other, reference_columns),
    }
}

/// A fingerprint expression as a 52-bit number (the first 13 hex digits of
/// its md5), which a float64 holds exactly: what the exporter exports and
/// the Prometheus rule compares.
pub fn numeric(expr: &str) -> String {
    format!(
        "('x' || lpad(left(md5(coalesce(({expr})::text, 'null:')), 13), 16, '0'))::bit(64)::bigint"
    )
}
