//! Mutants of a reference query (issue 20): the mistakes a student is
//! likely to make, each a change at one place of the reference's SQL, for
//! the lab author's mutation report. A mutant the lab's data cannot tell
//! from the reference (same rows) survives: the data needs a row that
//! shows the difference.
//!
//! The SQL is parsed by a real parser (PostgreSQL dialect); each place of
//! the tree that a class of mistakes applies to is numbered in the order
//! of a walk over it, and each mutant is the tree with one place changed,
//! printed again. The order is that of the SQL: the same reference gives
//! the same mutants, in the same order.
//!
//! Classes: comparison operators, `AND`/`OR`, `IS [NOT] NULL`, `COUNT`
//! forms, `SUM`/`AVG`/`MIN`/`MAX`, integer constants off by one (`LIMIT`
//! included), `DISTINCT` added or removed, a `WHERE` conjunct dropped, the
//! join type, a dropped join condition, `UNION`/`UNION ALL`, a `GROUP BY`
//! column dropped, an `ORDER BY` key's direction flipped or the key dropped.

use serde::Serialize;
use sqlparser::ast::{
    BinaryOperator, Distinct, DuplicateTreatment, Expr, FunctionArg, FunctionArgExpr,
    FunctionArguments, GroupByExpr, JoinConstraint, JoinOperator, OrderByKind, OrderBySort, Query,
    Select, SetExpr, SetOperator, SetQuantifier, Statement, Value, VisitMut, VisitorMut,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use std::collections::BTreeSet;
use std::ops::ControlFlow;

/// A class of mistakes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    Comparison,
    AndOr,
    NullTest,
    Count,
    Aggregate,
    Constant,
    Distinct,
    DroppedCondition,
    JoinType,
    DroppedJoinCondition,
    Union,
    GroupBy,
    OrderBy,
}

/// One mutant: its class, its SQL, and the change in words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mutant {
    pub class: Class,
    pub sql: String,
    pub change: String,
    /// For a comparison of a column with a constant: where the rows that
    /// tell the mutant from the reference would be.
    #[serde(skip)]
    pub probe: Option<Probe>,
}

/// The rows that tell a changed comparison `column op value` from the
/// reference's: those where `column` compares to `value` as one of
/// `telling` (`<`, `=`, `>`) says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// The table the column is of, as written, and the `FROM` item that
    /// names it (with its alias); `None` when the SQL does not say.
    pub table: Option<(String, String)>,
    pub column: String,
    pub value: String,
    /// The value for words: without a cast.
    pub shown: String,
    pub telling: Vec<&'static str>,
}

pub mod explain;
mod probe;
pub mod report;

/// The mutants of `sql` (one `SELECT` statement), without duplicates and
/// without the reference itself.
pub fn mutants(sql: &str) -> Result<Vec<Mutant>, String> {
    Ok(printed_and_mutants(sql)?.1)
}

/// `sql` as the parser prints it, and its mutants.
pub fn printed_and_mutants(sql: &str) -> Result<(String, Vec<Mutant>), String> {
    let parsed = Parser::parse_sql(&PostgreSqlDialect {}, sql).map_err(|e| e.to_string())?;
    let [statement @ Statement::Query(_)] = parsed.as_slice() else {
        return Err("a mutation report needs one SELECT statement".into());
    };
    let mut counting = Mutator::default();
    let _ = statement.clone().visit(&mut counting);
    let original = statement.to_string();
    let mut seen = BTreeSet::from([original.clone()]);
    let mut out = vec![];
    for (place, variants) in counting.places.iter().enumerate() {
        for variant in 0..*variants {
            let mut tree = statement.clone();
            let mut m = Mutator {
                target: Some((place, variant)),
                ..Mutator::default()
            };
            let _ = tree.visit(&mut m);
            let Some((class, change)) = m.done else {
                continue;
            };
            let sql = tree.to_string();
            if seen.insert(sql.clone()) {
                out.push(Mutant {
                    class,
                    sql,
                    change,
                    probe: m.probe,
                });
            }
        }
    }
    Ok((original, out))
}

/// Walks a tree: counts each place's variants (no target), or changes the
/// target place into its variant.
#[derive(Default)]
struct Mutator {
    next: usize,
    places: Vec<usize>,
    target: Option<(usize, usize)>,
    done: Option<(Class, String)>,
    probe: Option<Probe>,
    /// Per `SELECT` being walked (innermost last): the tables of its
    /// `FROM`, as (qualifier, table, `FROM` item).
    scopes: Vec<Vec<(String, String, String)>>,
}

impl Mutator {
    /// A place with `n` variants: counted, or, when it is the target,
    /// changed by `apply(variant)`, which says the change in words.
    fn place(&mut self, class: Class, n: usize, apply: impl FnOnce(usize) -> String) {
        if n == 0 {
            return;
        }
        let here = self.next;
        self.next += 1;
        match self.target {
            None => self.places.push(n),
            Some((place, variant)) if place == here && self.done.is_none() => {
                self.done = Some((class, apply(variant)));
            }
            _ => {}
        }
    }
}

const COMPARISONS: [BinaryOperator; 6] = [
    BinaryOperator::Lt,
    BinaryOperator::LtEq,
    BinaryOperator::Gt,
    BinaryOperator::GtEq,
    BinaryOperator::Eq,
    BinaryOperator::NotEq,
];
const AGGREGATES: [&str; 4] = ["sum", "avg", "min", "max"];

impl VisitorMut for Mutator {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        match expr {
            Expr::BinaryOp { op, left, right } if COMPARISONS.contains(op) => {
                let others: Vec<BinaryOperator> =
                    COMPARISONS.iter().filter(|o| *o != op).cloned().collect();
                let before = op.clone();
                let mut chosen = None;
                self.place(Class::Comparison, others.len(), |v| {
                    let said = format!("`{}` instead of `{op}`", others[v]);
                    *op = others[v].clone();
                    chosen = Some(op.clone());
                    said
                });
                if let Some(after) = chosen {
                    self.probe = self.probe_of(left, right, &before, &after);
                }
            }
            Expr::BinaryOp { op, .. } if matches!(op, BinaryOperator::And | BinaryOperator::Or) => {
                self.place(Class::AndOr, 1, |_| {
                    let (old, new) = if *op == BinaryOperator::And {
                        ("AND", BinaryOperator::Or)
                    } else {
                        ("OR", BinaryOperator::And)
                    };
                    let said = format!("`{new}` instead of `{old}`");
                    *op = new;
                    said
                });
            }
            Expr::IsNull(_) | Expr::IsNotNull(_) => {
                self.place(Class::NullTest, 1, |_| flip_null_test(expr));
            }
            Expr::Function(_) => self.function(expr),
            Expr::Value(v) => {
                if let Value::Number(n, long) = &v.value {
                    if let Ok(i) = n.parse::<i64>() {
                        let long = *long;
                        self.place(Class::Constant, 2, |variant| {
                            let changed = if variant == 0 { i + 1 } else { i - 1 };
                            v.value = Value::Number(changed.to_string(), long);
                            format!("`{changed}` instead of `{i}`")
                        });
                    }
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if let SetExpr::SetOperation {
            op: SetOperator::Union,
            set_quantifier,
            ..
        } = query.body.as_mut()
        {
            self.place(Class::Union, 1, |_| {
                if *set_quantifier == SetQuantifier::All {
                    *set_quantifier = SetQuantifier::None;
                    "`UNION` instead of `UNION ALL`".to_string()
                } else {
                    *set_quantifier = SetQuantifier::All;
                    "`UNION ALL` instead of `UNION`".to_string()
                }
            });
        }
        if let Some(OrderByKind::Expressions(keys)) = query.order_by.as_mut().map(|o| &mut o.kind) {
            self.order_keys(keys);
        }
        ControlFlow::Continue(())
    }

    fn post_visit_select(&mut self, _: &mut Select) -> ControlFlow<()> {
        self.scopes.pop();
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &mut Select) -> ControlFlow<()> {
        self.scopes.push(probe::from_tables(select));
        self.place(Class::Distinct, 1, |_| {
            if matches!(select.distinct, Some(Distinct::Distinct)) {
                select.distinct = None;
                "`DISTINCT` left out".to_string()
            } else {
                select.distinct = Some(Distinct::Distinct);
                "`DISTINCT` added".to_string()
            }
        });
        if let Some(condition) = select.selection.clone() {
            let conjuncts = split_and(condition);
            self.place(Class::DroppedCondition, conjuncts.len(), |v| {
                let said = format!("the condition `{}` left out", conjuncts[v]);
                let kept: Vec<Expr> = conjuncts
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != v)
                    .map(|(_, c)| c.clone())
                    .collect();
                select.selection = join_and(kept);
                said
            });
        }
        for table in &mut select.from {
            for join in &mut table.joins {
                self.join(&mut join.join_operator);
            }
        }
        if let GroupByExpr::Expressions(columns, _) = &mut select.group_by {
            let n = columns.len();
            self.place(Class::GroupBy, n, |v| {
                let dropped = columns.remove(v);
                format!("`{dropped}` left out of GROUP BY")
            });
        }
        ControlFlow::Continue(())
    }
}

impl Mutator {
    /// `COUNT` forms and the other aggregates.
    fn function(&mut self, expr: &mut Expr) {
        let Expr::Function(f) = expr else { return };
        let name = f.name.to_string().to_lowercase();
        let FunctionArguments::List(list) = &mut f.args else {
            return;
        };
        if AGGREGATES.contains(&name.as_str()) {
            let others: Vec<&str> = AGGREGATES.iter().filter(|a| **a != name).copied().collect();
            self.place(Class::Aggregate, others.len(), |v| {
                f.name =
                    sqlparser::ast::ObjectName::from(vec![sqlparser::ast::Ident::new(others[v])]);
                format!(
                    "`{}` instead of `{}`",
                    others[v].to_uppercase(),
                    name.to_uppercase()
                )
            });
            return;
        }
        if name != "count" || list.args.len() != 1 {
            return;
        }
        let star = matches!(
            list.args[0],
            FunctionArg::Unnamed(FunctionArgExpr::Wildcard)
        );
        let distinct = matches!(list.duplicate_treatment, Some(DuplicateTreatment::Distinct));
        // COUNT(*) has no column to count instead; COUNT(col) and COUNT(DISTINCT col)
        // become each other and COUNT(*).
        if star {
            return;
        }
        self.place(Class::Count, 2, |v| {
            let before = if distinct {
                "COUNT(DISTINCT ...)"
            } else {
                "COUNT(column)"
            };
            if v == 0 {
                list.args[0] = FunctionArg::Unnamed(FunctionArgExpr::Wildcard);
                list.duplicate_treatment = None;
                format!("`COUNT(*)` instead of `{before}`")
            } else if distinct {
                list.duplicate_treatment = None;
                format!("`COUNT(column)` instead of `{before}`")
            } else {
                list.duplicate_treatment = Some(DuplicateTreatment::Distinct);
                format!("`COUNT(DISTINCT ...)` instead of `{before}`")
            }
        });
    }

    /// Each sort key's direction flipped, and (of two or more) each dropped.
    fn order_keys(&mut self, keys: &mut Vec<sqlparser::ast::OrderByExpr>) {
        for key in keys.iter_mut() {
            if matches!(key.options.sort, Some(OrderBySort::Using(_))) {
                continue;
            }
            self.place(Class::OrderBy, 1, |_| {
                let desc = matches!(key.options.sort, Some(OrderBySort::Desc));
                key.options.sort = Some(if desc {
                    OrderBySort::Asc
                } else {
                    OrderBySort::Desc
                });
                let (was, now) = if desc {
                    ("DESC", "ASC")
                } else {
                    ("ASC", "DESC")
                };
                format!("`{} {now}` instead of `{} {was}`", key.expr, key.expr)
            });
        }
        let n = if keys.len() > 1 { keys.len() } else { 0 };
        self.place(Class::OrderBy, n, |v| {
            let dropped = keys.remove(v);
            format!("`{}` left out of ORDER BY", dropped.expr)
        });
    }

    /// The join type, and the join condition dropped.
    fn join(&mut self, op: &mut JoinOperator) {
        let kinds = ["JOIN", "LEFT JOIN", "RIGHT JOIN", "FULL JOIN"];
        let (kind, constraint) = match op {
            JoinOperator::Join(c) | JoinOperator::Inner(c) => (0, c.clone()),
            JoinOperator::Left(c) | JoinOperator::LeftOuter(c) => (1, c.clone()),
            JoinOperator::Right(c) | JoinOperator::RightOuter(c) => (2, c.clone()),
            JoinOperator::FullOuter(c) => (3, c.clone()),
            _ => return,
        };
        if matches!(constraint, JoinConstraint::Natural | JoinConstraint::None) {
            return;
        }
        let others: Vec<usize> = (0..kinds.len()).filter(|k| *k != kind).collect();
        self.place(Class::JoinType, others.len(), |v| {
            let c = constraint.clone();
            *op = match others[v] {
                0 => JoinOperator::Join(c),
                1 => JoinOperator::Left(c),
                2 => JoinOperator::Right(c),
                _ => JoinOperator::FullOuter(c),
            };
            format!("`{}` instead of `{}`", kinds[others[v]], kinds[kind])
        });
        if let JoinConstraint::On(condition) = &constraint {
            self.place(Class::DroppedJoinCondition, 1, |_| {
                let said = format!("the join condition `{condition}` left out");
                let on_true = JoinConstraint::On(Expr::Value(Value::Boolean(true).into()));
                *op = match kind {
                    0 => JoinOperator::Join(on_true),
                    1 => JoinOperator::Left(on_true),
                    2 => JoinOperator::Right(on_true),
                    _ => JoinOperator::FullOuter(on_true),
                };
                said
            });
        }
    }
}

fn flip_null_test(expr: &mut Expr) -> String {
    let placeholder = Expr::Value(Value::Null.into());
    match std::mem::replace(expr, placeholder) {
        Expr::IsNull(e) => {
            *expr = Expr::IsNotNull(e);
            "`IS NOT NULL` instead of `IS NULL`".into()
        }
        Expr::IsNotNull(e) => {
            *expr = Expr::IsNull(e);
            "`IS NULL` instead of `IS NOT NULL`".into()
        }
        other => {
            *expr = other;
            String::new()
        }
    }
}

/// The conjuncts of a condition (`a AND (b AND c)`: a, b, c).
fn split_and(e: Expr) -> Vec<Expr> {
    match e {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            let mut out = split_and(*left);
            out.extend(split_and(*right));
            out
        }
        Expr::Nested(inner)
            if matches!(
                *inner,
                Expr::BinaryOp {
                    op: BinaryOperator::And,
                    ..
                }
            ) =>
        {
            split_and(*inner)
        }
        other => vec![other],
    }
}

fn join_and(parts: Vec<Expr>) -> Option<Expr> {
    parts.into_iter().reduce(|a, b| Expr::BinaryOp {
        left: Box::new(a),
        op: BinaryOperator::And,
        right: Box::new(b),
    })
}

#[cfg(test)]
mod tests;
