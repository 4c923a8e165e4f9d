//! Lab files (YAML) and participant lists (CSV).

mod checks;
pub mod evidence;
pub mod mail;
pub mod participants;
mod sources;
mod spec;
pub mod submissions;
mod walk;
mod yaml;

pub use evidence::{AfterDeadline, SnapshotRule};
pub use participants::{Participant, Participants};
pub use sources::{folder_of, include_of, resolve_include, write_sources, SourceFile};
pub use spec::{
    Check, Compare, DatabaseMode, Lab, LabOptions, ObjectName, Source, Task, MAX_DATASETS,
};
pub use walk::FieldError;

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<FieldError>),
}

/// A lab as loaded from disk, with a digest of the file and the files it
/// names, so that provisioning can tell when the reference or starter changed.
#[derive(Debug, Clone)]
pub struct LoadedLab {
    pub lab: Lab,
    /// The YAML text as the lab master wrote it.
    pub text: String,
    /// SHA-256 over the names and contents of the reference, the starter
    /// and the files they include (`sources::digest`).
    pub sources_digest: String,
}

impl LoadedLab {
    pub fn load(path: &Path) -> Result<Self, LabError> {
        Self::load_with(path, false)
    }

    /// A lab uploaded into `path`'s folder: the files it names must be
    /// plain names there (checked before anything is read).
    pub fn load_uploaded(path: &Path) -> Result<Self, LabError> {
        Self::load_with(path, true)
    }

    fn load_with(path: &Path, confined: bool) -> Result<Self, LabError> {
        let (name, text) = read_named(path).map_err(|source| LabError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let lab = parse_with(&name, &text, dir, confined)?;
        let sources_digest = sources::digest(&lab.read_sources()?);
        Ok(Self {
            lab,
            text,
            sources_digest,
        })
    }
}

/// The text with `\n` line ends only (from CRLF or a lone CR, as browsers
/// and spreadsheets send them), so that every line number is the one the
/// user's editor shows.
pub(crate) fn unix_lines(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\r') {
        text.replace("\r\n", "\n").replace('\r', "\n").into()
    } else {
        text.into()
    }
}

/// A text file and the name its errors are reported under (the file's
/// name, without folders).
pub(crate) fn read_named(path: &Path) -> std::io::Result<(String, String)> {
    let text = std::fs::read_to_string(path)?;
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    Ok((name, text))
}

/// Parses lab YAML text; `name` is used in error messages, `dir` to resolve
/// the files the lab names.
pub fn parse(name: &str, text: &str, dir: &Path) -> Result<Lab, LabError> {
    parse_with(name, text, dir, false)
}

fn parse_with(name: &str, text: &str, dir: &Path, confined: bool) -> Result<Lab, LabError> {
    let mut w = walk::Walker::new(name);
    w.confined = confined;
    let root = yaml::parse(text).map_err(|e| {
        LabError::Invalid(vec![FieldError {
            file: name.to_string(),
            line: e.line,
            field: String::new(),
            message: format!("YAML syntax error: {}", e.message),
        }])
    })?;
    let lab = spec::lab_from_tree(&mut w, &root, dir);
    match lab {
        Some(lab) if w.errors.is_empty() => Ok(lab),
        _ => {
            if w.errors.is_empty() {
                w.error(
                    root.line,
                    "",
                    "the lab file is not a mapping of id, title, reference, tasks",
                );
            }
            Err(LabError::Invalid(w.errors))
        }
    }
}

#[cfg(test)]
mod fuzz_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_labs_schemas_are_where_its_checked_tables_are() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("r.sql"), "SELECT 1;").expect("write");
        let text = "id: s\ntitle: S\nreference: {sql: r.sql}\ntasks:\n  - id: a\n    title: A\n    checks:\n      - table: shop.items\n      - view: public.v\n      - view: audit.log_view\n      - sql: SELECT true\n";
        let lab = parse("lab.yaml", text, dir.path()).expect("lab");
        assert_eq!(lab.schemas(), ["audit", "shop"]);
    }

    fn errors(text: &str) -> Vec<String> {
        let dir = std::env::temp_dir();
        std::fs::write(dir.join("pglab-unit-ref.sql"), "select 1;").unwrap();
        match parse("lab.yaml", text, &dir) {
            Ok(_) => vec![],
            Err(LabError::Invalid(e)) => e.iter().map(|e| e.to_string()).collect(),
            Err(e) => vec![e.to_string()],
        }
    }

    #[test]
    fn mail_rules_and_templates_are_checked_with_their_lines() {
        let good = "id: m\ntitle: M\nreference: {sql: pglab-unit-ref.sql}\nmail:\n  credentials: after-apply\n  reminders: [1h, 24h]\n  hand_ins: true\n  language: de\n  templates:\n    credentials:\n      subject: \"Zugang zu {lab}\"\n      text: \"Hallo {name}: {password}\"\ntasks:\n  - id: a\n    title: A\n    checks:\n      - sql: SELECT true\n";
        let dir = std::env::temp_dir();
        std::fs::write(dir.join("pglab-unit-ref.sql"), "select 1;").unwrap();
        let lab = parse("lab.yaml", good, &dir).expect("valid");
        assert!(lab.mail.credentials_after_apply && lab.mail.hand_ins);
        assert_eq!(
            lab.mail.reminders_secs,
            vec![86_400, 3_600],
            "longest first"
        );
        assert_eq!(lab.mail.language.as_deref(), Some("de"));
        assert_eq!(lab.mail.templates["credentials"].subject, "Zugang zu {lab}");
        let bad = good
            .replace("after-apply", "always")
            .replace("[1h, 24h]", "[1h, soon]")
            .replace("{password}", "{secret}");
        let e = errors(&bad);
        assert!(
            e.iter()
                .any(|e| e.starts_with("lab.yaml:5: mail.credentials")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|e| e.starts_with("lab.yaml:6: mail.reminders")),
            "{e:?}"
        );
        assert!(
            e.iter().any(|e| e.starts_with(
                "lab.yaml:12: mail.templates.credentials.text: unknown placeholder {secret}"
            )),
            "{e:?}"
        );
        let digest = good.replace(
            "  hand_ins: true\n",
            "  hand_ins: true\n  digest: {every: 30m, to: [ta@example.org, ada@example.org]}\n",
        );
        let lab = parse("lab.yaml", &digest, &dir).expect("valid digest");
        let rule = lab.mail.digest.expect("digest");
        assert_eq!(rule.every_secs, 1800);
        assert_eq!(rule.to, ["ada@example.org", "ta@example.org"]);
        let e = errors(
            &digest
                .replace("every: 30m", "every: 1m")
                .replace("ada@example.org", "\"x@y.org, evil@z.org\""),
        );
        for want in [
            "lab.yaml:8: mail.digest.every",
            "lab.yaml:8: mail.digest.to",
        ] {
            assert!(e.iter().any(|e| e.starts_with(want)), "{want}: {e:?}");
        }
    }

    #[test]
    fn every_error_with_line_and_field() {
        let text = "\
id: Bad_Id
title: t
reference: {sql: pglab-unit-ref.sql}
colour: blue
tasks:
  - id: one
    title: One
    checks:
      - table: cd.members
  - id: two
    title: Two
    checks:
      - tabel: cd.members
  - id: three
    title: Three
    points: lots
    checks:
      - query: select 1
        compare: [rows]
";
        let e = errors(text);
        assert!(
            e.iter()
                .any(|e| e.starts_with("lab.yaml:1: id: lab id \"Bad_Id\"")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|e| e.starts_with("lab.yaml:4: colour: unknown key")),
            "{e:?}"
        );
        assert!(e.contains(&"lab.yaml:13: tasks[1].checks[0]: unknown check kind \"tabel\" (expected one of: table, view, query, sql)".to_string()), "{e:?}");
        assert!(
            e.iter()
                .any(|e| e.starts_with("lab.yaml:16: tasks[2].points:")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|e| e.contains("tasks[2].checks[0].compare: does not apply")),
            "{e:?}"
        );
        assert_eq!(e.len(), 5, "{e:?}");
    }

    #[test]
    fn good_lab_and_defaults() {
        let text = "id: l1\ntitle: T\nreference:\n  sql: pglab-unit-ref.sql\ntasks:\n  - id: a\n    title: A\n    checks:\n      - table: x\n";
        let lab = parse("lab.yaml", text, &std::env::temp_dir());
        std::fs::write(std::env::temp_dir().join("pglab-unit-ref.sql"), "select 1;").unwrap();
        let lab = lab
            .or_else(|_| parse("lab.yaml", text, &std::env::temp_dir()))
            .unwrap();
        assert_eq!(lab.tasks[0].points, 1);
        assert_eq!(lab.databases, DatabaseMode::PerParticipant);
        assert_eq!(
            lab.tasks[0].checks[0],
            Check::Table {
                name: ObjectName::parse("public.x").unwrap(),
                compare: vec![Compare::Columns, Compare::Rows]
            }
        );
    }

    #[test]
    fn syntax_and_missing_file() {
        assert!(errors("id: [\n")[0].starts_with("lab.yaml:"));
        let e = errors("id: x\ntitle: T\nreference: {dump: nope.dump}\ntasks: []\n");
        assert!(
            e.iter()
                .any(|e| e.contains("reference: file \"nope.dump\" not found")),
            "{e:?}"
        );
    }
}
