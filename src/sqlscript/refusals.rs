//! Which backslash lines a dump may hold, and the check of a whole file
//! before anything of it runs.

use super::{for_each_piece, Kind, Piece};

/// The command word of a backslash line (`connect` of `\connect db`).
pub fn meta_word(text: &str) -> String {
    text.trim_start_matches('\\')
        .chars()
        .take_while(|c| !c.is_whitespace())
        .take(20)
        .collect()
}

/// Whether a backslash line may stand in a dump: pg_dump writes
/// `\restrict KEY` / `\unrestrict KEY` around its output and, with
/// `--create`, `\connect` (checked against the target by [`check_connect`]).
pub(super) fn meta_refusal(text: &str, mid_statement: bool) -> Option<String> {
    let word = meta_word(text);
    match word.as_str() {
        _ if mid_statement => Some(format!(
            "the psql command \\{word} stands inside a statement (only SQL is restored)"
        )),
        "restrict" | "unrestrict" | "connect" | "c" => None,
        _ => Some(format!(
            "the psql command \\{word} is not allowed in a submitted dump (only SQL is restored)"
        )),
    }
}

/// The database a `\connect` line names, in the forms pg_dump writes:
/// `\connect name`, `\connect "name"`, and
/// `\connect -reuse-previous=on "dbname='name'"`.
fn connect_target(text: &str) -> Option<String> {
    let args: Vec<&str> = text.split_whitespace().skip(1).collect();
    let arg = match args.as_slice() {
        [one] => *one,
        ["-reuse-previous=on", one] => one,
        _ => return None,
    };
    let unquoted = match arg.strip_prefix('"').and_then(|a| a.strip_suffix('"')) {
        Some(inner) => inner.replace("\"\"", "\""),
        None => arg.to_string(),
    };
    match unquoted
        .strip_prefix("dbname='")
        .and_then(|a| a.strip_suffix('\''))
    {
        Some(name) => Some(name.replace("\\'", "'")),
        None if !unquoted.contains(['=', '\'']) => Some(unquoted),
        None => None,
    }
}

/// `\connect` is let through only to the database being restored, where
/// pglab already is.
fn check_connect(piece: &Piece, target: &str) -> Option<String> {
    let word = meta_word(&piece.text);
    if piece.kind != Kind::Meta || !matches!(word.as_str(), "connect" | "c") {
        return None;
    }
    match connect_target(&piece.text) {
        Some(db) if db == target => None,
        _ => Some(
            "\\connect switches to another database: make the dump without --create (pg_dump -f db.sql DB)"
                .into(),
        ),
    }
}

/// Why a restore of this piece into `target` is refused, if it is.
pub fn refusal(piece: &Piece, target: &str) -> Option<String> {
    piece
        .refusal
        .clone()
        .or_else(|| check_connect(piece, target))
}

/// Why a file is refused: its line and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Checks a whole file before anything of it runs: every backslash command
/// is one pg_dump writes, and there is SQL in it.
pub fn check(reader: impl std::io::BufRead, target: &str) -> Result<(), Refusal> {
    let io = |e: std::io::Error| Refusal {
        line: 0,
        message: format!("cannot read the upload: {e}"),
    };
    let saw_sql = for_each_piece(
        reader,
        |p| match refusal(&p, target) {
            Some(message) => Err(Refusal {
                line: p.line,
                message,
            }),
            None => Ok(()),
        },
        io,
    )?;
    if !saw_sql {
        return Err(Refusal {
            line: 1,
            message: "the file holds no SQL: not a dump".into(),
        });
    }
    Ok(())
}
