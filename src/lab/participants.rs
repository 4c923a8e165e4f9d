//! The participant list: a CSV with header `username,name,email,group`
//! and an optional `server` column that pins a participant's database (a
//! group's, when every member names the same) to one Postgres server.

use crate::ident::{GroupName, Username};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Participant {
    pub username: Username,
    pub name: String,
    pub email: String,
    pub group: Option<GroupName>,
    /// The Postgres server (by its name in the config) the database must
    /// be placed on; `None`: wherever placement finds room.
    pub server: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Participants(pub Vec<Participant>);

#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
}

const MAX_NAME: usize = 200;

impl CsvError {
    /// One message per bad line.
    pub fn lines(&self) -> Vec<String> {
        match self {
            CsvError::Invalid(lines) => lines.clone(),
            other => vec![other.to_string()],
        }
    }
}

impl Participants {
    pub fn load(path: &Path) -> Result<Self, CsvError> {
        let (name, text) = super::read_named(path).map_err(|source| CsvError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&name, &text)
    }

    /// Parses the CSV; every bad line is reported with its number.
    pub fn parse(file: &str, text: &str) -> Result<Self, CsvError> {
        let text = &*super::unix_lines(text);
        let mut errors = Vec::new();
        let mut out: Vec<Participant> = Vec::new();
        // A pasted list may come without the header line: then the columns
        // are username,name,email,group and line numbers stay the user's.
        let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        let has_header = first
            .split(',')
            .next()
            .is_some_and(|f| f.trim().trim_matches('"').eq_ignore_ascii_case("username"));
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .flexible(true)
            .has_headers(has_header)
            .from_reader(text.as_bytes());
        let columns = Columns::of(file, &mut reader, has_header)?;
        for record in reader.records() {
            // The line from the byte offset: the reader's own line count
            // leaves out empty lines.
            // A record's position can be the empty lines before it.
            let line_at = |p: Option<&csv::Position>| {
                p.map_or(0, |p| {
                    let bytes = text.as_bytes();
                    let mut start = (p.byte() as usize).min(bytes.len());
                    while bytes.get(start) == Some(&b'\n') {
                        start += 1;
                    }
                    bytes[..start].iter().filter(|&&b| b == b'\n').count() + 1
                })
            };
            let record = match record {
                Ok(r) => r,
                Err(e) => {
                    let line = line_at(e.position());
                    errors.push(format!("{file}:{line}: {e}"));
                    continue;
                }
            };
            if record.iter().all(|f| f.is_empty()) {
                continue;
            }
            let line = line_at(record.position());
            match columns.participant(&record) {
                Ok(p) if out.iter().any(|o| o.username == p.username) => {
                    errors.push(format!("{file}:{line}: duplicate username {}", p.username));
                }
                Ok(p) => out.push(p),
                Err(msg) => errors.push(format!("{file}:{line}: {msg}")),
            }
        }
        if errors.is_empty() {
            Ok(Self(out))
        } else {
            Err(CsvError::Invalid(errors))
        }
    }
}

/// Where each field is in the rows of a participant list.
struct Columns {
    username: usize,
    name: usize,
    email: usize,
    group: Option<usize>,
    server: Option<usize>,
}

impl Columns {
    fn of(file: &str, reader: &mut csv::Reader<&[u8]>, has_header: bool) -> Result<Self, CsvError> {
        let header: Vec<String> = if has_header {
            match reader.headers() {
                Ok(h) => h.iter().map(|s| s.to_ascii_lowercase()).collect(),
                Err(e) => return Err(CsvError::Invalid(vec![format!("{file}:1: {e}")])),
            }
        } else {
            ["username", "name", "email", "group"]
                .map(String::from)
                .to_vec()
        };
        let col = |name: &str| header.iter().position(|h| h == name);
        let (Some(username), Some(name), Some(email)) =
            (col("username"), col("name"), col("email"))
        else {
            return Err(CsvError::Invalid(vec![format!(
                "{file}:1: the header must be username,name,email[,group][,server], found {:?}",
                header.join(",")
            )]));
        };
        Ok(Self {
            username,
            name,
            email,
            group: col("group"),
            server: col("server"),
        })
    }

    /// One row as a participant, or what is wrong with it.
    fn participant(&self, record: &csv::StringRecord) -> Result<Participant, String> {
        let field = |i: usize| record.get(i).unwrap_or("").to_string();
        let username = Username::parse(&field(self.username)).map_err(|e| e.to_string())?;
        let (name, email) = (field(self.name), field(self.email));
        if name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
            return Err(format!(
                "name of {username} must be at most {MAX_NAME} printable characters"
            ));
        }
        if !valid_email(&email) {
            return Err(format!(
                "email of {username} {email:?} is not an address like name@example.org"
            ));
        }
        let group = match self.group.map(field).filter(|g| !g.is_empty()) {
            None => None,
            Some(g) => Some(GroupName::parse(&g).map_err(|e| e.to_string())?),
        };
        let server = self.server.map(field).filter(|s| !s.is_empty());
        if let Some(s) = server.as_deref().filter(|s| !server_name(s)) {
            return Err(format!(
                "server of {username} {s:?} is not a server name (letters, digits, '-' and '_')"
            ));
        }
        Ok(Participant {
            username,
            name,
            email,
            group,
            server,
        })
    }
}

impl Participants {
    /// The list as CSV with a header, as `parse` reads it back (with the
    /// `server` column when somebody is pinned).
    pub fn to_csv(&self) -> String {
        let mut w = csv::Writer::from_writer(vec![]);
        let pinned = self.0.iter().any(|p| p.server.is_some());
        let header = ["username", "name", "email", "group", "server"];
        let _ = w.write_record(&header[..if pinned { 5 } else { 4 }]);
        for p in &self.0 {
            let group = p.group.as_ref().map_or("", |g| g.as_str());
            let server = p.server.as_deref().unwrap_or("");
            let row = [p.username.as_str(), &p.name, &p.email, group, server];
            let _ = w.write_record(&row[..if pinned { 5 } else { 4 }]);
        }
        String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
    }

    /// This list with `more` added; a username in both takes `more`'s row.
    pub fn merged(mut self, more: Participants) -> Participants {
        for p in more.0 {
            match self.0.iter_mut().find(|q| q.username == p.username) {
                Some(q) => *q = p,
                None => self.0.push(p),
            }
        }
        self
    }
}

/// A name as the config's `postgres[].name` allows.
fn server_name(s: &str) -> bool {
    s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn valid_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && s.len() <= 254
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>()[]\\,;:\"".contains(c))
        && !domain.contains('@')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_and_lf_give_the_same_line_numbers() {
        let lf = "username,name,email,group\nalice,Alice,alice@example.org,\n\nbad name,Bob,bob@example.org,\ncarol,Carol,not-an-address,\n";
        for text in [
            lf.to_string(),
            lf.replace('\n', "\r\n"),
            lf.replace('\n', "\r"),
        ] {
            let e = Participants::parse("pasted", &text)
                .expect_err("bad rows")
                .to_string();
            assert!(
                e.contains("pasted:4:") && e.contains("pasted:5:"),
                "{text:?}: {e}"
            );
        }
        // Without a header line the numbers are the user's too.
        let e = Participants::parse(
            "pasted",
            "alice,Alice,alice@example.org,\r\nbad name,B,b@example.org,\r\n",
        )
        .expect_err("bad row")
        .to_string();
        assert!(e.contains("pasted:2:"), "{e}");
    }

    #[test]
    fn hostile_lines_are_rejected_with_line_numbers() {
        let long = "x".repeat(300);
        let text = format!(
            "username,name,email,group\n\
             alice,Alice A,alice@example.org,g1\n\
             \"bob\"\"\",Bob,bob@example.org,\n\
             carol;,Carol,carol@example.org,\n\
             )(uid=*),Eve,eve@example.org,\n\
             \"\"\"; DROP ROLE x\",Mallory,m@example.org,\n\
             dave,{long},dave@example.org,\n\
             zoë,Zoë,zoe@example.org,\n\
             alice,Again,a2@example.org,\n\
             frank,\"Frank, Jr.\",frank@example.org,\n\
             gina,Gina,not-an-email,\n"
        );
        let Err(CsvError::Invalid(e)) = Participants::parse("p.csv", &text) else {
            panic!()
        };
        let lines: Vec<&str> = e.iter().map(|e| e.split(':').nth(1).unwrap()).collect();
        assert_eq!(lines, ["3", "4", "5", "6", "7", "8", "9", "11"], "{e:?}");
    }

    #[test]
    fn good_list() {
        let p = Participants::parse(
            "p.csv",
            "username,name,email\nalice,Alice,a@x.org\n\nbob,\"Bob, B\",b@x.org\n",
        )
        .unwrap();
        assert_eq!(p.0.len(), 2);
        assert_eq!(p.0[1].name, "Bob, B");
        assert!(p.0[0].group.is_none());
    }

    #[test]
    fn a_server_column_pins_and_round_trips() {
        let text =
            "username,name,email,group,server\nalice,Alice,a@x.org,,vpl2\nbob,Bob,b@x.org,g1,\n";
        let p = Participants::parse("p.csv", text).unwrap();
        assert_eq!(p.0[0].server.as_deref(), Some("vpl2"));
        assert_eq!(p.0[1].server, None);
        assert_eq!(Participants::parse("again", &p.to_csv()).unwrap(), p);
        // Without pins the list keeps its four columns.
        let plain = Participants::parse("p.csv", "username,name,email\nc,C,c@x.org\n").unwrap();
        assert_eq!(
            plain.to_csv().lines().next(),
            Some("username,name,email,group")
        );
        let Err(CsvError::Invalid(e)) =
            Participants::parse("p.csv", "username,name,email,server\nd,D,d@x.org,a b\n")
        else {
            panic!()
        };
        assert!(e[0].starts_with("p.csv:2: server of d"), "{e:?}");
    }
}
