//! Parsing the checks of a task.

use super::spec::{Check, Compare, ObjectName};
use super::walk::{Fields, Walker};
use super::yaml::{Node, Value};

const CHECK_KINDS: &[&str] = &["table", "view", "query", "sql"];
const CHECK_KEYS: &[&str] = &[
    "table", "view", "query", "sql", "compare", "expect", "ordered", "hint",
];

/// A check and its `hint:` (shown to the participant while it fails).
pub(super) fn check(w: &mut Walker, node: &Node, path: &str) -> Option<(Check, Option<String>)> {
    // The kind is the one key naming a check; report a misspelt kind as such.
    if let Value::Map(entries) = &node.value {
        for (k, _) in entries {
            if let Value::Scalar(name) = &k.value {
                if !CHECK_KEYS.contains(&name.as_str()) {
                    w.error(
                        k.line,
                        path,
                        format!(
                            "unknown check kind {name:?} (expected one of: {})",
                            CHECK_KINDS.join(", ")
                        ),
                    );
                    return None;
                }
            }
        }
    }
    let c = w.fields(node, path, CHECK_KEYS)?;
    let kinds: Vec<&str> = CHECK_KINDS.iter().copied().filter(|k| c.has(k)).collect();
    let [kind] = kinds[..] else {
        w.error(
            node.line,
            path,
            format!("a check has exactly one of: {}", CHECK_KINDS.join(", ")),
        );
        return None;
    };
    let allowed: &[&str] = match kind {
        "table" => &["compare"],
        "view" => &["expect", "ordered"],
        "query" => &["ordered"],
        _ => &[],
    };
    for extra in ["compare", "expect", "ordered"] {
        if c.has(extra) && !allowed.contains(&extra) {
            w.error(
                c.line,
                &c.child(extra),
                format!("does not apply to a {kind} check"),
            );
        }
    }
    let text = w.required_string(&c, kind)?;
    let ordered = w.boolean(&c, "ordered").unwrap_or(false);
    let name = |w: &mut Walker| match ObjectName::parse(&text) {
        Ok(n) => Some(n),
        Err(e) => {
            w.error(c.line, &c.child(kind), e);
            None
        }
    };
    let hint = w.string(&c, "hint");
    let check = match kind {
        "table" => Check::Table {
            name: name(w)?,
            compare: compare(w, &c)?,
        },
        "view" => Check::View {
            name: name(w)?,
            expect: w.string(&c, "expect"),
            ordered,
        },
        "query" => Check::Query { sql: text, ordered },
        _ => Check::Sql { sql: text },
    };
    Some((check, hint))
}

fn compare(w: &mut Walker, c: &Fields) -> Option<Vec<Compare>> {
    if !c.has("compare") {
        return Some(vec![Compare::Columns, Compare::Rows]);
    }
    let mut out = Vec::new();
    for item in w.list(c, "compare") {
        let found = match &item.value {
            Value::Scalar(s) => Compare::ALL.iter().find(|(n, _)| n == s).map(|(_, v)| *v),
            _ => None,
        };
        match found {
            Some(v) if !out.contains(&v) => out.push(v),
            Some(_) => {}
            None => {
                let names: Vec<&str> = Compare::ALL.iter().map(|(n, _)| *n).collect();
                w.error(
                    item.line,
                    &c.child("compare"),
                    format!("expected some of: {}", names.join(", ")),
                );
                return None;
            }
        }
    }
    if out.is_empty() {
        w.error(
            c.line,
            &c.child("compare"),
            "name at least one of: columns, primary_key, foreign_keys, rows",
        );
        return None;
    }
    Some(out)
}
