//! A lab's SQL (its reference and starter, and the files they include),
//! run by pglab itself over the Postgres protocol, never by psql.
//!
//! The splitter of plain hand-ins ([`crate::sqlscript`]) cuts each
//! stored file into statements, `COPY ... FROM stdin` data and backslash
//! commands, and exactly those statements are sent, one after another as
//! psql sends them (each on its own unless the file opens a transaction;
//! the first error stops). Of psql's backslash commands only the includes
//! run (`\i`, `\ir` and their long names): they name files stored with the
//! lab, found by name among them, never on a disk. pg_dump's `\restrict`
//! lines, `\echo` and `\set ON_ERROR_STOP` change nothing and are passed
//! over. Every other one is refused with its file and line before any of
//! the lab's SQL runs: nothing of a lab's files runs on pglab's machine
//! (psql's `\!` is a shell; `\copy`, `\o` and `\w` use its files).

use super::tools::ToolError;
use crate::lab::{folder_of, include_of, resolve_include, SourceFile};
use crate::pgconn::error_text;
use crate::settings::PgServerSettings;
use crate::sqlscript::{self as plain, Kind, Piece};
use bytes::Bytes;
use futures_util::SinkExt;
use std::pin::Pin;
use tokio_postgres::{Client, CopyInSink};

/// How deeply includes may nest (a file that includes itself would
/// otherwise run until psql ran out of files).
const MAX_DEPTH: usize = 16;

/// Most includes one load runs: files that include each other many times
/// over would otherwise multiply into endless work.
const MAX_INCLUDES: usize = 10_000;

/// Longest a lab's SQL may run (an upload's check waits for it).
const TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(3600);

/// A stored file cut into its pieces.
struct Script {
    name: String,
    pieces: Vec<Piece>,
}

/// What a backslash command does when pglab runs a lab's SQL.
enum Meta {
    /// Runs the stored file of this index in the scripts.
    Include(usize),
    /// Changes nothing here.
    Skip,
}

/// Backslash commands that change nothing when pglab runs the SQL: pg_dump's
/// marks, messages, and psql's stop at the first error, which pglab always
/// does.
fn passed_over(word: &str, text: &str) -> bool {
    let mut args = text.split_whitespace().skip(1);
    match word {
        "restrict" | "unrestrict" | "echo" | "qecho" => true,
        "set" => {
            args.next() == Some("ON_ERROR_STOP")
                && args
                    .next()
                    .is_none_or(|v| matches!(v.to_ascii_lowercase().as_str(), "on" | "1" | "true"))
        }
        _ => false,
    }
}

/// A stored file's text: UTF-8 (a lab's SQL is sent as UTF-8, and a
/// replaced byte would change its data), without a byte order mark (psql
/// skips one).
fn text_of(file: &SourceFile) -> Result<&str, String> {
    let text = std::str::from_utf8(&file.bytes).map_err(|e| {
        let line = file.bytes[..e.valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1;
        format!(
            "{}:{line}: the file is not UTF-8: save it as UTF-8",
            file.file_name
        )
    })?;
    Ok(text.strip_prefix('\u{feff}').unwrap_or(text))
}

/// Why a backslash command is refused.
fn refused_meta(word: &str) -> String {
    let why = match word {
        "!" => "runs a shell",
        "copy" => "reads or writes a file on pglab's machine: put the rows in the SQL as COPY ... FROM stdin, as pg_dump writes them",
        "connect" | "c" => "switches databases: the lab's SQL runs in the database pglab builds",
        _ => "is one that pglab does not run",
    };
    format!(
        "the psql command \\{word} {why}. pglab runs a lab's SQL itself, and of psql's commands only \\i and \\ir (files of the lab); \\echo and pg_dump's \\restrict lines are passed over"
    )
}

/// Cuts `top` and every file it includes into pieces, and checks every
/// backslash command, before anything runs. The first script is `top`.
fn prepare(files: &[SourceFile], top: &str) -> Result<(Vec<Script>, Vec<Vec<Meta>>), String> {
    let cwd = folder_of(top);
    let mut scripts: Vec<Script> = vec![];
    let mut metas: Vec<Vec<Meta>> = vec![];
    let mut todo = vec![top.to_string()];
    while let Some(name) = todo.pop() {
        if scripts.iter().any(|s| s.name == name) {
            continue;
        }
        let file = files
            .iter()
            .find(|f| f.file_name == name)
            .ok_or_else(|| format!("{name} is not among the lab's files"))?;
        let pieces = plain::split(text_of(file)?);
        for p in &pieces {
            let at = format!("{name}:{}", p.line);
            match (p.kind, &p.refusal) {
                (Kind::Meta, _) => {}
                (_, Some(why)) => return Err(format!("{at}: {why}")),
                (_, None) => continue,
            }
            let word = plain::meta_word(&p.text);
            if p.inside_statement {
                return Err(format!(
                    "{at}: the psql command \\{word} stands inside a statement: end the statement with ; on a line before it"
                ));
            }
            if let Some((relative, arg)) = include_of(&p.text) {
                let target = resolve_include(&name, &cwd, relative, &arg)
                    .filter(|t| files.iter().any(|f| &f.file_name == t))
                    .ok_or_else(|| {
                        format!("{at}: includes {arg}, which is not among the lab's files")
                    })?;
                todo.push(target);
            } else if !passed_over(&word, &p.text) {
                return Err(format!("{at}: {}", refused_meta(&word)));
            }
        }
        scripts.push(Script { name, pieces });
        metas.push(vec![]);
    }
    // Each include, in order, as the index of the script it runs.
    for (i, script) in scripts.iter().enumerate() {
        metas[i] = script
            .pieces
            .iter()
            .filter(|p| p.kind == Kind::Meta)
            .map(|p| match include_of(&p.text) {
                Some((relative, arg)) => {
                    let target =
                        resolve_include(&script.name, &cwd, relative, &arg).expect("checked above");
                    Meta::Include(
                        scripts
                            .iter()
                            .position(|s| s.name == target)
                            .expect("prepared above"),
                    )
                }
                None => Meta::Skip,
            })
            .collect();
    }
    Ok((scripts, metas))
}

type Copy = Pin<Box<CopyInSink<Bytes>>>;

/// Runs the stored file `top` (a name among `files`) in database `db` of
/// `server` as pglab's admin, acting as `role` if given (then everything it
/// makes is owned by `role`), stopping at the first error.
pub async fn run(
    server: &PgServerSettings,
    db: &str,
    files: &[SourceFile],
    top: &str,
    role: Option<&str>,
) -> Result<(), ToolError> {
    let what = format!("loading {top}");
    let fail = |output: String| ToolError::Failed {
        what: what.clone(),
        output,
    };
    let (scripts, metas) = prepare(files, top).map_err(fail)?;
    // As a startup option, not `SET ROLE`: the database's own defaults
    // cannot change it, and `RESET ROLE` in the file comes back to it.
    let options = format!("-c role={}", role.unwrap_or("none"));
    let client = crate::pgconn::connect_with_options(server, db, &options)
        .await
        .map_err(|e| fail(e.to_string()))?;
    match tokio::time::timeout(TIME_LIMIT, execute(&client, &scripts, &metas)).await {
        Ok(done) => done.map_err(fail),
        Err(_) => {
            // Dropping the client ends the session; the statement it ran is
            // cancelled too, so that the database can be dropped.
            let cancel = client.cancel_token();
            let _ = cancel.cancel_query(tokio_postgres::NoTls).await;
            Err(fail(format!(
                "did not finish within {} minutes",
                TIME_LIMIT.as_secs() / 60
            )))
        }
    }
}

/// Sends the pieces in order, following includes, with `COPY` data through
/// copy-in.
async fn execute(client: &Client, scripts: &[Script], metas: &[Vec<Meta>]) -> Result<(), String> {
    // (script, next piece, next include of that script)
    let mut stack: Vec<(usize, usize, usize)> = vec![(0, 0, 0)];
    let mut copy: Option<(Copy, &Piece, &str)> = None;
    let (mut includes, mut steps) = (0, 0usize);
    while let Some(top) = stack.last_mut() {
        steps += 1;
        if steps % 1024 == 0 {
            // Long runs of comments and includes never wait on the server.
            tokio::task::yield_now().await;
        }
        let (s, i, m) = *top;
        let script = &scripts[s];
        let Some(piece) = script.pieces.get(i) else {
            finish_copy(copy.take()).await?;
            stack.pop();
            continue;
        };
        top.1 += 1;
        let at = |p: &Piece| format!("{}:{}", script.name, p.line);
        match piece.kind {
            Kind::Gap => {}
            Kind::Meta => {
                top.2 += 1;
                if let Meta::Include(next) = metas[s][m] {
                    includes += 1;
                    if includes > MAX_INCLUDES {
                        return Err(format!(
                            "{}: more than {MAX_INCLUDES} includes run (do files include each other many times?)",
                            at(piece)
                        ));
                    }
                    if stack.len() >= MAX_DEPTH {
                        return Err(format!(
                            "{}: includes nest more than {MAX_DEPTH} deep (does a file include itself?)",
                            at(piece)
                        ));
                    }
                    stack.push((next, 0, 0));
                }
            }
            Kind::Statement if piece.copy_in => {
                let sink = client
                    .copy_in::<_, Bytes>(piece.text.as_str())
                    .await
                    .map_err(|e| failed(&at(piece), piece, &e))?;
                copy = Some((Box::pin(sink), piece, script.name.as_str()));
            }
            Kind::Statement => client
                .batch_execute(&piece.text)
                .await
                .map_err(|e| failed(&at(piece), piece, &e))?,
            Kind::CopyData => {
                if let Some((sink, statement, name)) = copy.as_mut() {
                    let data = Bytes::from(piece.text.clone().into_bytes());
                    sink.send(data).await.map_err(|e| {
                        failed(&format!("{name}:{}", statement.line), statement, &e)
                    })?;
                }
            }
            Kind::CopyEnd => finish_copy(copy.take()).await?,
        }
    }
    Ok(())
}

async fn finish_copy(copy: Option<(Copy, &Piece, &str)>) -> Result<(), String> {
    if let Some((mut sink, statement, name)) = copy {
        sink.as_mut()
            .finish()
            .await
            .map_err(|e| failed(&format!("{name}:{}", statement.line), statement, &e))?;
    }
    Ok(())
}

/// An error with where it happened and the statement's first lines.
fn failed(at: &str, piece: &Piece, e: &tokio_postgres::Error) -> String {
    let code: Vec<&str> = piece.code().lines().take(5).collect();
    format!("{at}: {}\nSTATEMENT:  {}", error_text(e), code.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, text: &str) -> SourceFile {
        SourceFile {
            role: "include",
            file_name: name.into(),
            bytes: text.as_bytes().to_vec(),
        }
    }

    #[test]
    fn includes_are_found_among_the_stored_files_and_other_commands_are_refused() {
        let files = [
            file(
                "sql/ref.sql",
                "\\set ON_ERROR_STOP on\n\\ir parts/a.sql\n\\i common.sql\nSELECT 1;\n",
            ),
            file(
                "sql/parts/a.sql",
                "\\restrict abc\nSELECT 2;\n\\ir ../common.sql\n",
            ),
            file("sql/common.sql", "\\echo hello\nSELECT 3;\n"),
        ];
        let (scripts, metas) = prepare(&files, "sql/ref.sql").expect("prepared");
        let names: Vec<&str> = scripts.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["sql/ref.sql", "sql/common.sql", "sql/parts/a.sql"]);
        assert!(matches!(
            metas[0][..],
            [Meta::Skip, Meta::Include(2), Meta::Include(1)]
        ));
        assert!(matches!(metas[2][..], [Meta::Skip, Meta::Include(1)]));

        for (text, says) in [
            (
                "SELECT 1;\n\\! touch /tmp/x\n",
                "sql/ref.sql:2: the psql command \\! runs a shell",
            ),
            (
                "\\copy t from 'x.csv'\n",
                ":1: the psql command \\copy reads or writes a file",
            ),
            (
                "\\o /tmp/out\n",
                ":1: the psql command \\o is one that pglab does not run",
            ),
            ("\\set x 1\n", "\\set is one that pglab does not run"),
            (
                "\\set ON_ERROR_STOP off\n",
                "\\set is one that pglab does not run",
            ),
            (
                "COPY t FROM stdin; SELECT 1;\n1\n\\.\n",
                ":1: COPY ... FROM stdin must end its line",
            ),
            (
                "\\i /etc/passwd\n",
                ":1: includes /etc/passwd, which is not among the lab's files",
            ),
            ("\\ir ../../x.sql\n", "includes ../../x.sql, which is not"),
            ("\\ir missing.sql\n", "includes missing.sql, which is not"),
            (
                "SELECT 1\n\\i common.sql\n",
                ":2: the psql command \\i stands inside a statement",
            ),
        ] {
            let files = [
                file("sql/ref.sql", text),
                file("sql/common.sql", "SELECT 3;\n"),
            ];
            let e = prepare(&files, "sql/ref.sql").err().expect(text);
            assert!(e.contains(says), "{text:?}: {e}");
        }
        // A byte order mark is skipped; a file that is not UTF-8 is refused.
        let bom = [
            file("sql/ref.sql", "\u{feff}\\ir common.sql\n"),
            file("sql/common.sql", ""),
        ];
        assert!(prepare(&bom, "sql/ref.sql").is_ok());
        let mut latin = file("sql/ref.sql", "SELECT 1;\n");
        latin.bytes.extend_from_slice(b"SELECT 'caf\xe9';\n");
        let e = prepare(&[latin], "sql/ref.sql").err().expect("not UTF-8");
        assert!(e.contains("sql/ref.sql:2: the file is not UTF-8"), "{e}");
    }
}
