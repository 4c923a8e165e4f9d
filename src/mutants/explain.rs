//! What a surviving mutant tells the lab author: where its SQL differs
//! from the reference's, and a plain sentence on what the data lacks.

use super::{Class, Mutant, Probe};
use serde::Serialize;

/// Where a mutant's SQL differs from the reference's (both as the parser
/// prints them): the part removed, the part added, and a little context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diff {
    pub before: String,
    pub removed: String,
    pub added: String,
    pub after: String,
}

/// Characters of context on each side of a change.
const CONTEXT: usize = 40;

impl Diff {
    pub fn of(reference: &str, mutant: &str) -> Self {
        let (r, m): (Vec<char>, Vec<char>) =
            (reference.chars().collect(), mutant.chars().collect());
        // A word boundary at `p` of `s`.
        let edge = |s: &[char], p: usize| {
            p == 0 || p >= s.len() || s[p].is_whitespace() || s[p - 1].is_whitespace()
        };
        let mut start = r.iter().zip(&m).take_while(|(a, b)| a == b).count();
        let mut end = 0;
        while end < r.len() - start
            && end < m.len() - start
            && r[r.len() - 1 - end] == m[m.len() - 1 - end]
        {
            end += 1;
        }
        // Whole words: `>=` for `>`, not `=` alone.
        while start > 0 && !(edge(&r, start) && edge(&m, start)) {
            start -= 1;
        }
        while end > 0 && !(edge(&r, r.len() - end) && edge(&m, m.len() - end)) {
            end -= 1;
        }
        let text = |c: &[char]| c.iter().collect::<String>();
        // Context of whole words too.
        let mut before_from = start.saturating_sub(CONTEXT);
        while before_from > 0 && before_from < start && !r[before_from - 1].is_whitespace() {
            before_from += 1;
        }
        let mut after_to = (r.len() - end + CONTEXT).min(r.len());
        while after_to < r.len() && after_to > r.len() - end && !r[after_to].is_whitespace() {
            after_to -= 1;
        }
        Diff {
            before: format!(
                "{}{}",
                if before_from > 0 { "…" } else { "" },
                text(&r[before_from..start])
            ),
            removed: text(&r[start..r.len() - end]),
            added: text(&m[start..m.len() - end]),
            after: format!(
                "{}{}",
                text(&r[r.len() - end..after_to]),
                if after_to < r.len() { "…" } else { "" }
            ),
        }
    }

    /// One line, `[-removed-]{+added+}` as `git diff --word-diff` shows it.
    pub fn line(&self) -> String {
        let removed = if self.removed.trim().is_empty() {
            String::new()
        } else {
            format!("[-{}-]", self.removed.trim())
        };
        let added = if self.added.trim().is_empty() {
            String::new()
        } else {
            format!("{{+{}+}}", self.added.trim())
        };
        format!(
            "{}{removed}{added}{}",
            self.before,
            if self.after.starts_with(' ') || self.after.is_empty() {
                self.after.clone()
            } else {
                format!(" {}", self.after)
            }
        )
    }
}

fn where_words(telling: &[&str]) -> String {
    let words: Vec<&str> = telling
        .iter()
        .map(|t| match *t {
            "<" => "below",
            "=" => "exactly",
            _ => "above",
        })
        .collect();
    words.join(" or ")
}

/// The sentence for a survivor. `found` says, for a comparison with a
/// probe, whether the table has rows on each telling side (in the order of
/// `probe.telling`).
pub fn sentence(m: &Mutant, found: Option<&[bool]>) -> String {
    let same = format!("so {} gives the same rows", m.change);
    match (&m.probe, m.class) {
        (Some(p), Class::Comparison) => comparison(p, &same, found),
        (_, Class::Comparison) => {
            format!("no row that reaches this comparison lies where the two operators differ, {same}: add one")
        }
        (_, Class::AndOr) => format!(
            "no row meets one of the two conditions but not the other in a way that changes the result, {same}: add one"
        ),
        (_, Class::NullTest) => format!(
            "the rows give the same result whether the value is NULL or not, {same}: add a row where it is NULL and one where it is not"
        ),
        (_, Class::Count) => format!(
            "no counted value is NULL or repeated within a group, {same}: add a row whose counted column is NULL (a LEFT JOIN without a partner) or repeats"
        ),
        (_, Class::Aggregate) => format!(
            "on this data both aggregates agree (groups of one row, or of equal values), {same}: add a group with several different values"
        ),
        (_, Class::Constant) => format!(
            "no row lies between the two values where this constant is used (or the result ends before a LIMIT of it), {same}: add a row at the boundary"
        ),
        (_, Class::Distinct) => format!(
            "the query returns no row twice, {same}: add rows that it returns twice (if its columns include a key, no data can: the two are equivalent)"
        ),
        (_, Class::DroppedCondition) => format!(
            "no row fails this condition alone (the other conditions remove the same rows), {same}: add a row that only this condition keeps out"
        ),
        (_, Class::JoinType) => format!(
            "every row has a partner on the other side of the join, {same}: add a row without a partner"
        ),
        (_, Class::DroppedJoinCondition) => format!(
            "every row joins every row of the other side anyway, {same}: add rows that should not join"
        ),
        (_, Class::Union) => format!(
            "no row is returned twice by the two parts, {same}: add a row that both parts return"
        ),
        (_, Class::GroupBy) => format!(
            "within each group of the other columns this column has a single value, {same}: add two rows that differ only in it (if it depends on the other columns, as a column does on its table's primary key, no data can: the two are equivalent)"
        ),
        (_, Class::OrderBy) => format!(
            "no two rows tie on the sort keys before this one, or the key does not change the order here, {same}: add rows that it orders differently"
        ),
    }
}

fn comparison(p: &Probe, same: &str, found: Option<&[bool]>) -> String {
    let side = where_words(&p.telling);
    let column = p.column.rsplit('.').next().unwrap_or(&p.column);
    let value = &p.shown;
    let Some((table, _)) = &p.table else {
        return format!(
            "no row that reaches this comparison has `{column}` {side} {value}, {same}: add one"
        );
    };
    if found.is_some_and(|f| f.iter().any(|x| *x)) {
        format!(
            "`{table}` has rows with `{column}` {side} {value}, but the rest of the query leaves them out (or they change nothing), {same}: add one that the query keeps"
        )
    } else {
        format!("no row of `{table}` has `{column}` {side} {value}, {same}: add one")
    }
}

/// The probe's queries, one per telling side: whether the table has a row
/// there.
pub fn probe_queries(p: &Probe) -> Option<Vec<String>> {
    let (_, from) = p.table.as_ref()?;
    Some(
        p.telling
            .iter()
            .map(|op| {
                format!(
                    "SELECT EXISTS (SELECT 1 FROM {from} WHERE {} {op} {})",
                    p.column, p.value
                )
            })
            .collect(),
    )
}
