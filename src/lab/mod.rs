//! Lab files (YAML) and participant lists (CSV).

mod checks;
pub mod participants;
mod spec;
pub mod submissions;
mod walk;
mod yaml;

pub use participants::{Participant, Participants};
pub use spec::{Check, Compare, DatabaseMode, Lab, LabOptions, ObjectName, Source, Task};
pub use walk::FieldError;

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

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
    /// SHA-256 over the reference and starter contents.
    pub sources_digest: String,
}

impl LoadedLab {
    pub fn load(path: &Path) -> Result<Self, LabError> {
        let (name, text) = read_named(path).map_err(|source| LabError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let lab = parse(&name, &text, dir)?;
        let mut digest = Sha256::new();
        for (_, source) in lab.sources() {
            let bytes = std::fs::read(source.path()).map_err(|e| LabError::Read {
                path: source.path().display().to_string(),
                source: e,
            })?;
            digest.update((bytes.len() as u64).to_le_bytes());
            digest.update(&bytes);
        }
        Ok(Self {
            lab,
            text,
            sources_digest: hex::encode(digest.finalize()),
        })
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

/// A file of a lab as stored with it: the reference, the starter, or a
/// file one of them includes with psql's `\i` / `\ir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// `reference`, `starter` or `include`.
    pub role: &'static str,
    /// Relative to the folder of the reference and starter.
    pub file_name: String,
    pub bytes: Vec<u8>,
}

impl SourceFile {
    pub fn sha256(&self) -> String {
        hex::encode(Sha256::digest(&self.bytes))
    }

    pub fn role_named(role: &str) -> &'static str {
        match role {
            "reference" => "reference",
            "starter" => "starter",
            _ => "include",
        }
    }
}

/// A relative path that stays below its folder (no `..`, not absolute).
fn stays_inside(name: &str) -> bool {
    let path = Path::new(name);
    !name.is_empty()
        && path
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
}

/// The files a psql script includes relative to its own folder: the
/// argument of each `\i`, `\ir`, `\include` and `\include_relative` line
/// that is a relative path staying inside it.
fn includes(script: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(script)
        .lines()
        .filter_map(|line| {
            let rest = line.trim_start().strip_prefix('\\')?;
            let (command, arg) = rest.split_once(char::is_whitespace)?;
            let arg = arg.trim().trim_matches(|c| c == '\'' || c == '"');
            let known = ["i", "ir", "include", "include_relative"].contains(&command);
            (known && stays_inside(arg)).then(|| arg.to_string())
        })
        .collect()
}

impl Lab {
    /// The lab's reference and starter with their role.
    pub fn sources(&self) -> impl Iterator<Item = (&'static str, &Source)> {
        std::iter::once(("reference", &self.reference))
            .chain(self.starter.as_ref().map(|s| ("starter", s)))
    }

    /// Reads the reference and starter, and the files their SQL includes
    /// from the same folder, from where the lab names them.
    pub fn read_sources(&self) -> Result<Vec<SourceFile>, LabError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|e| LabError::Read {
                path: path.display().to_string(),
                source: e,
            })
        };
        let mut files: Vec<SourceFile> = vec![];
        // First in, first out: the reference and starter keep their role
        // when the other one includes them.
        let mut pending: std::collections::VecDeque<(PathBuf, String, &'static str)> = self
            .sources()
            .map(|(role, source)| {
                let path = source.path().to_path_buf();
                let name = path
                    .file_name()
                    .map_or_else(|| role.to_string(), |n| n.to_string_lossy().into_owned());
                (path, name, role)
            })
            .collect();
        while let Some((path, file_name, role)) = pending.pop_front() {
            if files.iter().any(|f| f.file_name == file_name) {
                continue;
            }
            let bytes = read(&path)?;
            let folder = path.parent().unwrap_or(Path::new("."));
            let prefix = Path::new(&file_name).parent().unwrap_or(Path::new(""));
            let is_sql = match role {
                "include" => true,
                _ => self
                    .sources()
                    .any(|(r, s)| r == role && matches!(s, Source::Sql(_))),
            };
            if is_sql {
                for inc in includes(&bytes) {
                    let name = prefix.join(&inc).to_string_lossy().into_owned();
                    pending.push_back((folder.join(&inc), name, "include"));
                }
            }
            files.push(SourceFile {
                role,
                file_name,
                bytes,
            });
        }
        files.sort_by(|a, b| a.file_name.cmp(&b.file_name));
        Ok(files)
    }

    /// The same lab with its reference and starter in `dir` (where the
    /// stored files are written, under their names).
    pub fn with_sources_in(mut self, dir: &Path) -> Self {
        for source in std::iter::once(&mut self.reference).chain(self.starter.as_mut()) {
            let name = source
                .path()
                .file_name()
                .map(std::ffi::OsStr::to_os_string)
                .unwrap_or_default();
            let moved = dir.join(name);
            *source = match source {
                Source::Sql(_) => Source::Sql(moved),
                Source::Dump(_) => Source::Dump(moved),
            };
        }
        self
    }
}

/// Writes stored lab files below `dir`; a name leaving it is refused.
pub fn write_sources(dir: &Path, files: &[SourceFile]) -> std::io::Result<()> {
    for file in files {
        if !stays_inside(&file.file_name) {
            return Err(std::io::Error::other(format!(
                "lab file name {:?} leaves the lab's folder",
                file.file_name
            )));
        }
        let path = dir.join(&file.file_name);
        if std::fs::read(&path).ok().as_deref() == Some(file.bytes.as_slice()) {
            continue;
        }
        let folder = path.parent().expect("below dir");
        std::fs::create_dir_all(folder)?;
        let partial = folder.join(format!(".{}.partial", std::process::id()));
        std::fs::write(&partial, &file.bytes)?;
        std::fs::rename(&partial, &path)?;
    }
    Ok(())
}

/// Parses lab YAML text; `name` is used in error messages, `dir` to resolve
/// the files the lab names.
pub fn parse(name: &str, text: &str, dir: &Path) -> Result<Lab, LabError> {
    let mut w = walk::Walker::new(name);
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
    fn the_files_a_lab_is_stored_with_are_its_sources_and_their_includes() {
        let dir = tempfile::tempdir().expect("dir");
        let d = dir.path();
        std::fs::create_dir_all(d.join("parts")).expect("mkdir");
        std::fs::write(
            d.join("ref.sql"),
            "\\ir starter.sql\n  \\i 'parts/data.sql'\n\\i /etc/passwd\n\\ir ../up.sql\n",
        )
        .expect("w");
        std::fs::write(d.join("starter.sql"), "\\ir ref.sql\n").expect("w");
        std::fs::write(d.join("parts/data.sql"), "\\ir more.sql\n").expect("w");
        std::fs::write(d.join("parts/more.sql"), "SELECT 1;").expect("w");
        let text = "id: inc\ntitle: Inc\nreference: {sql: ref.sql}\nstarter: {sql: starter.sql}\ntasks:\n  - id: one\n    title: One\n    checks: [{sql: SELECT true}]\n";
        let lab = parse("lab.yaml", text, d).expect("lab");
        let files = lab.read_sources().expect("read");
        let names: Vec<(&str, &str)> = files
            .iter()
            .map(|f| (f.file_name.as_str(), f.role))
            .collect();
        assert_eq!(
            names,
            [
                ("parts/data.sql", "include"),
                ("parts/more.sql", "include"),
                ("ref.sql", "reference"),
                ("starter.sql", "starter"),
            ]
        );
        // Written elsewhere, the lab finds them under the same names.
        let copy = tempfile::tempdir().expect("dir");
        write_sources(copy.path(), &files).expect("write");
        let moved = lab.with_sources_in(copy.path());
        assert_eq!(moved.read_sources().expect("read copy"), files);
        let escaping = SourceFile {
            role: "include",
            file_name: "../x.sql".into(),
            bytes: vec![],
        };
        assert!(write_sources(copy.path(), &[escaping]).is_err());
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
