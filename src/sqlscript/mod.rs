//! SQL scripts (plain-SQL hand-ins, a lab's reference and starter), split
//! into the pieces pglab executes itself.
//!
//! pglab never hands such a file to `psql`: psql runs backslash
//! commands on pglab's machine (`\!` is a shell), and any difference between
//! a safety scanner and psql's own lexer would let one through. Instead this
//! splitter cuts the file into statements, `COPY ... FROM stdin` data and
//! backslash lines, and the restore sends exactly those statements to the
//! server (see `submissions::plain_restore` and `provision::lab_sql`). What the splitter does not recognise is sent
//! as SQL, where the server refuses it: a misread can fail a restore, never
//! run anything outside the database.
//!
//! The lexing follows the server's scanner where it matters for splitting:
//! strings (`'..'`, `E'..'` with backslash escapes), quoted identifiers,
//! dollar quotes (`$tag$`, but not a `$` inside or after an identifier),
//! nested block comments, `--` comments ended by LF or CR, parentheses, and
//! psql's rule for `BEGIN ATOMIC` bodies of `CREATE FUNCTION/PROCEDURE`.

/// What a piece of the file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Whitespace and comments between statements; not executed.
    Gap,
    /// One statement with the whitespace and comments before it and its `;`.
    Statement,
    /// Lines of `COPY ... FROM stdin` data (at most about 1 MB a piece).
    CopyData,
    /// The `\.` line that ends COPY data.
    CopyEnd,
    /// A backslash command of psql, to the end of its line.
    Meta,
}

/// A piece of the input; the pieces of a file, joined, are the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub kind: Kind,
    pub text: String,
    /// Line (from 1) where the statement's code, or the piece, starts.
    pub line: usize,
    /// For statements: `COPY ... FROM stdin`, whose data pieces follow.
    pub copy_in: bool,
    /// For statements: sets an owner or privileges (`ALTER ... OWNER TO`,
    /// `GRANT`, `REVOKE`, `ALTER DEFAULT PRIVILEGES`). The restore skips
    /// them, as `pg_restore --no-owner --no-privileges` does for archives:
    /// the dump's roles are not the group's.
    pub owner_or_privileges: bool,
    /// Why the file cannot be restored because of this piece.
    pub refusal: Option<String>,
    /// For backslash commands: it stands after code of a statement not yet
    /// ended (or after a `COPY ... FROM stdin` whose data did not begin).
    pub inside_statement: bool,
}

impl Piece {
    fn new(kind: Kind, text: String, line: usize) -> Self {
        Self {
            kind,
            text,
            line,
            copy_in: false,
            owner_or_privileges: false,
            refusal: None,
            inside_statement: false,
        }
    }

    /// The statement without the comments and blank lines before it.
    pub fn code(&self) -> &str {
        let mut rest = self.text.as_str();
        loop {
            let trimmed = rest.trim_start();
            if let Some(after) = trimmed.strip_prefix("--") {
                rest = after.find(['\n', '\r']).map_or("", |i| &after[i..]);
            } else {
                return trimmed.trim_end();
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    Code,
    /// `'...'`; `escapes` for `E'...'`.
    Quote {
        escapes: bool,
    },
    Ident,
    LineComment,
    /// Nesting depth of `/* */`.
    Block(u32),
    Dollar,
}

/// A COPY data piece is handed on once it reaches this size.
const COPY_CHUNK: usize = 1 << 20;
const COPY_LINE: &str = "COPY ... FROM stdin must end its line: its data starts on the next line";
/// Words of a statement kept to recognise what it is.
const FIRST_WORDS: usize = 4;

/// Splits text fed line by line (each line with its `\n`, if it has one).
pub struct Splitter {
    lex: Lex,
    tag: String,
    buf: String,
    buf_line: usize,
    code_line: Option<usize>,
    line: usize,
    word: String,
    word_is_number: bool,
    first_words: Vec<String>,
    previous_word: String,
    words: usize,
    paren: u32,
    begin_depth: u32,
    copy_in: bool,
    owner_to: bool,
    /// A COPY statement ended on this line; data starts on the next.
    copy_pending: bool,
    in_copy: bool,
    /// Whether any statement had a letter in it.
    pub saw_sql: bool,
}

impl Default for Splitter {
    fn default() -> Self {
        Self::new()
    }
}

fn ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_' || !c.is_ascii()
}

fn dollar_tag_char(c: char, first: bool) -> bool {
    c.is_alphabetic() || c == '_' || !c.is_ascii() || (!first && c.is_ascii_digit())
}

/// The tag of a dollar quote opening at `chars[i]` (`$` or `$tag$`).
fn dollar_tag(chars: &[char], i: usize) -> Option<String> {
    let mut j = i + 1;
    while j < chars.len() && dollar_tag_char(chars[j], j == i + 1) {
        j += 1;
    }
    (chars.get(j) == Some(&'$')).then(|| chars[i + 1..j].iter().collect())
}

impl Splitter {
    pub fn new() -> Self {
        Self {
            lex: Lex::Code,
            tag: String::new(),
            buf: String::new(),
            buf_line: 1,
            code_line: None,
            line: 0,
            word: String::new(),
            word_is_number: false,
            first_words: Vec::new(),
            previous_word: String::new(),
            words: 0,
            paren: 0,
            begin_depth: 0,
            copy_in: false,
            owner_to: false,
            copy_pending: false,
            in_copy: false,
            saw_sql: false,
        }
    }

    /// Feeds one line (with its line end, if any) and appends the pieces
    /// that it completed to `out`.
    pub fn feed(&mut self, text: &str, out: &mut Vec<Piece>) {
        self.line += 1;
        if self.in_copy {
            self.copy_line(text, out);
            return;
        }
        if self.buf.is_empty() {
            self.buf_line = self.line;
        }
        let chars: Vec<char> = text.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            i = match self.lex {
                Lex::Code if chars[i] == '\\' => {
                    self.end_word();
                    self.meta(chars[i..].iter().collect(), out);
                    return;
                }
                Lex::Code => self.code_char(&chars, i, out),
                _ => self.quoted_char(&chars, i),
            };
        }
        if self.copy_pending {
            self.start_copy_data(out);
        }
    }

    /// One character inside a string, quoted identifier, comment or dollar
    /// quote; returns the index of the next one.
    fn quoted_char(&mut self, chars: &[char], i: usize) -> usize {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        self.buf.push(c);
        match self.lex {
            Lex::Quote { escapes: true } if c == '\\' && next.is_some() => {
                self.buf.push(chars[i + 1]);
                return i + 2;
            }
            Lex::Quote { .. } if c == '\'' && next == Some('\'') => {
                self.buf.push('\'');
                return i + 2;
            }
            Lex::Quote { .. } if c == '\'' => self.lex = Lex::Code,
            Lex::Ident if c == '"' && next == Some('"') => {
                self.buf.push('"');
                return i + 2;
            }
            Lex::Ident if c == '"' => self.lex = Lex::Code,
            Lex::LineComment if c == '\n' || c == '\r' => self.lex = Lex::Code,
            Lex::Block(depth) if c == '*' && next == Some('/') => {
                self.buf.push('/');
                self.lex = if depth == 1 {
                    Lex::Code
                } else {
                    Lex::Block(depth - 1)
                };
                return i + 2;
            }
            Lex::Block(depth) if c == '/' && next == Some('*') => {
                self.buf.push('*');
                self.lex = Lex::Block(depth + 1);
                return i + 2;
            }
            Lex::Dollar
                if c == '$' && dollar_tag(chars, i).as_deref() == Some(self.tag.as_str()) =>
            {
                // The closing tag and its `$`.
                let len = self.tag.chars().count() + 1;
                self.buf.extend(&chars[i + 1..i + 1 + len]);
                self.lex = Lex::Code;
                return i + 1 + len;
            }
            _ => {}
        }
        i + 1
    }

    /// At the end of the line of a `COPY ... FROM stdin`: what is left of
    /// the line must be blank, and the data starts on the next line.
    fn start_copy_data(&mut self, out: &mut Vec<Piece>) {
        self.copy_pending = false;
        self.in_copy = true;
        self.end_word();
        let rest = std::mem::take(&mut self.buf);
        if !rest.is_empty() {
            let mut piece = Piece::new(Kind::Gap, rest, self.buf_line);
            if self.code_line.is_some() || self.lex != Lex::Code {
                piece.kind = Kind::Statement;
                piece.refusal = Some(COPY_LINE.into());
            }
            out.push(piece);
        }
        self.reset_statement();
    }

    /// One character of code; returns the index of the next one.
    fn code_char(&mut self, chars: &[char], i: usize, out: &mut Vec<Piece>) -> usize {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        // `E'...'`: a lone `e` right before the quote.
        let e_string = c == '\'' && self.word == "e";
        let continues_word = !self.word.is_empty()
            && (c.is_alphanumeric()
                || c == '_'
                || !c.is_ascii()
                || c == '$' && !self.word_is_number);
        if continues_word {
            self.word.extend(c.to_lowercase());
            self.buf.push(c);
            return i + 1;
        }
        self.end_word();
        if c.is_whitespace() {
            self.buf.push(c);
            return i + 1;
        }
        match c {
            '-' if next == Some('-') => {
                self.buf.push_str("--");
                self.lex = Lex::LineComment;
                return i + 2;
            }
            '/' if next == Some('*') => {
                self.buf.push_str("/*");
                self.lex = Lex::Block(1);
                return i + 2;
            }
            _ => {}
        }
        self.code_line.get_or_insert(self.line);
        self.buf.push(c);
        match c {
            '\'' => self.lex = Lex::Quote { escapes: e_string },
            '"' => {
                self.lex = Lex::Ident;
                self.count_word("\"".into());
            }
            '$' => {
                if let Some(tag) = dollar_tag(chars, i) {
                    self.buf.extend(&chars[i + 1..i + 2 + tag.chars().count()]);
                    let skip = tag.chars().count() + 1;
                    self.tag = tag;
                    self.lex = Lex::Dollar;
                    return i + 1 + skip;
                }
            }
            '(' => self.paren += 1,
            ')' => self.paren = self.paren.saturating_sub(1),
            ';' if self.paren == 0 && self.begin_depth == 0 => self.end_statement(out),
            c if ident_start(c) || c.is_ascii_digit() => {
                self.word_is_number = c.is_ascii_digit();
                self.word.extend(c.to_lowercase());
                self.saw_sql |= c.is_alphabetic();
            }
            _ => {}
        }
        i + 1
    }

    fn end_word(&mut self) {
        if self.word.is_empty() {
            return;
        }
        let word = std::mem::take(&mut self.word);
        self.count_word(word);
    }

    fn count_word(&mut self, word: String) {
        if self.first_words.len() < FIRST_WORDS {
            self.first_words.push(word.clone());
        }
        self.words += 1;
        let first = |n: usize| self.first_words.get(n).map_or("", String::as_str);
        // psql's rule: inside CREATE [OR REPLACE] FUNCTION|PROCEDURE, BEGIN
        // ... END (and CASE ... END within it) holds semicolons.
        let routine = first(0) == "create"
            && (matches!(first(1), "function" | "procedure")
                || first(1) == "or" && matches!(first(3), "function" | "procedure"));
        if routine && self.paren == 0 {
            match word.as_str() {
                "begin" => self.begin_depth += 1,
                "case" if self.begin_depth >= 1 => self.begin_depth += 1,
                "end" => self.begin_depth = self.begin_depth.saturating_sub(1),
                _ => {}
            }
        }
        if first(0) == "copy" && self.previous_word == "from" && word == "stdin" {
            self.copy_in = true;
        }
        if self.previous_word == "owner" && word == "to" {
            self.owner_to = true;
        }
        self.previous_word = word;
    }

    fn reset_statement(&mut self) {
        self.code_line = None;
        self.first_words.clear();
        self.previous_word.clear();
        self.words = 0;
        self.paren = 0;
        self.begin_depth = 0;
        self.copy_in = false;
        self.owner_to = false;
        self.buf_line = self.line;
    }

    fn end_statement(&mut self, out: &mut Vec<Piece>) {
        let first = |n: usize| self.first_words.get(n).map_or("", String::as_str);
        let mut piece = Piece::new(
            Kind::Statement,
            std::mem::take(&mut self.buf),
            self.code_line.unwrap_or(self.buf_line),
        );
        piece.copy_in = self.copy_in;
        if self.copy_pending {
            piece.refusal = Some(COPY_LINE.into());
        }
        piece.owner_or_privileges = matches!(first(0), "grant" | "revoke")
            || first(0) == "alter" && (self.owner_to || first(1) == "default");
        self.copy_pending |= self.copy_in;
        out.push(piece);
        self.reset_statement();
    }

    /// A backslash in code: psql would read a command to the end of the line.
    fn meta(&mut self, rest: String, out: &mut Vec<Piece>) {
        let mid_statement = self.code_line.is_some();
        let before = std::mem::take(&mut self.buf);
        if !before.is_empty() {
            let kind = if mid_statement {
                Kind::Statement
            } else {
                Kind::Gap
            };
            out.push(Piece::new(
                kind,
                before,
                self.code_line.unwrap_or(self.buf_line),
            ));
        }
        let mut piece = Piece::new(Kind::Meta, rest, self.line);
        piece.inside_statement = mid_statement || self.copy_pending;
        piece.refusal = meta_refusal(&piece.text, piece.inside_statement);
        out.push(piece);
        self.reset_statement();
        self.buf_line = self.line + 1;
    }

    fn copy_line(&mut self, text: &str, out: &mut Vec<Piece>) {
        if matches!(text, "\\." | "\\.\n" | "\\.\r\n") {
            self.flush_copy(out);
            out.push(Piece::new(Kind::CopyEnd, text.to_string(), self.line));
            self.in_copy = false;
            self.buf_line = self.line + 1;
            return;
        }
        if self.buf.is_empty() {
            self.buf_line = self.line;
        }
        self.buf.push_str(text);
        if self.buf.len() >= COPY_CHUNK {
            self.flush_copy(out);
        }
    }

    fn flush_copy(&mut self, out: &mut Vec<Piece>) {
        if !self.buf.is_empty() {
            out.push(Piece::new(
                Kind::CopyData,
                std::mem::take(&mut self.buf),
                self.buf_line,
            ));
        }
    }

    /// Ends the input: what is left becomes the last piece (a statement
    /// without `;` is run, as psql runs it at the end of a file).
    pub fn finish(mut self, out: &mut Vec<Piece>) {
        if self.in_copy {
            self.flush_copy(out);
            return;
        }
        self.end_word();
        if self.buf.is_empty() {
            return;
        }
        let kind = if self.code_line.is_some() {
            Kind::Statement
        } else {
            Kind::Gap
        };
        let line = self.code_line.unwrap_or(self.buf_line);
        out.push(Piece::new(kind, std::mem::take(&mut self.buf), line));
    }
}

/// Reads a file line by line through the splitter, calling `each` with the
/// pieces in order; stops at the first error `each` returns. Returns whether
/// the file had any SQL in it.
pub fn for_each_piece<E>(
    mut reader: impl std::io::BufRead,
    mut each: impl FnMut(Piece) -> Result<(), E>,
    io: impl Fn(std::io::Error) -> E,
) -> Result<bool, E> {
    let mut splitter = Splitter::new();
    let mut line = Vec::new();
    let mut pieces = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).map_err(&io)? == 0 {
            break;
        }
        splitter.feed(&String::from_utf8_lossy(&line), &mut pieces);
        for p in pieces.drain(..) {
            each(p)?;
        }
    }
    let saw_sql = splitter.saw_sql;
    splitter.finish(&mut pieces);
    for p in pieces.drain(..) {
        each(p)?;
    }
    Ok(saw_sql)
}

/// Splits a whole text (tests and small inputs).
pub fn split(text: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut s = Splitter::new();
    for line in text.split_inclusive('\n') {
        s.feed(line, &mut out);
    }
    s.finish(&mut out);
    out
}

mod refusals;
use refusals::meta_refusal;
pub use refusals::{check, meta_word, refusal, Refusal};

#[cfg(test)]
mod tests;
