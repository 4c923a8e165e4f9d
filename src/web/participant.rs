//! One participant's page for staff: who they are, where their database
//! is, whether they need help and why, every task with what its check found,
//! and their hand-ins. Linked from each row of the board.

use super::board::{status, RowState};
use super::labs::{load_lab, LabUserPath};
use super::login::CsrfOnly;
use super::session::{Master, Staff};
use super::{AppState, Nav, WebError};
use crate::control::{ParticipantRecord, SubmissionRecord};
use crate::scoring::{ParticipantBoard, TaskBoard};
use askama::Template;
use axum::extract::State;
use axum::response::{Html, Redirect};
use axum::routing::{get, post};
use axum::{Form, Router};
use chrono::Utc;

pub struct TaskLine {
    pub title: String,
    pub points: u32,
    pub state: Option<TaskBoard>,
}

#[derive(Template)]
#[template(path = "participant.html")]
struct ParticipantPage {
    nav: Option<Nav>,
    lab: String,
    lab_title: String,
    person: ParticipantRecord,
    psql: String,
    board: Option<ParticipantBoard>,
    state: RowState,
    status_text: String,
    help: Option<String>,
    tasks: Vec<TaskLine>,
    handins: Vec<SubmissionRecord>,
    timeline: Vec<crate::app::participants::Event>,
    evidence: crate::app::deadlines::Evidence,
}

impl ParticipantPage {
    /// Whether something happened after the database's deadline (work that
    /// does not count in the final score).
    fn after_deadline(&self, at: &chrono::DateTime<Utc>) -> bool {
        self.evidence.deadline.is_some_and(|d| *at > d)
    }

    /// Whether a snapshot holds work after the deadline (the final one
    /// holds the deadline's state).
    fn late_snapshot(&self, snap: &crate::control::SnapshotRecord) -> bool {
        snap.kind != crate::control::SnapshotKind::Final && self.after_deadline(&snap.taken_at)
    }

    /// The number of the snapshot the final score was computed from.
    fn final_snapshot(&self) -> String {
        let id = self
            .evidence
            .final_state
            .as_ref()
            .and_then(|f| f.snapshot_id);
        self.evidence
            .snapshots
            .iter()
            .find(|s| Some(s.id) == id)
            .map_or_else(|| "(removed)".into(), |s| format!("#{}", s.n))
    }

    fn size(&self, snap: &crate::control::SnapshotRecord) -> String {
        crate::app::human_size(snap.size.max(0) as u64)
    }

    fn every(&self) -> String {
        self.evidence.snapshot_rule.map_or_else(String::new, |r| {
            let secs = r.every.as_secs();
            match secs {
                s if s % 3600 == 0 => format!("every {} h", s / 3600),
                s if s % 60 == 0 => format!("every {} min", s / 60),
                s => format!("every {s} s"),
            }
        })
    }
}

fn when(t: &Option<chrono::DateTime<Utc>>) -> String {
    t.map_or_else(
        || "—".to_string(),
        |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

async fn page(
    State(state): State<AppState>,
    Staff(s): Staff,
    LabUserPath(lab, user): LabUserPath,
) -> Result<Html<String>, WebError> {
    let loaded = load_lab(&state, &lab).await?;
    let person = state
        .store
        .participants(&lab)
        .await?
        .into_iter()
        .find(|p| p.username == user)
        .ok_or(WebError::NotFound)?;
    let snapshot = state.board.get();
    let lab_board = snapshot.labs.iter().find(|l| l.id == lab.as_str());
    let board = lab_board
        .and_then(|b| b.participants.iter().find(|p| p.username == user.as_str()))
        .cloned();
    let tasks_n = loaded.lab.tasks.len();
    let (row_state, status_text, help) = match &board {
        Some(p) => status(p, tasks_n, Utc::now(), true),
        None => (RowState::Idle, "not checked yet", None),
    };
    let tasks = loaded
        .lab
        .tasks
        .iter()
        .enumerate()
        .map(|(i, t)| TaskLine {
            title: t.title.clone(),
            points: t.points,
            state: board
                .as_ref()
                .and_then(|p| p.tasks.as_ref())
                .and_then(|ts| ts.get(i).cloned()),
        })
        .collect();
    let handins = state
        .store
        .database_submissions(&lab, &person.database)
        .await?;
    let timeline =
        crate::app::participants::timeline(&state.store, &loaded.lab, &person.database, true)
            .await?;
    let evidence =
        crate::app::deadlines::evidence(&state.store, &loaded.lab, &user, &person.database).await?;
    let psql = state
        .store
        .database_of(&lab, &user)
        .await?
        .and_then(|d| state.settings.server(&d.server))
        .map_or_else(String::new, |server| {
            crate::app::psql_command(server, &user, &person.database)
        });
    Ok(Html(
        ParticipantPage {
            nav: Nav::of(&s),
            lab: lab.to_string(),
            lab_title: loaded.lab.title,
            person,
            psql,
            board,
            state: row_state,
            status_text: status_text.to_string(),
            help,
            tasks,
            handins,
            timeline,
            evidence,
        }
        .render()?,
    ))
}

/// `POST .../people/{user}/reset-database` (lab master): the
/// participant's database back to the starter, as a job whose page follows.
async fn reset_database(
    State(state): State<AppState>,
    Master(s): Master,
    LabUserPath(lab, user): LabUserPath,
    Form(form): Form<CsrfOnly>,
) -> Result<Redirect, WebError> {
    s.check_csrf(&form.csrf)?;
    let database = state
        .store
        .participants(&lab)
        .await?
        .into_iter()
        .find(|p| p.username == user)
        .ok_or(WebError::NotFound)?
        .database;
    let by = crate::app::participants::ResetBy::LabMaster;
    let id = crate::app::participants::start_reset(
        &state.store,
        &state.queue,
        &lab,
        &database,
        &s.user,
        by,
    )
    .await
    .map_err(|e| match e {
        crate::app::participants::StartResetError::Store(e) => e.into(),
        busy => WebError::Conflict(busy.to_string()),
    })?;
    Ok(Redirect::to(&format!("/jobs/{id}")))
}

/// A refresh of a form's address under a participant's page: back to it.
pub(super) async fn back_to_page(LabUserPath(lab, user): LabUserPath) -> Redirect {
    Redirect::to(&format!("/labs/{lab}/people/{user}"))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/labs/{lab}/people/{user}", get(page))
        .route(
            "/labs/{lab}/people/{user}/reset-database",
            post(reset_database).get(back_to_page),
        )
}
