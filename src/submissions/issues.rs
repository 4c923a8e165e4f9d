//! What went wrong in a restore, one entry per error, with the statement or
//! TOC entry it came from, read from `pg_restore` / `psql` output.

use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RestoreIssue {
    /// The server's message, with DETAIL / HINT lines.
    pub message: String,
    /// The SQL that failed, when known.
    pub statement: Option<String>,
    /// The archive's TOC entry (`5; 2615 16385 SCHEMA cd postgres`).
    pub toc: Option<String>,
    /// For plain SQL: the line of the file where `statement` starts.
    pub line: Option<usize>,
}

impl RestoreIssue {
    pub fn message(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            statement: None,
            toc: None,
            line: None,
        }
    }
}

/// Errors in `pg_restore`'s stderr (it goes on after an error, so there may
/// be many). Lines look like:
///
/// ```text
/// pg_restore: from TOC entry 215; 1259 16390 TABLE t alice
/// pg_restore: error: could not execute query: ERROR:  syntax error ...
/// Command was: CREATE TABLE ...
/// ```
pub fn from_pg_restore(stderr: &str) -> Vec<RestoreIssue> {
    let mut out: Vec<RestoreIssue> = vec![];
    let mut toc: Option<String> = None;
    let mut in_command = false;
    for line in stderr.lines() {
        if let Some(rest) = line.strip_prefix("pg_restore: ") {
            in_command = false;
            if let Some(t) = rest.strip_prefix("from TOC entry ") {
                toc = Some(t.trim().to_string());
            } else if let Some(msg) = rest.strip_prefix("error: ") {
                let msg = msg
                    .strip_prefix("could not execute query: ")
                    .unwrap_or(msg)
                    .to_string();
                out.push(RestoreIssue {
                    message: msg,
                    statement: None,
                    toc: toc.take(),
                    line: None,
                });
            } else if rest.starts_with("warning: errors ignored on restore") {
                // A summary of the errors already listed.
            } else if rest.starts_with("warning: ") || rest.starts_with("while ") {
                // Context for the next error.
            }
        } else if let Some(cmd) = line.strip_prefix("Command was: ") {
            in_command = true;
            if let Some(last) = out.last_mut() {
                last.statement = Some(cmd.to_string());
            }
        } else if in_command && !line.is_empty() {
            if let Some(s) = out.last_mut().and_then(|l| l.statement.as_mut()) {
                s.push('\n');
                s.push_str(line);
            }
        } else if line.is_empty() {
            in_command = false;
        } else if is_excerpt(line) {
            // The server's excerpt; the whole command follows.
        } else if let Some(last) = out.last_mut() {
            // DETAIL:, HINT:, CONTEXT: lines of the server's message.
            last.message.push('\n');
            last.message.push_str(line.trim_end());
        }
    }
    for issue in &mut out {
        if let Some(s) = issue.statement.as_mut() {
            *s = s.trim_end().to_string();
        }
    }
    out
}

/// `LINE 1: ...` and the caret under it.
fn is_excerpt(line: &str) -> bool {
    line.starts_with("LINE ") || line.trim_start().starts_with('^')
}

/// The statement of a plain SQL file that ends on `line`: back to the line
/// after the previous statement's `;` (at most 40 lines).
fn statement_at(file: &Path, line: usize) -> Option<(usize, String)> {
    use std::io::BufRead;
    let reader = std::io::BufReader::new(std::fs::File::open(file).ok()?);
    let first = line.saturating_sub(40).max(1);
    let lines: Vec<String> = reader
        .split(b'\n')
        .skip(first - 1)
        .take(line + 1 - first)
        .map(|l| {
            String::from_utf8_lossy(&l.unwrap_or_default())
                .trim_end()
                .to_string()
        })
        .collect();
    let end = lines.len();
    let mut start = end.saturating_sub(1);
    while start > 0 {
        let prev = lines[start - 1].trim();
        if prev.ends_with(';') || prev.is_empty() || prev.starts_with("--") {
            break;
        }
        start -= 1;
    }
    Some((first + start, lines[start..end].join("\n")))
}

/// The error of `psql -v ON_ERROR_STOP=1 -f RUN`:
/// `psql:RUN:12: ERROR:  syntax error at or near "CRATE"` and the lines
/// after it, with the failing statement read back from `source` (the
/// uploaded file, whose lines are those of `RUN`).
pub fn from_psql(stderr: &str, run: &Path, source: &Path) -> Vec<RestoreIssue> {
    let mut out: Vec<RestoreIssue> = vec![];
    let prefix = format!("psql:{}:", run.display());
    let file = source;
    for line in stderr.lines() {
        if let Some(rest) = line.strip_prefix(&prefix) {
            let (number, msg) = rest.split_once(": ").unwrap_or(("", rest));
            let number = number.parse::<usize>().ok();
            let (start, statement) = match number.and_then(|n| statement_at(file, n)) {
                Some((s, text)) => (Some(s), Some(text)),
                None => (number, None),
            };
            out.push(RestoreIssue {
                message: msg.to_string(),
                statement,
                toc: None,
                line: start,
            });
        } else if is_excerpt(line) {
            // psql's excerpt: the statement is shown in full already.
        } else if let Some(last) = out.last_mut() {
            last.message.push('\n');
            last.message.push_str(line.trim_end());
        } else if !line.trim().is_empty() {
            out.push(RestoreIssue::message(
                line.trim_start_matches("psql: ").to_string(),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_restore_errors_with_toc_and_command() {
        let stderr = "pg_restore: while PROCESSING TOC:\n\
            pg_restore: from TOC entry 5; 2615 16385 SCHEMA cd postgres\n\
            pg_restore: error: could not execute query: ERROR:  permission denied for database x\n\
            Command was: CREATE SCHEMA cd;\n\
            \n\
            pg_restore: from TOC entry 215; 1259 16390 TABLE t alice\n\
            pg_restore: error: could not execute query: ERROR:  syntax error at or near \"(\"\n\
            LINE 1: CREATE TABLE t (\n\
            Command was: CREATE TABLE t (\n    a int\n);\n\
            \n\
            pg_restore: warning: errors ignored on restore: 2\n";
        let issues = from_pg_restore(stderr);
        assert_eq!(issues.len(), 2, "{issues:?}");
        assert_eq!(
            issues[0].toc.as_deref(),
            Some("5; 2615 16385 SCHEMA cd postgres")
        );
        assert_eq!(issues[0].statement.as_deref(), Some("CREATE SCHEMA cd;"));
        assert!(issues[1].message.contains("syntax error"));
        assert_eq!(
            issues[1].statement.as_deref(),
            Some("CREATE TABLE t (\n    a int\n);")
        );
    }

    #[test]
    fn psql_error_with_the_statement_and_its_line() {
        let dir = std::env::temp_dir().join(format!("pglab-issues-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("d.sql");
        std::fs::write(
            &file,
            "SET x = 1;\nCREATE TABLE a (i int);\nCRATE TABLE b\n  (i int);\nSELECT 1;\n",
        )
        .unwrap();
        let stderr = format!(
            "psql:{}:4: ERROR:  syntax error at or near \"CRATE\"\nLINE 1: CRATE TABLE b\n        ^\n",
            file.display()
        );
        let issues = from_psql(&stderr, &file, &file);
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].line, Some(3));
        assert_eq!(
            issues[0].statement.as_deref(),
            Some("CRATE TABLE b\n  (i int);")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
