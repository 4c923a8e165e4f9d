//! What went wrong in a restore, one entry per error, with the statement or
//! TOC entry it came from, read from `pg_restore` output (plain dumps
//! report their errors with statement and line directly).

pub use crate::control::RestoreIssue;

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
}
