//! A lab's files as they are stored with it in the control database: the
//! reference, the starter and the files their SQL includes with psql's
//! `\i` / `\ir`, named by their path relative to the folder that holds them
//! all, so that they can be written out anywhere and built from.

use super::{FieldError, Lab, LabError, Source};
use sha2::{Digest, Sha256};
use std::collections::VecDeque;
use std::path::{Component, Path, PathBuf};

/// A file of a lab as stored with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// `reference`, `starter`, `dataset` or `include`.
    pub role: &'static str,
    /// Relative to the folder that holds the lab's files, `/`-separated.
    pub file_name: String,
    pub bytes: Vec<u8>,
}

impl SourceFile {
    pub fn sha256(&self) -> String {
        hex::encode(Sha256::digest(&self.bytes))
    }

    /// The role as stored; `None` for a word pglab does not know.
    pub fn role_named(role: &str) -> Option<&'static str> {
        ["reference", "starter", "dataset", "include"]
            .into_iter()
            .find(|r| *r == role)
    }
}

/// A relative path that stays below its folder (no `..`, not absolute).
fn stays_inside(name: &str) -> bool {
    !name.is_empty()
        && Path::new(name)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

/// `path` with `.` and `..` resolved without asking the file system.
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// One include of a psql script: its line, whether it is relative to
/// the including file (`\ir`) or to psql's folder (`\i`), and its argument.
struct Include {
    line: usize,
    relative: bool,
    arg: String,
}

/// The include a backslash command is (`\i`, `\include`: from the folder
/// psql runs in; `\ir`, `\include_relative`: from the including file's
/// folder): whether it is relative, and the file it names.
pub fn include_of(meta: &str) -> Option<(bool, String)> {
    let rest = meta.trim_start().strip_prefix('\\')?;
    let (command, arg) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let relative = match command {
        "i" | "include" => false,
        "ir" | "include_relative" => true,
        _ => return None,
    };
    let arg = arg.trim().trim_matches(|c| c == '\'' || c == '"');
    Some((relative, arg.to_string()))
}

/// The stored name an include leads to from the file `from` (a stored
/// name) when psql's folder is `cwd` (the folder of the reference or
/// starter that led there); `None` for an absolute path or one that leaves
/// the folder of the lab's files.
pub fn resolve_include(from: &str, cwd: &str, relative: bool, arg: &str) -> Option<String> {
    if arg.is_empty() || Path::new(arg).is_absolute() {
        return None;
    }
    let folder = if relative {
        Path::new(from).parent().unwrap_or(Path::new(""))
    } else {
        Path::new(cwd)
    };
    let name = lexical(&folder.join(arg))
        .to_string_lossy()
        .replace('\\', "/");
    stays_inside(&name).then_some(name)
}

/// The includes of a script, found by the same splitter that runs it
/// (`provision::lab_sql`): what is stored is what runs.
fn includes(script: &[u8]) -> Vec<Include> {
    let text = String::from_utf8_lossy(script);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    crate::sqlscript::split(text)
        .into_iter()
        .filter(|p| p.kind == crate::sqlscript::Kind::Meta)
        .filter_map(|p| {
            let (relative, arg) = include_of(&p.text)?;
            Some(Include {
                line: p.line,
                relative,
                arg,
            })
        })
        .collect()
}

/// A file still to read: its stored name, its role, and the folder psql
/// runs in for it (the folder of the reference or starter that led to it),
/// as a stored name.
struct Pending {
    name: String,
    role: &'static str,
    cwd: String,
}

/// The folder of a stored name (`""` at the top).
pub fn folder_of(name: &str) -> String {
    Path::new(name)
        .parent()
        .map_or(String::new(), |p| p.to_string_lossy().replace('\\', "/"))
}

impl Lab {
    /// The lab's reference, starter and datasets with their role.
    pub fn sources(&self) -> impl Iterator<Item = (&'static str, &Source)> {
        std::iter::once(("reference", &self.reference))
            .chain(self.starter.as_ref().map(|s| ("starter", s)))
            .chain(self.datasets.iter().map(|s| ("dataset", s)))
    }

    /// The folder that holds the reference, the starter and the datasets.
    fn sources_base(&self) -> PathBuf {
        let folders: Vec<PathBuf> = self
            .sources()
            .map(|(_, s)| lexical(&std::path::absolute(s.path()).unwrap_or(s.path().into())))
            .map(|p| p.parent().map(Path::to_path_buf).unwrap_or_default())
            .collect();
        let mut base = folders[0].clone();
        while !folders.iter().all(|f| f.starts_with(&base)) && base.pop() {}
        base
    }

    /// The name under which `source` (the reference, starter or a dataset) is stored
    /// by [`Self::read_sources`].
    pub fn stored_name(&self, source: &Source) -> Option<String> {
        let base = self.sources_base();
        let path = lexical(&std::path::absolute(source.path()).unwrap_or(source.path().into()));
        let name = lexical(&path)
            .strip_prefix(&base)
            .ok()?
            .to_string_lossy()
            .replace('\\', "/");
        stays_inside(&name).then_some(name)
    }

    /// Reads the reference and starter, and the files their SQL includes,
    /// from where the lab names them. An include that leaves the folder
    /// holding the lab's files is refused: the lab would not build from
    /// what is stored.
    pub fn read_sources(&self) -> Result<Vec<SourceFile>, LabError> {
        let base = self.sources_base();
        let mut files: Vec<SourceFile> = vec![];
        // First in, first out: the reference and starter keep their role
        // when the other one includes them.
        let mut pending: VecDeque<Pending> = VecDeque::new();
        for (role, source) in self.sources() {
            let name = self.stored_name(source).ok_or_else(|| {
                LabError::Invalid(vec![FieldError {
                    file: String::new(),
                    line: 0,
                    field: role.to_string(),
                    message: format!(
                        "{}: the reference, starter and datasets must lie in one folder (or below it)",
                        source.path().display()
                    ),
                }])
            })?;
            let cwd = folder_of(&name);
            pending.push_back(Pending { name, role, cwd });
        }
        // A file reached from the reference and from the starter in another
        // folder is stored once but its `\i` lines are followed from both.
        let mut scanned: Vec<(String, String)> = vec![];
        while let Some(p) = pending.pop_front() {
            if scanned.iter().any(|(n, c)| *n == p.name && *c == p.cwd) {
                continue;
            }
            scanned.push((p.name.clone(), p.cwd.clone()));
            let stored = files.iter().position(|f| f.file_name == p.name);
            let bytes = match stored {
                Some(i) => files[i].bytes.clone(),
                None => {
                    let path = base.join(&p.name);
                    std::fs::read(&path).map_err(|e| LabError::Read {
                        path: path.display().to_string(),
                        source: e,
                    })?
                }
            };
            let is_sql = p.role == "include"
                || self.sources().any(|(_, s)| {
                    matches!(s, Source::Sql(_)) && self.stored_name(s).as_ref() == Some(&p.name)
                });
            if is_sql {
                for inc in includes(&bytes) {
                    let Some(name) = resolve_include(&p.name, &p.cwd, inc.relative, &inc.arg)
                    else {
                        return Err(LabError::Invalid(vec![FieldError {
                            file: p.name.clone(),
                            line: inc.line,
                            field: String::new(),
                            message: format!(
                                "includes {}, outside the folder of the lab's files ({}): put it beside them and include it by a relative path",
                                inc.arg,
                                base.display()
                            ),
                        }]));
                    };
                    pending.push_back(Pending {
                        name,
                        role: "include",
                        cwd: p.cwd.clone(),
                    });
                }
            }
            if stored.is_none() {
                files.push(SourceFile {
                    role: p.role,
                    file_name: p.name,
                    bytes,
                });
            }
        }
        files.sort_by(|a, b| a.file_name.cmp(&b.file_name));
        Ok(files)
    }

    /// The same lab with its reference, starter and datasets in `dir`,
    /// where `files` (as `read_sources` named them) were written.
    pub fn with_sources_in(mut self, dir: &Path, files: &[SourceFile]) -> Self {
        let names: Vec<Option<String>> = self.sources().map(|(_, s)| self.stored_name(s)).collect();
        let sources = std::iter::once(&mut self.reference)
            .chain(self.starter.as_mut())
            .chain(self.datasets.iter_mut());
        for (source, name) in sources.zip(names) {
            let Some(file) = name.and_then(|n| files.iter().find(|f| f.file_name == n)) else {
                continue;
            };
            let moved = dir.join(&file.file_name);
            *source = match source {
                Source::Sql(_) => Source::Sql(moved),
                Source::Dump(_) => Source::Dump(moved),
            };
        }
        self
    }
}

/// A digest of a lab's files, names and contents: it changes when any of
/// them does (then the reference and template are built again).
pub fn digest(files: &[SourceFile]) -> String {
    let mut d = Sha256::new();
    for f in files {
        for part in [f.file_name.as_bytes(), &f.bytes] {
            d.update((part.len() as u64).to_le_bytes());
            d.update(part);
        }
    }
    hex::encode(d.finalize())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn lab_in(d: &Path, reference: &str, starter: &str) -> Lab {
        let text = format!("id: inc\ntitle: Inc\nreference: {{sql: {reference}}}\nstarter: {{sql: {starter}}}\ntasks:\n  - id: one\n    title: One\n    checks: [{{sql: SELECT true}}]\n");
        super::super::parse("lab.yaml", &text, d).expect("lab")
    }

    #[test]
    fn the_files_a_lab_is_stored_with_are_its_sources_and_their_includes() {
        let dir = tempfile::tempdir().expect("dir");
        let d = dir.path();
        for (name, text) in [
            (
                "solution/db.sql",
                "\\ir ../common/data.sql\n\\i parts/x.sql\n",
            ),
            ("starter/db.sql", "SELECT 1;\n"),
            ("common/data.sql", "\\ir more.sql\n"),
            ("common/more.sql", "SELECT 2;\n"),
            ("solution/parts/x.sql", "SELECT 3;\n"),
        ] {
            std::fs::create_dir_all(d.join(name).parent().expect("folder")).expect("mkdir");
            std::fs::write(d.join(name), text).expect("write");
        }
        // Same file name in two folders: both kept, under their paths.
        let lab = lab_in(d, "solution/db.sql", "starter/db.sql");
        let files = lab.read_sources().expect("read");
        let names: Vec<(&str, &str)> = files
            .iter()
            .map(|f| (f.file_name.as_str(), f.role))
            .collect();
        assert_eq!(
            names,
            [
                ("common/data.sql", "include"),
                ("common/more.sql", "include"),
                ("solution/db.sql", "reference"),
                ("solution/parts/x.sql", "include"),
                ("starter/db.sql", "starter"),
            ]
        );
        // Written elsewhere, the lab finds them under the same names.
        let copy = tempfile::tempdir().expect("dir");
        write_sources(copy.path(), &files).expect("write");
        let moved = lab.with_sources_in(copy.path(), &files);
        assert_eq!(moved.read_sources().expect("read copy"), files);
        assert_eq!(
            digest(&moved.read_sources().expect("again")),
            digest(&files)
        );
        let escaping = SourceFile {
            role: "include",
            file_name: "../x.sql".into(),
            bytes: vec![],
        };
        assert!(write_sources(copy.path(), &[escaping]).is_err());
    }

    #[test]
    fn an_include_outside_the_labs_folder_is_refused_with_its_line() {
        let dir = tempfile::tempdir().expect("dir");
        let d = dir.path().join("lab");
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::write(d.join("starter.sql"), "SELECT 1;\n").expect("write");
        for (text, shown) in [
            ("SELECT 1;\n\\i /etc/passwd\n", "/etc/passwd"),
            ("\n\n\\ir ../up.sql\n", "../up.sql"),
        ] {
            std::fs::write(d.join("ref.sql"), text).expect("write");
            let e = lab_in(&d, "ref.sql", "starter.sql")
                .read_sources()
                .expect_err("refused")
                .to_string();
            assert!(e.contains("ref.sql:") && e.contains(shown), "{e}");
        }
    }
}
