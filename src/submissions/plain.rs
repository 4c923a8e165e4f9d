//! Plain-SQL dumps run through `psql`, and psql runs backslash commands
//! (`\!` starts a shell on pglab's machine, `\connect` switches databases,
//! `\copy` reads and writes files there). Before a plain dump is restored,
//! this scanner reads it the way psql's lexer does and refuses every
//! backslash command outside strings, comments and COPY data, except the
//! `\restrict` / `\unrestrict` pair that pg_dump itself writes.
//!
//! Where the scanner and psql could disagree (a string with
//! `standard_conforming_strings = off`), the scanner ends the string earlier
//! than psql would, so it sees more text as code: it errs towards refusing.

/// Why a plain dump is refused: line number and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub line: usize,
    pub message: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Code,
    /// `'...'`; `escapes` for E'...' strings.
    Quote {
        escapes: bool,
    },
    Ident,
    LineComment,
    /// Nesting depth of `/* */`.
    BlockComment(u32),
    /// `$tag$ ... $tag$`, index into the tag list.
    Dollar,
}

pub struct Scanner {
    state: State,
    tag: String,
    /// The current statement's text so far, to spot `COPY ... FROM stdin`.
    statement: String,
    in_copy: bool,
    line: usize,
    pub refusal: Option<Refusal>,
    /// Whether anything that looks like SQL was seen.
    pub saw_sql: bool,
    /// Statements completed on the current line, and the last one's text.
    ended_here: usize,
    last_statement: String,
    /// Whether the current line started outside any statement.
    clean_start: bool,
}

impl Default for Scanner {
    fn default() -> Self {
        Self::new()
    }
}

fn allowed_meta(rest: &str) -> bool {
    let word: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect();
    matches!(word.as_str(), "restrict" | "unrestrict")
}

fn meta_message(rest: &str) -> String {
    let word: String = rest
        .chars()
        .take_while(|c| !c.is_whitespace())
        .take(20)
        .collect();
    match word.as_str() {
        "connect" | "c" => "\\connect switches to another database: make the dump without --create (pg_dump -f db.sql DB)".to_string(),
        _ => format!("the psql command \\{word} is not allowed in a submitted dump (only SQL is restored)"),
    }
}

impl Scanner {
    pub fn new() -> Self {
        Self {
            state: State::Code,
            tag: String::new(),
            statement: String::new(),
            in_copy: false,
            line: 0,
            refusal: None,
            saw_sql: false,
            ended_here: 0,
            last_statement: String::new(),
            clean_start: true,
        }
    }

    /// Whether the line just fed is exactly one statement that sets an
    /// owner or privileges (`ALTER ... OWNER TO`, `GRANT`, `REVOKE`): the
    /// restore skips those, as `pg_restore --no-owner --no-privileges` does
    /// for archives, since the dump's roles are not the group's.
    pub fn owner_or_privilege_line(&self) -> bool {
        let s = &self.last_statement;
        self.clean_start
            && self.ended_here == 1
            && self.statement.trim().is_empty()
            && self.state == State::Code
            && (s.starts_with("alter ") && s.contains(" owner to ")
                || s.starts_with("grant ")
                || s.starts_with("revoke "))
    }

    fn refuse(&mut self, message: String) {
        if self.refusal.is_none() {
            self.refusal = Some(Refusal {
                line: self.line,
                message,
            });
        }
    }

    /// Feeds one line (without its newline).
    pub fn line(&mut self, text: &str) {
        self.line += 1;
        self.clean_start =
            self.state == State::Code && self.statement.trim().is_empty() && !self.in_copy;
        self.ended_here = 0;
        if self.refusal.is_some() {
            return;
        }
        if self.in_copy {
            if text == "\\." {
                self.in_copy = false;
            }
            return;
        }
        let chars: Vec<char> = text.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            let next = chars.get(i + 1).copied();
            match self.state {
                State::Code => match c {
                    '\'' => {
                        let escapes = i > 0
                            && matches!(chars[i - 1], 'e' | 'E')
                            && (i < 2 || !chars[i - 2].is_alphanumeric() && chars[i - 2] != '_');
                        self.state = State::Quote { escapes };
                    }
                    '"' => self.state = State::Ident,
                    '-' if next == Some('-') => {
                        self.state = State::LineComment;
                        i += 1;
                    }
                    '/' if next == Some('*') => {
                        self.state = State::BlockComment(1);
                        i += 1;
                    }
                    '$' => {
                        // $tag$ where tag is empty or an identifier not
                        // starting with a digit ($1 is a parameter).
                        let rest: String = chars[i + 1..].iter().collect();
                        if let Some(end) = rest.find('$') {
                            let tag = &rest[..end];
                            let ok = tag.chars().all(|c| c.is_alphanumeric() || c == '_')
                                && !tag.starts_with(|c: char| c.is_ascii_digit());
                            if ok {
                                self.tag = tag.to_string();
                                self.state = State::Dollar;
                                i += tag.chars().count() + 1;
                            }
                        }
                    }
                    '\\' => {
                        let rest: String = chars[i + 1..].iter().collect();
                        if allowed_meta(&rest) && chars[..i].iter().all(|c| c.is_whitespace()) {
                            return; // pg_dump's own \restrict line
                        }
                        self.refuse(meta_message(&rest));
                        return;
                    }
                    ';' => {
                        self.end_statement();
                    }
                    _ => {
                        if !c.is_whitespace() {
                            self.saw_sql |= c.is_ascii_alphabetic();
                            self.statement.push(c);
                        } else if !self.statement.is_empty() {
                            self.statement.push(' ');
                        }
                    }
                },
                State::Quote { escapes } => {
                    if escapes && c == '\\' {
                        i += 1; // the escaped character
                    } else if c == '\'' {
                        if next == Some('\'') {
                            i += 1;
                        } else {
                            self.state = State::Code;
                        }
                    }
                }
                State::Ident => {
                    if c == '"' {
                        if next == Some('"') {
                            i += 1;
                        } else {
                            self.state = State::Code;
                        }
                    }
                }
                State::LineComment => {}
                State::BlockComment(depth) => {
                    if c == '*' && next == Some('/') {
                        self.state = if depth == 1 {
                            State::Code
                        } else {
                            State::BlockComment(depth - 1)
                        };
                        i += 1;
                    } else if c == '/' && next == Some('*') {
                        self.state = State::BlockComment(depth + 1);
                        i += 1;
                    }
                }
                State::Dollar => {
                    if c == '$' {
                        let closing = format!("{}$", self.tag);
                        let rest: String = chars[i + 1..].iter().collect();
                        if rest.starts_with(&closing) {
                            self.state = State::Code;
                            i += closing.chars().count();
                        }
                    }
                }
            }
            i += 1;
        }
        if self.state == State::LineComment {
            self.state = State::Code;
        }
        if !self.statement.is_empty() {
            self.statement.push(' ');
        }
    }

    fn end_statement(&mut self) {
        let s = self.statement.trim().to_ascii_lowercase();
        self.ended_here += 1;
        self.last_statement = s.clone();
        // COPY ... FROM stdin: data lines follow until "\.".
        if s.starts_with("copy ") && s.ends_with("from stdin") {
            self.in_copy = true;
        }
        self.statement.clear();
    }
}

/// Copies a plain dump for psql, with the owner and privilege statements
/// commented out (line numbers stay the same); refuses psql commands.
pub fn prepare(src: &std::path::Path, dst: &std::path::Path) -> Result<usize, String> {
    use std::io::{BufRead, Write};
    let io = |e: std::io::Error| format!("preparing the dump: {e}");
    let reader = std::io::BufReader::new(std::fs::File::open(src).map_err(io)?);
    let mut out = std::io::BufWriter::new(std::fs::File::create(dst).map_err(io)?);
    let mut scanner = Scanner::new();
    let mut skipped = 0;
    for line in reader.split(b'\n') {
        let bytes = line.map_err(io)?;
        let text = String::from_utf8_lossy(&bytes);
        scanner.line(text.strip_suffix('\r').unwrap_or(&text));
        if let Some(r) = &scanner.refusal {
            return Err(format!("line {}: {}", r.line, r.message));
        }
        if scanner.owner_or_privilege_line() {
            out.write_all(b"-- (pglab: skipped) ").map_err(io)?;
            skipped += 1;
        }
        out.write_all(&bytes).map_err(io)?;
        out.write_all(b"\n").map_err(io)?;
    }
    out.flush().map_err(io)?;
    Ok(skipped)
}

/// Scans a whole text (for tests and small files).
pub fn scan(text: &str) -> Scanner {
    let mut s = Scanner::new();
    for l in text.lines() {
        s.line(l);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(text: &str) -> Option<usize> {
        scan(text).refusal.map(|r| r.line)
    }

    #[test]
    fn pg_dump_output_passes() {
        let dump = "\\restrict abc123\n--\n-- PostgreSQL database dump\n--\nSET standard_conforming_strings = on;\n\
            CREATE TABLE t (a text);\nCOPY public.t (a) FROM stdin;\nback\\\\slash \\! not a command\n\\N\n\\.\n\
            CREATE FUNCTION f() RETURNS text LANGUAGE sql AS $_$ SELECT '\\!' $_$;\n\
            COMMENT ON TABLE t IS 'it''s \\ fine';\n/* nested /* \\! */ still comment */ SELECT 1;\n\
            SELECT E'\\'' AS q; -- \\! in a comment\n\\unrestrict abc123\n";
        let s = scan(dump);
        assert_eq!(s.refusal, None);
        assert!(s.saw_sql);
    }

    #[test]
    fn owner_and_privilege_lines_are_found() {
        let mut s = Scanner::new();
        let mut found = vec![];
        for (i, l) in [
            "ALTER TABLE cd.bookings OWNER TO pglab_admin;",
            "ALTER TABLE cd.bookings ADD PRIMARY KEY (bookid);",
            "GRANT SELECT ON cd.members TO PUBLIC;",
            "CREATE TABLE x (a int); GRANT ALL ON x TO y;",
            "COMMENT ON TABLE x IS 'GRANT';",
        ]
        .iter()
        .enumerate()
        {
            s.line(l);
            if s.owner_or_privilege_line() {
                found.push(i);
            }
        }
        assert_eq!(found, vec![0, 2]);
    }

    #[test]
    fn backslash_commands_are_refused_with_their_line() {
        assert_eq!(refused("SELECT 1;\n\\! rm -rf /\n"), Some(2));
        assert_eq!(refused("SELECT 1; \\! id\n"), Some(1));
        assert_eq!(refused("SELECT 'a' \\gexec\n"), Some(1));
        let connect = scan("\\connect postgres\nSELECT 1;");
        assert!(connect
            .refusal
            .expect("refused")
            .message
            .contains("--create"));
        assert_eq!(
            refused("SELECT 'x\\' \\! id -- '\n"),
            Some(1),
            "ends the string early"
        );
        assert_eq!(refused("SELECT $$ a $$ \\copy t to '/tmp/x'\n"), Some(1));
        assert_eq!(refused("SELECT $1 \\! id\n"), Some(1));
        assert_eq!(refused("  \\restrict k\n\\i /etc/passwd\n"), Some(2));
        // After COPY data ends, commands count again.
        assert_eq!(refused("COPY t FROM stdin;\n\\!\n\\.\n\\! id\n"), Some(4));
    }
}
