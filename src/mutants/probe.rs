//! Where the rows that tell a changed comparison from the reference's
//! would be: the column's table (from the `FROM` of the `SELECT` being
//! walked) and the sides of the constant the two operators differ on.

use super::{Mutator, Probe};
use sqlparser::ast::{BinaryOperator, Expr, Select, TableFactor, Value};

/// The named tables of a `SELECT`'s `FROM` (joins included), as
/// (qualifier, table, `FROM` item).
pub(super) fn from_tables(select: &Select) -> Vec<(String, String, String)> {
    let factors = select
        .from
        .iter()
        .flat_map(|t| std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation)));
    factors
        .filter_map(|f| match f {
            TableFactor::Table {
                name,
                alias,
                args: None,
                ..
            } => {
                let table = name.to_string();
                let (qualifier, item) = match alias {
                    Some(a) => (a.name.value.clone(), format!("{table} AS {}", a.name)),
                    None => (
                        name.0.last().map_or(table.clone(), |p| p.to_string()),
                        table.clone(),
                    ),
                };
                Some((qualifier, table, item))
            }
            _ => None,
        })
        .collect()
}

/// Whether `e` is a constant: a literal, perhaps cast or negated.
fn constant(e: &Expr) -> bool {
    match e {
        Expr::Value(v) => !matches!(v.value, Value::Null | Value::Placeholder(_)),
        Expr::TypedString(_) => true,
        Expr::Cast { expr, .. } | Expr::UnaryOp { expr, .. } | Expr::Nested(expr) => constant(expr),
        _ => false,
    }
}

/// Which of `<`, `=`, `>` an operator keeps, as (lt, eq, gt).
fn keeps(op: &BinaryOperator) -> [bool; 3] {
    match op {
        BinaryOperator::Lt => [true, false, false],
        BinaryOperator::LtEq => [true, true, false],
        BinaryOperator::Gt => [false, false, true],
        BinaryOperator::GtEq => [false, true, true],
        BinaryOperator::Eq => [false, true, false],
        _ => [true, false, true],
    }
}

impl Mutator {
    /// The probe of a comparison changed from `before` to `after`, when
    /// one side is a column and the other a constant.
    pub(super) fn probe_of(
        &self,
        left: &Expr,
        right: &Expr,
        before: &BinaryOperator,
        after: &BinaryOperator,
    ) -> Option<Probe> {
        let (column, value, mirrored) = match (constant(left), constant(right)) {
            (false, true) => (left, right, false),
            (true, false) => (right, left, true),
            _ => return None,
        };
        let (qualifier, _) = match column {
            Expr::Identifier(c) => (None, c),
            Expr::CompoundIdentifier(parts) if parts.len() == 2 => (Some(&parts[0]), &parts[1]),
            _ => return None,
        };
        let scope = self.scopes.last()?;
        let table = match qualifier {
            None if scope.len() == 1 => Some(&scope[0]),
            None => None,
            Some(q) => self
                .scopes
                .iter()
                .rev()
                .find_map(|s| s.iter().find(|(name, _, _)| *name == q.value)),
        };
        let (b, a) = (keeps(before), keeps(after));
        // `value op column` keeps the mirror image of `column op value`.
        let names = if mirrored {
            [">", "=", "<"]
        } else {
            ["<", "=", ">"]
        };
        let telling = (0..3)
            .filter(|i| b[*i] != a[*i])
            .map(|i| names[i])
            .collect();
        Some(Probe {
            table: table.map(|(_, t, item)| (t.clone(), item.clone())),
            column: column.to_string(),
            value: value.to_string(),
            shown: match value {
                Expr::Cast { expr, .. } => expr.to_string(),
                other => other.to_string(),
            },
            telling,
        })
    }
}
