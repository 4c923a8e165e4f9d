//! The lab's records as files: each table as RFC 4180 CSV (UTF-8, CRLF,
//! a header; a byte order mark if asked for) and the main ones as JSON too,
//! written a page of rows at a time.

use super::{io, neutralize, ExportError, ExportOptions};
use crate::control::{FinalState, ParticipantRecord, Store, StoredTask};
use crate::ident::LabId;
use crate::lab::Lab;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Rows read from the control database at a time.
const PAGE: i64 = 5000;

/// A CSV file and, optionally, the same rows as a JSON array.
pub struct Table {
    csv: csv::Writer<BufWriter<File>>,
    json: Option<(BufWriter<File>, bool)>,
}

impl Table {
    pub fn create(
        dir: &Path,
        stem: &str,
        json: bool,
        options: &ExportOptions,
    ) -> Result<Self, ExportError> {
        let csv_path = dir.join(format!("{stem}.csv"));
        let mut out =
            BufWriter::new(File::create(&csv_path).map_err(io(format!("creating {stem}.csv")))?);
        if options.bom {
            out.write_all("\u{feff}".as_bytes())
                .map_err(io("writing"))?;
        }
        let csv = csv::WriterBuilder::new()
            .terminator(csv::Terminator::CRLF)
            .from_writer(out);
        let json = if json {
            let mut f = BufWriter::new(
                File::create(dir.join(format!("{stem}.json")))
                    .map_err(io(format!("creating {stem}.json")))?,
            );
            f.write_all(b"[").map_err(io("writing"))?;
            Some((f, true))
        } else {
            None
        };
        Ok(Self { csv, json })
    }

    /// Writes `row` to the JSON file as it is, and `csv_row` (free text
    /// neutralized for spreadsheets) to the CSV file.
    pub fn row<T: Serialize, U: Serialize>(
        &mut self,
        row: &T,
        csv_row: &U,
    ) -> Result<(), ExportError> {
        self.csv.serialize(csv_row)?;
        if let Some((f, first)) = &mut self.json {
            if !*first {
                f.write_all(b",").map_err(io("writing"))?;
            }
            f.write_all(b"\n").map_err(io("writing"))?;
            serde_json::to_writer(&mut *f, row)?;
            *first = false;
        }
        Ok(())
    }

    pub fn finish(self) -> Result<(), ExportError> {
        let mut csv = self.csv;
        csv.flush().map_err(io("writing CSV"))?;
        if let Some((mut f, _)) = self.json {
            f.write_all(b"\n]\n").map_err(io("writing"))?;
            f.flush().map_err(io("writing JSON"))?;
        }
        Ok(())
    }
}

#[derive(Serialize, Clone)]
struct Participant {
    username: String,
    name: String,
    email: String,
    group: Option<String>,
    database: String,
}

impl Participant {
    fn of(p: &ParticipantRecord) -> Self {
        Self {
            username: p.username.to_string(),
            name: p.name.clone(),
            email: p.email.clone(),
            group: p.group.as_ref().map(|g| g.to_string()),
            database: p.database.to_string(),
        }
    }

    fn csv(&self) -> Self {
        Self {
            name: neutralize(&self.name),
            email: neutralize(&self.email),
            ..self.clone()
        }
    }
}

pub fn participants(
    dir: &Path,
    people: &[ParticipantRecord],
    o: &ExportOptions,
) -> Result<(), ExportError> {
    let mut t = Table::create(dir, "participants", true, o)?;
    for p in people {
        let row = Participant::of(p);
        t.row(&row, &row.csv())?;
    }
    t.finish()
}

#[derive(Serialize, Clone)]
struct TaskResult {
    username: String,
    database: String,
    task: String,
    passed: bool,
    points: i32,
    max_points: u32,
    first_passed_at: Option<chrono::DateTime<chrono::Utc>>,
    reason: Option<String>,
    final_passed: Option<bool>,
    final_points: Option<u32>,
}

#[derive(Serialize, Clone)]
struct Score {
    username: String,
    name: String,
    email: String,
    group: Option<String>,
    database: String,
    points: i64,
    max_points: i64,
    ratio: f64,
    tasks_passed: usize,
    tasks: usize,
    final_points: Option<i32>,
    final_taken_at: Option<chrono::DateTime<chrono::Utc>>,
    final_late: Option<bool>,
}

#[derive(Serialize)]
struct Grade<'a> {
    username: &'a str,
    email: String,
    points: i64,
    maximum: i64,
}

/// The files that follow each participant's results: `scores`,
/// `task_results` and `grades`, a page of databases at a time.
pub struct Results {
    scores: Table,
    tasks: Table,
    grades: Table,
}

impl Results {
    pub fn create(dir: &Path, o: &ExportOptions) -> Result<Self, ExportError> {
        Ok(Self {
            scores: Table::create(dir, "scores", true, o)?,
            tasks: Table::create(dir, "task_results", true, o)?,
            grades: Table::create(dir, "grades", false, o)?,
        })
    }

    /// The rows of `people` (sorted by username), whose databases' results
    /// are `stored`; `finals` by database.
    pub fn write(
        &mut self,
        lab: &Lab,
        people: &[ParticipantRecord],
        stored: &[StoredTask],
        finals: &BTreeMap<String, FinalState>,
    ) -> Result<(), ExportError> {
        let max: i64 = lab.tasks.iter().map(|t| i64::from(t.points)).sum();
        let by_key: std::collections::HashMap<(&str, &str), &StoredTask> = stored
            .iter()
            .map(|s| ((s.database.as_str(), s.task.as_str()), s))
            .collect();
        for p in people {
            let db = p.database.as_str();
            let fin = finals.get(db);
            let mut points = 0i64;
            let mut passed = 0usize;
            for task in &lab.tasks {
                let s = by_key.get(&(db, task.id.as_str())).copied();
                let f = fin.and_then(|f| f.tasks.iter().find(|t| t.task == task.id));
                let row = TaskResult {
                    username: p.username.to_string(),
                    database: db.to_string(),
                    task: task.id.clone(),
                    passed: s.is_some_and(|s| s.passed),
                    points: s.map_or(0, |s| s.points),
                    max_points: task.points,
                    first_passed_at: s.and_then(|s| s.first_passed_at),
                    reason: s.and_then(|s| s.reason.clone()),
                    final_passed: f.map(|f| f.passed),
                    final_points: f.map(|f| f.points),
                };
                points += i64::from(row.points);
                passed += usize::from(row.passed);
                let csv = TaskResult {
                    reason: row.reason.as_deref().map(neutralize),
                    ..row.clone()
                };
                self.tasks.row(&row, &csv)?;
            }
            let person = Participant::of(p);
            let score = Score {
                username: person.username.clone(),
                name: person.name.clone(),
                email: person.email.clone(),
                group: person.group.clone(),
                database: person.database.clone(),
                points,
                max_points: max,
                ratio: if max > 0 {
                    (points as f64 / max as f64 * 10_000.0).round() / 10_000.0
                } else {
                    0.0
                },
                tasks_passed: passed,
                tasks: lab.tasks.len(),
                final_points: fin.map(|f| f.points),
                final_taken_at: fin.map(|f| f.taken_at),
                final_late: fin.map(|f| f.late),
            };
            let csv = Score {
                name: neutralize(&score.name),
                email: neutralize(&score.email),
                ..score.clone()
            };
            self.scores.row(&score, &csv)?;
            let grade = Grade {
                username: p.username.as_str(),
                email: neutralize(&p.email),
                points: fin.map_or(points, |f| i64::from(f.points)),
                maximum: fin.map_or(max, |f| i64::from(f.max_points)),
            };
            self.grades.row(&grade, &grade)?;
        }
        Ok(())
    }

    pub fn finish(self) -> Result<(), ExportError> {
        self.scores.finish()?;
        self.tasks.finish()?;
        self.grades.finish()
    }
}

#[derive(Serialize, Clone)]
struct Change {
    database: String,
    task: String,
    at: chrono::DateTime<chrono::Utc>,
    passed: bool,
    points: i32,
    class: Option<String>,
}

/// `history.csv`/`.json` (every task state change) and `sessions.csv`.
pub async fn history(
    store: &Store,
    lab: &LabId,
    dir: &Path,
    o: &ExportOptions,
) -> Result<(), ExportError> {
    let mut t = Table::create(dir, "history", true, o)?;
    let mut after = 0;
    loop {
        let page = store.history_page(lab, after, PAGE).await?;
        let Some((last, _, _)) = page.last() else {
            break;
        };
        after = *last;
        for (_, database, c) in page {
            let row = Change {
                database,
                task: c.task,
                at: c.at,
                passed: c.passed,
                points: c.points,
                class: c.class,
            };
            t.row(&row, &row)?;
        }
    }
    t.finish()?;
    let mut t = Table::create(dir, "sessions", true, o)?;
    let mut after = 0;
    loop {
        let page = store.sessions_page(lab, after, PAGE).await?;
        let Some((last, _)) = page.last() else { break };
        after = *last;
        for (_, row) in page {
            t.row(&row, &row)?;
        }
    }
    t.finish()
}

#[derive(Serialize, Clone)]
struct Handin {
    id: i64,
    database: String,
    uploaded_by: String,
    uploaded_at: chrono::DateTime<chrono::Utc>,
    size: i64,
    format: String,
    late: bool,
    status: String,
    attempts: i32,
    finished_at: Option<chrono::DateTime<chrono::Utc>>,
    errors: String,
}

/// `submissions.csv`/`.json`: every hand-in; returns the dumps still kept
/// (archive name, file).
pub async fn submissions(
    store: &Store,
    lab: &LabId,
    dir: &Path,
    o: &ExportOptions,
) -> Result<Vec<(String, PathBuf)>, ExportError> {
    let mut t = Table::create(dir, "submissions", true, o)?;
    let mut kept = vec![];
    let mut all = store.lab_submissions(lab).await?;
    all.sort_by_key(|s| s.id);
    for s in all {
        let errors: Vec<String> = s
            .errors
            .iter()
            .map(|e| match e.line {
                Some(line) => format!("line {line}: {}", e.message),
                None => e.message.clone(),
            })
            .collect();
        let row = Handin {
            id: s.id,
            database: s.database.to_string(),
            uploaded_by: s.uploaded_by.to_string(),
            uploaded_at: s.uploaded_at,
            size: s.size,
            format: s.format.name().to_string(),
            late: s.late,
            status: s.status.to_string(),
            attempts: s.attempts,
            finished_at: s.finished_at,
            errors: errors.join("; "),
        };
        let csv = Handin {
            errors: neutralize(&row.errors),
            ..row.clone()
        };
        t.row(&row, &csv)?;
        let file = PathBuf::from(&s.file);
        if file.is_file() {
            let ext = match s.format.name() {
                "plain" => "sql",
                "tar" | "directory" => "tar",
                _ => "dump",
            };
            kept.push((format!("dumps/{}/{}.{ext}", s.database, s.id), file));
        }
    }
    t.finish()?;
    Ok(kept)
}

#[derive(Serialize, Clone)]
struct JobRow {
    id: i64,
    kind: String,
    title: String,
    started_by: String,
    status: String,
    attempts: i32,
    created_at: chrono::DateTime<chrono::Utc>,
    started_at: Option<chrono::DateTime<chrono::Utc>>,
    finished_at: Option<chrono::DateTime<chrono::Utc>>,
    error: Option<String>,
}

/// `jobs.csv` (every job of the lab but exports); returns their ids.
pub async fn jobs(
    store: &Store,
    lab: &LabId,
    dir: &Path,
    o: &ExportOptions,
) -> Result<Vec<i64>, ExportError> {
    let mut t = Table::create(dir, "jobs", true, o)?;
    let mut ids = vec![];
    let mut after = 0;
    loop {
        let page = store.jobs_page(lab, after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for j in page {
            ids.push(j.id);
            let row = JobRow {
                id: j.id,
                kind: j.kind.to_string(),
                title: j.title,
                started_by: j.started_by,
                status: j.status.to_string(),
                attempts: j.attempts,
                created_at: j.created_at,
                started_at: j.started_at,
                finished_at: j.finished_at,
                error: j.error,
            };
            let csv = JobRow {
                error: row.error.as_deref().map(neutralize),
                ..row.clone()
            };
            t.row(&row, &csv)?;
        }
    }
    t.finish()?;
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_is_rfc_4180_with_an_optional_bom_and_json_keeps_types() {
        let dir = tempfile::tempdir().unwrap();
        let o = ExportOptions {
            bom: true,
            ..Default::default()
        };
        let mut t = Table::create(dir.path(), "t", true, &o).unwrap();
        #[derive(Serialize)]
        struct Row<'a> {
            name: &'a str,
            n: i32,
        }
        t.row(
            &Row {
                name: "a, \"b\"",
                n: 1,
            },
            &Row {
                name: "a, \"b\"",
                n: 1,
            },
        )
        .unwrap();
        t.finish().unwrap();
        let csv = std::fs::read(dir.path().join("t.csv")).unwrap();
        assert_eq!(&csv[..3], "\u{feff}".as_bytes());
        assert_eq!(&csv[3..], b"name,n\r\n\"a, \"\"b\"\"\",1\r\n");
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("t.json")).unwrap()).unwrap();
        assert_eq!(json, serde_json::json!([{ "name": "a, \"b\"", "n": 1 }]));
    }
}
