//! A lab handed in by a lab master (the web form or the API): its files in
//! a staging folder, validated (each problem with its line and field),
//! loaded into scratch databases, and only then stored. One path for both
//! faces, so the API checks exactly what the page checks.

use crate::control::{Store, StoreError};
use crate::lab::{LabError, LoadedLab};
use crate::settings::Settings;
use std::path::{Path, PathBuf};

/// A problem with a lab: the line of its YAML (0 when it is not about a
/// line), the field, and words for the lab master.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LabProblem {
    pub line: usize,
    pub field: String,
    pub message: String,
}

impl LabProblem {
    fn general(message: String) -> Self {
        Self {
            line: 0,
            field: String::new(),
            message,
        }
    }

    /// The field and the message, as one sentence.
    pub fn text(&self) -> String {
        if self.field.is_empty() {
            self.message.clone()
        } else {
            format!("{}: {}", self.field, self.message)
        }
    }
}

/// A folder for one upload under `<data_dir>/labs/`, removed when dropped.
pub struct Staging(PathBuf);

impl Staging {
    pub fn new(settings: &Settings) -> std::io::Result<Self> {
        let dir = settings
            .data_dir
            .join("labs")
            .join(format!(".upload-{}", crate::random::token()));
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A file name as a client gave it, reduced to a plain name in the staging
/// folder; `None` for names that are not letters, digits, '.', '-' and '_'
/// (or lab.yaml itself).
pub fn file_name(raw: &str) -> Option<String> {
    let base = raw.rsplit(['/', '\\']).next()?.trim();
    let ok = !base.is_empty()
        && !base.starts_with('.')
        && base.len() <= 100
        && base
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    (ok && base != "lab.yaml").then(|| base.to_string())
}

/// Loads the staged lab `yaml` (its files already in `dir`); `replace`
/// allows a lab of the same id to be replaced. Every problem is returned
/// (`Ok(Err(..))`); `Err` only when the control database fails.
pub async fn validate(
    settings: &Settings,
    store: &Store,
    dir: &Path,
    yaml: &str,
    replace: bool,
) -> Result<Result<LoadedLab, Vec<LabProblem>>, StoreError> {
    let file = dir.join("lab.yaml");
    if let Err(e) = std::fs::write(&file, yaml) {
        return Ok(Err(vec![LabProblem::general(format!(
            "cannot store the lab: {e}"
        ))]));
    }
    let lab = match LoadedLab::load_uploaded(&file) {
        Ok(lab) => lab,
        Err(e) => return Ok(Err(load_problems(e, dir))),
    };
    // Sources must be files of this upload, not paths on the server.
    for (_, source) in lab.lab.sources() {
        if source.path().parent() != Some(dir) {
            return Ok(Err(vec![LabProblem::general(format!(
                "{}: name a file uploaded with the lab, without folders",
                source.path().display()
            ))]));
        }
    }
    // Files its SQL includes (`\i`, `\ir`) must be files of the upload too,
    // checked before any of it runs.
    if let Err(e) = lab.lab.read_sources() {
        return Ok(Err(load_problems(e, dir)));
    }
    let id = &lab.lab.id;
    if store.lab(id).await?.is_some() && !replace {
        return Ok(Err(vec![LabProblem::general(format!(
            "a lab with id {id} exists; replace it (tick \"Replace\"), or choose another id"
        ))]));
    }
    let server = &settings.postgres[0];
    if let Err(e) = super::check_lab_loads(server, &lab).await {
        return Ok(Err(vec![LabProblem::general(format!(
            "the reference or starter does not load: {e:#}"
        ))]));
    }
    Ok(Ok(lab))
}

/// The problems of a lab that did not load, without paths on the server
/// (they mean nothing to the lab master).
fn load_problems(e: LabError, dir: &Path) -> Vec<LabProblem> {
    match e {
        LabError::Invalid(errors) => errors
            .into_iter()
            .map(|e| LabProblem {
                line: e.line,
                field: e.field,
                message: match e.message.split_once(" (looked in ") {
                    Some((head, _)) => format!("{head}: add it to the lab's files"),
                    None => e.message,
                },
            })
            .collect(),
        // Whether a file outside the upload exists is not the caller's to
        // learn: the same words as for one that does.
        LabError::Read { path, .. } if Path::new(&path).parent() != Some(dir) => {
            vec![LabProblem::general(format!(
                "{path}: name a file uploaded with the lab, without folders"
            ))]
        }
        LabError::Read { path, .. } => {
            let name = Path::new(&path)
                .file_name()
                .map_or(path.clone(), |n| n.to_string_lossy().into_owned());
            vec![LabProblem::general(format!(
                "the lab names {name}, which was not uploaded (add it to the lab's files)"
            ))]
        }
    }
}

/// Stores a validated lab with its files in the control database.
pub async fn store_lab(store: &Store, lab: &LoadedLab, by: &str) -> anyhow::Result<()> {
    let sources = lab.lab.read_sources()?;
    store.upsert_lab(lab, &sources).await?;
    tracing::info!(lab = %lab.lab.id, by, "lab stored");
    Ok(())
}
