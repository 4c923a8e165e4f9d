//! One export, from the control database to a zip archive: the files
//! written into a private folder, then packed in name order, every entry
//! streamed from its file.

use super::tables::{self, Results, Table};
use super::zip::ZipWriter;
use super::{io, ExportError, ExportOptions};
use crate::control::{FinalState, Store};
use crate::lab::LoadedLab;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What was built.
#[derive(Debug, Clone, Copy)]
pub struct Built {
    pub size: u64,
    /// The archive's bytes without the optional files.
    pub tables_size: u64,
}

/// Steps of an export, for its progress.
pub const STEPS: usize = 8;

/// Databases whose results are read at a time.
const DATABASES_AT_ONCE: usize = 200;

/// Builds the archive of `loaded` into `dest` (a file that does not exist
/// yet), writing its files into `work` (an empty private folder) first;
/// `step(n, what)` after each step.
pub async fn build(
    store: &Store,
    data_dir: &Path,
    loaded: &LoadedLab,
    options: &ExportOptions,
    (work, dest): (&Path, &Path),
    step: &(dyn Fn(usize, &str) + Sync),
) -> Result<Built, ExportError> {
    let lab = &loaded.lab;
    let id = &lab.id;
    let mut extra: Vec<(String, PathBuf)> = vec![];
    lab_files(store, loaded, work).await?;
    step(1, "the lab's files");
    let mut people = store.participants(id).await?;
    people.sort_by(|a, b| a.username.as_str().cmp(b.username.as_str()));
    tables::participants(work, &people, options)?;
    step(2, "participants");
    let finals: BTreeMap<String, FinalState> = store
        .final_states(id)
        .await?
        .into_iter()
        .map(|f| (f.database.clone(), f))
        .collect();
    let mut results = Results::create(work, options)?;
    for chunk in people.chunks(DATABASES_AT_ONCE) {
        let dbs: Vec<String> = chunk.iter().map(|p| p.database.to_string()).collect();
        let stored = store.task_scores_of(id, &dbs).await?;
        results.write(lab, chunk, &stored, &finals)?;
    }
    results.finish()?;
    step(3, "scores, task results, grades");
    tables::history(store, id, work, options).await?;
    step(4, "history and sessions");
    let dumps = tables::submissions(store, id, work, options).await?;
    if options.dumps {
        extra.extend(dumps);
    }
    step(5, "hand-ins");
    let job_ids = tables::jobs(store, id, work, options).await?;
    if options.logs {
        job_logs(store, &job_ids, work).await?;
    }
    step(6, "jobs");
    let snapshots = evidence(store, (id, data_dir), &people, &finals, (work, options)).await?;
    if options.snapshots {
        extra.extend(snapshots);
    }
    readme(loaded, options, work)?;
    step(7, "snapshots and final states");
    let (work, dest) = (work.to_path_buf(), dest.to_path_buf());
    let built = tokio::task::spawn_blocking(move || pack(&work, &extra, &dest))
        .await
        .map_err(|e| ExportError::Io {
            what: "packing".into(),
            source: std::io::Error::other(e),
        })??;
    step(8, "packed");
    Ok(built)
}

/// `lab/lab.yaml` and `lab/files/...` as applied.
async fn lab_files(store: &Store, loaded: &LoadedLab, work: &Path) -> Result<(), ExportError> {
    let dir = work.join("lab");
    std::fs::create_dir_all(dir.join("files")).map_err(io("creating lab/"))?;
    std::fs::write(dir.join("lab.yaml"), &loaded.text).map_err(io("writing lab.yaml"))?;
    for f in store.lab_sources(&loaded.lab.id).await? {
        let path = dir.join("files").join(&f.file_name);
        if f.file_name.split('/').any(|p| p == ".." || p.is_empty()) {
            continue; // never stored: names are checked when a lab is read
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io("creating lab/files"))?;
        }
        std::fs::write(&path, &f.bytes).map_err(io(format!("writing {}", f.file_name)))?;
    }
    Ok(())
}

/// `logs/jobs/<id>.txt`: each job's log lines.
async fn job_logs(store: &Store, ids: &[i64], work: &Path) -> Result<(), ExportError> {
    let dir = work.join("logs").join("jobs");
    std::fs::create_dir_all(&dir).map_err(io("creating logs/"))?;
    for id in ids {
        let lines = store.job_log(*id).await?;
        if !lines.is_empty() {
            std::fs::write(dir.join(format!("{id}.txt")), lines.join("\n") + "\n")
                .map_err(io("writing a job's log"))?;
        }
    }
    Ok(())
}

#[derive(serde::Serialize, Clone)]
struct SnapshotRow {
    database: String,
    n: i32,
    kind: String,
    taken_at: chrono::DateTime<chrono::Utc>,
    size: i64,
    sha256: String,
}

#[derive(serde::Serialize, Clone)]
struct FinalRow {
    database: String,
    deadline: chrono::DateTime<chrono::Utc>,
    taken_at: chrono::DateTime<chrono::Utc>,
    points: i32,
    max_points: i32,
    late: bool,
    reason: Option<String>,
    policy: String,
    snapshot: Option<i32>,
    snapshot_error: Option<String>,
}

/// `snapshots.csv` and `final_states.csv`; returns the snapshot files
/// (archive name, file).
async fn evidence(
    store: &Store,
    (lab_id, data_dir): (&crate::ident::LabId, &Path),
    people: &[crate::control::ParticipantRecord],
    finals: &BTreeMap<String, FinalState>,
    (work, options): (&Path, &ExportOptions),
) -> Result<Vec<(String, PathBuf)>, ExportError> {
    let mut dbs: Vec<String> = people.iter().map(|p| p.database.to_string()).collect();
    dbs.sort();
    dbs.dedup();
    let mut snaps = Table::create(work, "snapshots", true, options)?;
    let mut finals_t = Table::create(work, "final_states", true, options)?;
    let mut files = vec![];
    for db in &dbs {
        let mut list = store.snapshots(lab_id, db).await?;
        list.sort_by_key(|s| s.n);
        for s in &list {
            let row = SnapshotRow {
                database: db.clone(),
                n: s.n,
                kind: s.kind.to_string(),
                taken_at: s.taken_at,
                size: s.size,
                sha256: s.sha256.clone(),
            };
            snaps.row(&row, &row)?;
            files.push((
                format!("snapshots/{db}/{}-{}.dump", s.n, s.kind),
                data_dir.join(&s.file),
            ));
        }
        if let Some(f) = finals.get(db) {
            let row = FinalRow {
                database: db.clone(),
                deadline: f.deadline,
                taken_at: f.taken_at,
                points: f.points,
                max_points: f.max_points,
                late: f.late,
                reason: f.reason.clone(),
                policy: f.policy.name().to_string(),
                snapshot: list
                    .iter()
                    .find(|s| Some(s.id) == f.snapshot_id)
                    .map(|s| s.n),
                snapshot_error: f.snapshot_error.clone(),
            };
            let csv = FinalRow {
                reason: row.reason.as_deref().map(super::neutralize),
                snapshot_error: row.snapshot_error.as_deref().map(super::neutralize),
                ..row.clone()
            };
            finals_t.row(&row, &csv)?;
        }
    }
    snaps.finish()?;
    finals_t.finish()?;
    Ok(files)
}

const README: &str = "\
This archive holds the data of one pglab lab, as its control database had
it when the export ran. Every CSV file is RFC 4180: UTF-8, a header line,
CRLF line ends{BOM}. Text that a spreadsheet would take for a formula
(starting with = + - @) has a leading ' in the CSV files; the JSON files
carry the same rows with their types and the text as it is. Times are UTC,
RFC 3339.

lab/lab.yaml           the lab file as applied
lab/files/             the reference, the starter and the files they include
participants.csv/.json username, name, email, group, database (no passwords)
scores.csv/.json       one row per participant: points now, max_points,
                       ratio, tasks passed, and the final score when the
                       deadline passed (final_points, final_taken_at,
                       final_late)
task_results.csv/.json participant x task: passed, points, first passed,
                       why not (the check's reason), and the final state
grades.csv             username, email, points, maximum: the final score
                       where the deadline passed, the current one elsewhere
history.csv/.json      every change of a task's state (database, task, at,
                       passed, points, class of the failure)
sessions.csv/.json     the periods in which a participant was connected
submissions.csv/.json  every hand-in: who, when, size, format, late, status,
                       errors
jobs.csv/.json         the lab's jobs (applies, restores, resets,
                       snapshots, final states)
snapshots.csv/.json    every snapshot: database, number, kind, time, size,
                       SHA-256
final_states.csv/.json each database's state at its deadline
{OPTIONAL}
Grades into a learning management system:
- Moodle (Grades > Import > CSV file): map \"username\" (or \"email\") to
  the user's username (or email address), and \"points\" to the grade item;
  the grade item's maximum should be the \"maximum\" column.
- Canvas (Grades > Import): Canvas takes its own gradebook CSV. Export the
  course's gradebook, add a column named after the assignment, fill it from
  grades.csv by \"SIS Login ID\" = username (or by e-mail), and import that
  file; set the assignment's points possible to \"maximum\".

Made by pglab {VERSION}; lab {LAB} ({TITLE}); options: {OPTIONS}.
";

fn readme(loaded: &LoadedLab, options: &ExportOptions, work: &Path) -> Result<(), ExportError> {
    let mut optional = String::new();
    if options.dumps {
        optional += "dumps/<db>/<id>.*     the uploaded dumps still kept\n";
    }
    if options.snapshots {
        optional += "snapshots/<db>/<n>-<kind>.dump  the snapshot files (pg_restore reads them)\n";
    }
    if options.logs {
        optional += "logs/jobs/<id>.txt    each job's log lines\n";
    }
    let text = README
        .replace(
            "{BOM}",
            if options.bom {
                ", a byte order mark first"
            } else {
                ""
            },
        )
        .replace("{OPTIONAL}", &optional)
        .replace("{VERSION}", env!("CARGO_PKG_VERSION"))
        .replace("{LAB}", loaded.lab.id.as_str())
        .replace("{TITLE}", &loaded.lab.title)
        .replace("{OPTIONS}", &options.describe());
    std::fs::write(work.join("README.txt"), text).map_err(io("writing README.txt"))
}

/// Every file under `dir`, by its `/`-separated name relative to it.
fn files_under(dir: &Path) -> std::io::Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let path = e?.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(rel) = path.strip_prefix(dir) {
                let name: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                out.insert(name.join("/"), path);
            }
        }
    }
    Ok(out)
}

fn is_optional(name: &str) -> bool {
    name.starts_with("dumps/") || name.starts_with("snapshots/") || name.starts_with("logs/")
}

/// Packs the files of `work` and the `extra` ones, in name order, into
/// `dest`.
fn pack(work: &Path, extra: &[(String, PathBuf)], dest: &Path) -> Result<Built, ExportError> {
    let mut entries = files_under(work).map_err(io("listing the export's files"))?;
    // The jobs' logs are optional too (written into the folder).
    let mut optional: u64 = entries
        .iter()
        .filter(|(name, _)| name.starts_with("logs/"))
        .filter_map(|(name, path)| {
            path.metadata()
                .ok()
                .map(|m| m.len() + 76 + 2 * name.len() as u64)
        })
        .sum();
    for (name, path) in extra {
        if path.is_file() && !entries.contains_key(name) {
            let len = path.metadata().map(|m| m.len()).unwrap_or(0);
            // A local and a central header each, and the name twice.
            optional += len + 30 + 46 + 2 * name.len() as u64;
            entries.insert(name.clone(), path.clone());
        }
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dest)
        .map_err(io(format!("creating {}", dest.display())))?;
    let mut zip = ZipWriter::new(std::io::BufWriter::new(file));
    for (name, path) in &entries {
        let mut f = match std::fs::File::open(path) {
            // A hand-in replaced (its upload removed) since it was listed.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && is_optional(name) => continue,
            other => other.map_err(io(format!("reading {name}")))?,
        };
        let len = f.metadata().map_err(io(format!("reading {name}")))?.len();
        // Dumps and snapshots are compressed already.
        let deflate = !name.starts_with("dumps/") && !name.starts_with("snapshots/");
        zip.add(name, len, &mut f, deflate)
            .map_err(io(format!("packing {name}")))?;
    }
    let out = zip.finish().map_err(io("finishing the archive"))?;
    let file = out.into_inner().map_err(|e| ExportError::Io {
        what: "writing the archive".into(),
        source: e.into_error(),
    })?;
    file.sync_all().map_err(io("writing the archive"))?;
    let size = file.metadata().map_err(io("reading the archive"))?.len();
    Ok(Built {
        size,
        tables_size: size.saturating_sub(optional),
    })
}
