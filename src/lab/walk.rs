//! Helpers to walk a `yaml::Node` tree, collecting every error with its line
//! and field path instead of stopping at the first one.

use super::yaml::{Node, Value};
use std::fmt;

/// One problem in a lab file: `lab.yaml:14: tasks[2].checks[0]: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub file: String,
    pub line: usize,
    pub field: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        } else {
            write!(
                f,
                "{}:{}: {}: {}",
                self.file, self.line, self.field, self.message
            )
        }
    }
}

pub struct Walker {
    pub file: String,
    pub errors: Vec<FieldError>,
    /// Files the lab names must be plain names in its folder (an upload):
    /// checked before any path is looked at.
    pub confined: bool,
}

/// The entries of one mapping, after unknown keys were reported.
pub struct Fields<'a> {
    pub path: String,
    pub line: usize,
    entries: Vec<(&'a str, &'a Node)>,
}

impl<'a> Fields<'a> {
    pub fn get(&self, key: &str) -> Option<&'a Node> {
        self.entries
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .filter(|v| v.value != Value::Null)
    }

    pub fn has(&self, key: &str) -> bool {
        self.entries.iter().any(|(k, _)| *k == key)
    }

    pub fn child(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }
}

impl Walker {
    pub fn new(file: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            errors: vec![],
            confined: false,
        }
    }

    pub fn error(&mut self, line: usize, field: &str, message: impl Into<String>) {
        self.errors.push(FieldError {
            file: self.file.clone(),
            line,
            field: field.to_string(),
            message: message.into(),
        });
    }

    /// Reads a mapping whose keys must all be in `known`.
    pub fn fields<'a>(&mut self, node: &'a Node, path: &str, known: &[&str]) -> Option<Fields<'a>> {
        let Value::Map(entries) = &node.value else {
            self.error(
                node.line,
                path,
                format!("expected a mapping, found {}", node.kind()),
            );
            return None;
        };
        let mut out = Vec::new();
        for (key, value) in entries {
            let Value::Scalar(name) = &key.value else {
                self.error(key.line, path, "keys must be plain words");
                continue;
            };
            if !known.contains(&name.as_str()) {
                let field = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                self.error(
                    key.line,
                    &field,
                    format!(
                        "unknown key {name:?} (expected one of: {})",
                        known.join(", ")
                    ),
                );
                continue;
            }
            if out.iter().any(|(k, _)| k == name) {
                self.error(key.line, path, format!("duplicate key {name:?}"));
                continue;
            }
            out.push((name.as_str(), value));
        }
        Some(Fields {
            path: path.to_string(),
            line: node.line,
            entries: out,
        })
    }

    pub fn string(&mut self, f: &Fields, key: &str) -> Option<String> {
        let node = f.get(key)?;
        match &node.value {
            Value::Scalar(s) => Some(s.clone()),
            _ => {
                self.error(
                    node.line,
                    &f.child(key),
                    format!("expected text, found {}", node.kind()),
                );
                None
            }
        }
    }

    pub fn required_string(&mut self, f: &Fields, key: &str) -> Option<String> {
        if f.get(key).is_none() {
            self.error(f.line, &f.child(key), "is required");
            return None;
        }
        self.string(f, key)
    }

    pub fn boolean(&mut self, f: &Fields, key: &str) -> Option<bool> {
        let node = f.get(key)?;
        match &node.value {
            Value::Scalar(s) if s == "true" => Some(true),
            Value::Scalar(s) if s == "false" => Some(false),
            _ => {
                self.error(node.line, &f.child(key), "expected true or false");
                None
            }
        }
    }

    pub fn number(&mut self, f: &Fields, key: &str, min: u32, max: u32) -> Option<u32> {
        let node = f.get(key)?;
        let parsed = match &node.value {
            Value::Scalar(s) => s.parse::<u32>().ok().filter(|n| (min..=max).contains(n)),
            _ => None,
        };
        if parsed.is_none() {
            self.error(
                node.line,
                &f.child(key),
                format!("expected a whole number from {min} to {max}"),
            );
        }
        parsed
    }

    /// An RFC 3339 time, e.g. `2026-12-01T18:00:00+01:00`.
    pub fn time(&mut self, f: &Fields, key: &str) -> Option<chrono::DateTime<chrono::Utc>> {
        let s = self.string(f, key)?;
        match chrono::DateTime::parse_from_rfc3339(&s) {
            Ok(d) => Some(d.with_timezone(&chrono::Utc)),
            Err(e) => {
                let line = f.get(key).map_or(f.line, |n| n.line);
                self.error(
                    line,
                    &f.child(key),
                    format!("{s:?} is not an RFC 3339 time ({e}), e.g. 2026-12-01T18:00:00+01:00"),
                );
                None
            }
        }
    }

    /// The items of a list field (an absent field is an empty list).
    pub fn list<'a>(&mut self, f: &Fields<'a>, key: &str) -> Vec<&'a Node> {
        let Some(node) = f.get(key) else {
            return vec![];
        };
        match &node.value {
            Value::Seq(items) => items.iter().collect(),
            _ => {
                self.error(
                    node.line,
                    &f.child(key),
                    format!("expected a list, found {}", node.kind()),
                );
                vec![]
            }
        }
    }
}
