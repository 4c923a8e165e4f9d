//! The lab definition: what a lab file says, parsed and validated.

use super::walk::{Fields, Walker};
use super::yaml::Node;
use crate::ident::LabId;
use chrono::{DateTime, Utc};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatabaseMode {
    PerParticipant,
    PerGroup,
}

/// Where a database's content comes from, with the path resolved against the
/// lab file's folder.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Sql(PathBuf),
    Dump(PathBuf),
}

impl Source {
    pub fn path(&self) -> &Path {
        match self {
            Source::Sql(p) | Source::Dump(p) => p,
        }
    }
}

impl Lab {
    /// The schemas the lab's table and view checks name, other than
    /// `public`: where participants' tables are (and what their databases'
    /// `search_path` includes).
    pub fn schemas(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .tasks
            .iter()
            .flat_map(|t| &t.checks)
            .filter_map(|c| match c {
                Check::Table { name, .. } | Check::View { name, .. } => Some(name.schema.clone()),
                _ => None,
            })
            .filter(|s| s != "public")
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The lab's schemas and then `public`: where names are looked up when
    /// a participant's view is copied to a hidden dataset.
    pub fn search_schemas(&self) -> Vec<String> {
        let mut out = self.schemas();
        out.push("public".into());
        out
    }
}

/// `schema.name` of a table or view; quoted only where SQL is built.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ObjectName {
    pub schema: String,
    pub name: String,
}

impl ObjectName {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (schema, name) = s.split_once('.').unwrap_or(("public", s));
        if schema.is_empty() || name.is_empty() || name.contains('.') {
            return Err(format!("{s:?} is not a name like schema.table"));
        }
        Ok(Self {
            schema: schema.to_string(),
            name: name.to_string(),
        })
    }
}

impl std::fmt::Display for ObjectName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compare {
    Columns,
    PrimaryKey,
    ForeignKeys,
    Rows,
}

impl Compare {
    pub(super) const ALL: [(&'static str, Compare); 4] = [
        ("columns", Compare::Columns),
        ("primary_key", Compare::PrimaryKey),
        ("foreign_keys", Compare::ForeignKeys),
        ("rows", Compare::Rows),
    ];
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Check {
    Table {
        name: ObjectName,
        compare: Vec<Compare>,
    },
    View {
        name: ObjectName,
        expect: Option<String>,
        ordered: bool,
    },
    Query {
        sql: String,
        ordered: bool,
    },
    Sql {
        sql: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Task {
    pub id: String,
    pub title: String,
    pub description: Option<String>,
    pub points: u32,
    pub checks: Vec<Check>,
    /// Per check, what the participant is told while that check fails.
    #[serde(default)]
    pub hints: Vec<Option<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LabOptions {
    /// Replace participant names by stable pseudonyms on public views.
    pub pseudonymize: bool,
    /// Postgres connection limit of each participant's role.
    pub connection_limit: u32,
    /// Show a pseudonymised board to anyone, without login.
    #[serde(default)]
    pub public_board: bool,
    /// Row comparisons may show the participant's own unexpected rows
    /// (`feedback: rows`), not only how many rows differ.
    #[serde(default)]
    pub feedback_rows: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Lab {
    pub id: LabId,
    pub title: String,
    pub deadline: Option<DateTime<Utc>>,
    pub databases: DatabaseMode,
    pub reference: Source,
    pub starter: Option<Source>,
    /// Hidden datasets: variants of the reference's data for the same
    /// schema, on which view and query checks are evaluated too (issue 20).
    #[serde(default)]
    pub datasets: Vec<Source>,
    pub tasks: Vec<Task>,
    pub options: LabOptions,
    /// Whether and how participants hand in `pg_dump` files.
    #[serde(default)]
    pub submissions: Option<super::submissions::SubmissionRules>,
    /// Periodic snapshots of every database, if any.
    #[serde(default)]
    pub snapshots: Option<super::evidence::SnapshotRule>,
    /// What happens to the databases once their final state was taken.
    #[serde(default)]
    pub after_deadline: super::evidence::AfterDeadline,
    /// What the lab mails by itself.
    #[serde(default)]
    pub mail: super::mail::MailRules,
}

const LAB_KEYS: &[&str] = &[
    "submissions",
    "id",
    "title",
    "deadline",
    "databases",
    "reference",
    "starter",
    "datasets",
    "tasks",
    "options",
    "snapshots",
    "after_deadline",
    "mail",
];
const TASK_KEYS: &[&str] = &["id", "title", "description", "points", "checks"];

/// Builds a `Lab` from the tree, reporting every problem to `w`.
pub fn lab_from_tree(w: &mut Walker, root: &Node, dir: &Path) -> Option<Lab> {
    let f = w.fields(root, "", LAB_KEYS)?;
    let id = w
        .required_string(&f, "id")
        .and_then(|s| match LabId::parse(&s) {
            Ok(id) => Some(id),
            Err(e) => {
                w.error(f.get("id").map_or(f.line, |n| n.line), "id", e.to_string());
                None
            }
        });
    let title = w.required_string(&f, "title");
    let deadline = w.time(&f, "deadline");
    let databases = match w.string(&f, "databases").as_deref() {
        None | Some("per-participant") => Some(DatabaseMode::PerParticipant),
        Some("per-group") => Some(DatabaseMode::PerGroup),
        Some(other) => {
            let line = f.get("databases").map_or(f.line, |n| n.line);
            w.error(
                line,
                "databases",
                format!("unknown mode {other:?} (expected per-participant or per-group)"),
            );
            None
        }
    };
    let reference = match f.get("reference") {
        Some(node) => source(w, node, "reference", dir),
        None => {
            w.error(f.line, "reference", "is required (sql: FILE or dump: FILE)");
            None
        }
    };
    let starter = f.get("starter").map(|n| source(w, n, "starter", dir));
    let datasets = datasets(w, &f, dir);
    let options = options(w, &f);
    let tasks = tasks(w, &f);
    let submissions = match f.get("submissions") {
        Some(node) => Some(super::submissions::rules(w, node)?),
        None => None,
    };
    let snapshots = match f.get("snapshots") {
        Some(node) => Some(super::evidence::snapshots(w, node)?),
        None => None,
    };
    let after_deadline = super::evidence::after_deadline(w, &f);
    let mail = match f.get("mail") {
        Some(node) => super::mail::rules(w, node)?,
        None => super::mail::MailRules::default(),
    };
    Some(Lab {
        id: id?,
        title: title?,
        deadline,
        databases: databases?,
        reference: reference?,
        starter: starter.unwrap_or(None),
        datasets: datasets?,
        tasks: tasks?,
        options: options?,
        submissions,
        snapshots,
        after_deadline,
        mail,
    })
}

fn source(w: &mut Walker, node: &Node, path: &str, dir: &Path) -> Option<Source> {
    let f = w.fields(node, path, &["sql", "dump"])?;
    let (sql, dump) = (w.string(&f, "sql"), w.string(&f, "dump"));
    let (make, file): (fn(PathBuf) -> Source, String) = match (sql, dump) {
        (Some(s), None) => (Source::Sql, s),
        (None, Some(d)) => (Source::Dump, d),
        _ => {
            w.error(
                node.line,
                path,
                "give exactly one of sql: FILE or dump: FILE",
            );
            return None;
        }
    };
    // In an upload, only a file of the upload: refused before the path is
    // looked at, with the same words whether or not something is there.
    let plain = !file.is_empty()
        && !file.starts_with('.')
        && !file.contains(['/', '\\'])
        && !std::path::Path::new(&file).is_absolute();
    if w.confined && !plain {
        w.error(
            node.line,
            path,
            format!("{file}: name a file uploaded with the lab, without folders"),
        );
        return None;
    }
    let resolved = dir.join(&file);
    if !resolved.is_file() {
        w.error(
            node.line,
            path,
            format!("file {file:?} not found (looked in {})", resolved.display()),
        );
        return None;
    }
    Some(make(resolved))
}

/// `datasets:`, a list of sources like the reference (at most
/// [`MAX_DATASETS`]).
fn datasets(w: &mut Walker, f: &Fields, dir: &Path) -> Option<Vec<Source>> {
    let before = w.errors.len();
    let items = w.list(f, "datasets");
    if items.len() > MAX_DATASETS {
        w.error(
            f.get("datasets").map_or(f.line, |n| n.line),
            "datasets",
            format!(
                "{} datasets: at most {MAX_DATASETS} (each is evaluated for every changed view)",
                items.len()
            ),
        );
    }
    let out: Vec<Source> = items
        .into_iter()
        .enumerate()
        .filter_map(|(i, node)| source(w, node, &format!("datasets[{i}]"), dir))
        .collect();
    (w.errors.len() == before).then_some(out)
}

/// Hidden datasets a lab may list.
pub const MAX_DATASETS: usize = 5;

fn options(w: &mut Walker, f: &Fields) -> Option<LabOptions> {
    let mut out = LabOptions {
        pseudonymize: false,
        connection_limit: 5,
        public_board: false,
        feedback_rows: false,
    };
    if let Some(node) = f.get("options") {
        let o = w.fields(
            node,
            "options",
            &[
                "pseudonymize",
                "connection_limit",
                "public_board",
                "feedback",
            ],
        )?;
        out.feedback_rows = match w.string(&o, "feedback").as_deref() {
            None | Some("counts") => false,
            Some("rows") => true,
            Some(other) => {
                w.error(
                    o.line,
                    &o.child("feedback"),
                    format!("{other:?} is not one of: counts, rows"),
                );
                false
            }
        };
        out.public_board = w.boolean(&o, "public_board").unwrap_or(false);
        out.pseudonymize = w.boolean(&o, "pseudonymize").unwrap_or(false);
        out.connection_limit = w.number(&o, "connection_limit", 1, 100).unwrap_or(5);
    }
    Some(out)
}

fn tasks(w: &mut Walker, f: &Fields) -> Option<Vec<Task>> {
    let before = w.errors.len();
    let items = w.list(f, "tasks");
    if items.is_empty() && f.get("tasks").is_none() {
        w.error(f.line, "tasks", "is required: a list of tasks");
    }
    let mut out: Vec<Task> = Vec::new();
    for (i, node) in items.into_iter().enumerate() {
        let path = format!("tasks[{i}]");
        let Some(t) = w.fields(node, &path, TASK_KEYS) else {
            continue;
        };
        let id = w.required_string(&t, "id");
        if let Some(id) = &id {
            let slug = id
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                && id.len() <= 40
                && id
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
            if !slug {
                w.error(
                    t.line,
                    &t.child("id"),
                    format!("{id:?} is not valid: use 1-40 characters a-z, 0-9, '-' and '_'"),
                );
            } else if out.iter().any(|o| &o.id == id) {
                w.error(t.line, &t.child("id"), format!("duplicate task id {id:?}"));
            }
        }
        let title = w.required_string(&t, "title");
        let description = w.string(&t, "description");
        let points = if t.has("points") {
            w.number(&t, "points", 0, 1000)
        } else {
            Some(1)
        };
        let checks_nodes = w.list(&t, "checks");
        if checks_nodes.is_empty() {
            w.error(
                t.line,
                &t.child("checks"),
                "a task needs at least one check",
            );
        }
        let (checks, hints): (Vec<Check>, Vec<Option<String>>) = checks_nodes
            .into_iter()
            .enumerate()
            .filter_map(|(j, c)| super::checks::check(w, c, &format!("{path}.checks[{j}]")))
            .unzip();
        if let (Some(id), Some(title), Some(points)) = (id, title, points) {
            out.push(Task {
                id,
                title,
                description,
                points,
                checks,
                hints,
            });
        }
    }
    (w.errors.len() == before).then_some(out)
}
