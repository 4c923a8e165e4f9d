//! What a student sees of each lab they take part in: the tasks with their
//! descriptions, their state and what to do about it, the `psql` command,
//! where their tables are, hand-ins; and the part of it that follows the
//! scoring rounds without a reload (`/me/labs/{lab}/progress`, polled with
//! the round's ETag like the board).

use crate::app::psql_command;
use crate::control::Membership;
use crate::ident::Username;
use crate::lab::Lab;
use crate::scoring::{ParticipantBoard, Snapshot, TaskBoard};
use crate::web::labs::LabPath;
use crate::web::session::Student;
use crate::web::{AppState, WebError};
use askama::Template;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};

pub struct TaskRow {
    pub id: String,
    pub title: String,
    /// The description as HTML (Markdown from the lab file, made safe).
    pub description: Option<String>,
    pub points: u32,
    pub state: Option<TaskBoard>,
}

impl TaskRow {
    pub fn passed(&self) -> bool {
        self.state.as_ref().is_some_and(|s| s.passed)
    }
}

pub struct StudentLab {
    pub id: String,
    pub title: String,
    pub database: String,
    pub psql: String,
    /// Schemas the lab's tables and views live in (other than `public`).
    pub schemas: Vec<String>,
    /// The participant's pseudonym on the public board, when it uses them.
    pub pseudonym: Option<String>,
    pub progress: Progress,
    /// Dump uploads, when the lab takes them.
    pub handin: Option<Handin>,
    /// Why the upload just sent into this lab was refused.
    pub upload_error: Option<String>,
    /// Why the reset just asked for could not start.
    pub reset_error: Option<String>,
    /// When each of their tasks passed or broke.
    pub history: Vec<crate::app::participants::Event>,
    /// The deadline of their database, and what happens at it.
    pub deadline: Option<String>,
    /// Their final state, once taken.
    pub final_note: Option<String>,
    /// Closed at the deadline (`read-only`, `lock`): no resets, no hand-ins.
    pub closed: bool,
    /// Their database is moving to another server, or moved lately: the
    /// psql command changes.
    pub moved: Option<String>,
}

/// The deadline and the final state, as the participant reads them.
fn deadline_lines(e: &crate::app::deadlines::Evidence) -> (Option<String>, Option<String>) {
    use crate::lab::AfterDeadline;
    let passed = e.final_state.is_some();
    let after = match (e.after_deadline, passed) {
        (AfterDeadline::KeepOpen, false) => {
            "your database stays open, but work after it does not change your final score"
        }
        (AfterDeadline::KeepOpen, true) => {
            "passed; your database stays open, but work since then does not change your final score"
        }
        (AfterDeadline::ReadOnly, false) => "your database then becomes read-only",
        (AfterDeadline::ReadOnly, true) => "passed; your database is read-only now",
        (AfterDeadline::Lock, false) => "your database is then closed",
        (AfterDeadline::Lock, true) => "passed; your database is closed",
    };
    let deadline = e.deadline.map(|d| {
        let extended = if e.extension.is_some() {
            " (extended for you)"
        } else {
            ""
        };
        format!("{} UTC{extended}: {after}.", d.format("%Y-%m-%d %H:%M"))
    });
    let final_note = e.final_state.as_ref().map(|f| {
        format!(
            "Your final score: {} of {} points, from the state of your database at {} UTC.",
            f.points,
            f.max_points,
            f.taken_at.format("%Y-%m-%d %H:%M:%S")
        )
    });
    (deadline, final_note)
}

/// The part of a lab's section that changes with each scoring round.
#[derive(Template)]
#[template(path = "student_progress.html")]
pub struct Progress {
    pub tasks: Vec<TaskRow>,
    pub points: u32,
    pub max_points: u32,
    /// Why the database could not be scored in the latest round.
    pub error: Option<String>,
    /// When the latest round looked at the database (`None`: not scored
    /// yet).
    pub checked_at: Option<String>,
    /// The round's ETag (the page asks again with it).
    pub version: String,
}

/// What the student page shows of a lab's `submissions:`.
pub struct Handin {
    pub formats: String,
    pub max_size: String,
    pub deadline: Option<String>,
    pub late_policy: &'static str,
    pub replace: bool,
    pub past: Vec<crate::control::SubmissionRecord>,
}

fn handin_of(lab: &Lab, past: Vec<crate::control::SubmissionRecord>) -> Option<Handin> {
    let rules = lab.submissions.clone()?;
    Some(Handin {
        formats: rules
            .formats
            .iter()
            .map(|f| format!("{} ({})", f.name(), f.how()))
            .collect::<Vec<_>>()
            .join("; "),
        max_size: crate::app::human_size(rules.max_bytes),
        deadline: rules
            .deadline(lab.deadline)
            .map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string()),
        late_policy: match rules.late {
            crate::lab::submissions::LatePolicy::Reject => "uploads after it are refused",
            crate::lab::submissions::LatePolicy::AcceptFlagged => {
                "uploads after it are accepted and marked late"
            }
        },
        replace: rules.replace,
        past,
    })
}

/// The round's ETag: it changes when a round publishes a new board.
fn version(snapshot: &Snapshot) -> String {
    format!(
        "\"me-{}\"",
        snapshot
            .at
            .map_or(0, |t| t.timestamp_nanos_opt().unwrap_or(0))
    )
}

fn progress(lab: &Lab, snapshot: &Snapshot, me: Option<&ParticipantBoard>) -> Progress {
    let tasks = lab
        .tasks
        .iter()
        .enumerate()
        .map(|(i, t)| TaskRow {
            id: t.id.clone(),
            title: t.title.clone(),
            description: t.description.as_deref().map(crate::web::markdown::to_html),
            points: t.points,
            state: me
                .and_then(|p| p.tasks.as_ref())
                .and_then(|ts| ts.get(i).cloned()),
        })
        .collect();
    Progress {
        tasks,
        points: me.map_or(0, ParticipantBoard::points),
        max_points: lab.tasks.iter().map(|t| t.points).sum(),
        error: me.and_then(|p| p.error.clone()),
        checked_at: snapshot
            .at
            .filter(|_| me.is_some_and(|p| p.tasks.is_some()))
            .map(|t| t.format("%H:%M:%S UTC").to_string()),
        version: version(snapshot),
    }
}

/// The participant's row on the latest board.
fn me_in<'a>(
    snapshot: &'a Snapshot,
    lab: &crate::ident::LabId,
    user: &Username,
) -> Option<&'a ParticipantBoard> {
    snapshot
        .labs
        .iter()
        .find(|l| l.id == lab.as_str())
        .and_then(|b| b.participants.iter().find(|p| p.username == user.as_str()))
}

async fn lab_of(
    state: &AppState,
    user: &Username,
    m: Membership,
    snapshot: &Snapshot,
) -> Result<Option<StudentLab>, WebError> {
    let Some(loaded) = state.store.lab(&m.lab).await? else {
        return Ok(None);
    };
    let lab = loaded.lab;
    let me = me_in(snapshot, &m.lab, user);
    let evidence =
        crate::app::deadlines::evidence(&state.store, &lab, user, m.database.as_str()).await?;
    let (deadline, final_note) = deadline_lines(&evidence);
    let moved = crate::app::moves::notice(&state.store, &m).await?;
    let past = if lab.submissions.is_some() {
        state
            .store
            .database_submissions(&m.lab, &m.database)
            .await?
    } else {
        vec![]
    };
    Ok(Some(StudentLab {
        id: m.lab.to_string(),
        title: m.title,
        database: m.database.to_string(),
        psql: state
            .settings
            .server(&m.server)
            .map_or_else(String::new, |server| {
                psql_command(server, user, &m.database)
            }),
        schemas: lab.schemas(),
        pseudonym: me
            .filter(|_| lab.options.pseudonymize || lab.options.public_board)
            .map(|p| p.pseudonym.clone()),
        progress: progress(&lab, snapshot, me),
        handin: handin_of(&lab, past),
        upload_error: None,
        reset_error: None,
        history: crate::app::participants::timeline(&state.store, &lab, &m.database, false).await?,
        deadline,
        final_note,
        closed: evidence
            .final_state
            .as_ref()
            .is_some_and(|f| f.policy != crate::lab::AfterDeadline::KeepOpen),
        moved,
    }))
}

pub(super) async fn labs_of(
    state: &AppState,
    user: &Username,
) -> Result<Vec<StudentLab>, WebError> {
    let snapshot = state.board.get();
    let mut out = vec![];
    for m in state.store.memberships(user).await? {
        out.extend(lab_of(state, user, m, &snapshot).await?);
    }
    Ok(out)
}

/// The student's part in `lab`; a lab they take no part in is a 404.
pub(super) async fn membership(
    state: &AppState,
    user: &Username,
    lab: &crate::ident::LabId,
) -> Result<Membership, WebError> {
    state
        .store
        .memberships(user)
        .await?
        .into_iter()
        .find(|m| &m.lab == lab)
        .ok_or(WebError::NotFound)
}

/// `GET /me/labs/{lab}/progress`: the progress part of the lab's section,
/// `304` while no round published anything new.
pub(super) async fn fragment(
    State(state): State<AppState>,
    student: Student,
    LabPath(lab): LabPath,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    let snapshot = state.board.get();
    let tag = version(&snapshot);
    // One address for every student: never from a shared cache.
    let cache = [
        (header::ETAG, tag.clone()),
        (header::CACHE_CONTROL, "private, no-cache".to_string()),
        (header::VARY, "Cookie".to_string()),
    ];
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        == Some(tag.as_str())
    {
        return Ok((StatusCode::NOT_MODIFIED, cache).into_response());
    }
    // Only the progress: hand-ins and history stay as the page showed them.
    membership(&state, &student.user, &lab).await?;
    let spec = state.store.lab(&lab).await?.ok_or(WebError::NotFound)?.lab;
    let me = me_in(&snapshot, &lab, &student.user);
    Ok((cache, Html(progress(&spec, &snapshot, me).render()?)).into_response())
}
