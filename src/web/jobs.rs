//! A job's page (an apply started from a page): its progress and log as
//! the control database holds them, so it works after a restart and from
//! any replica; the browser follows it until it ends.

use super::session::Master;
use super::{AppState, Nav, WebError};
use crate::control::{JobRecord, JobStatus};
use askama::Template;
use axum::extract::{Path, State};
use axum::response::Html;
use axum::routing::get;
use axum::{Json, Router};

/// A job as its page and its status URL show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JobView {
    pub id: i64,
    pub kind: crate::control::JobKind,
    pub lab: String,
    pub title: String,
    pub started_by: String,
    pub total: i32,
    pub done: i32,
    pub log: Vec<String>,
    /// `queued`, `running`, `succeeded` or `failed`.
    pub state: JobStatus,
    pub attempts: i32,
    pub summary: Vec<String>,
    pub error: Option<String>,
}

impl JobView {
    fn of(job: JobRecord, log: Vec<String>) -> Self {
        Self {
            id: job.id,
            kind: job.kind,
            lab: job.lab.to_string(),
            title: job.title,
            started_by: job.started_by,
            total: job.total,
            done: job.done,
            log,
            state: job.status,
            attempts: job.attempts,
            summary: job.summary,
            error: job.error,
        }
    }

    fn ended(&self) -> bool {
        self.state.ended()
    }
}

#[derive(Template)]
#[template(path = "job.html")]
struct JobPage {
    nav: Option<Nav>,
    job: JobView,
}

impl JobPage {
    /// "12 of 40 changes (30%)", or what happens before the changes are
    /// known (the same words as the page's script).
    fn progress_text(&self) -> String {
        let job = &self.job;
        let apply = job.kind == crate::control::JobKind::Apply;
        match (job.total, job.state) {
            (0, JobStatus::Queued) => "waiting for a worker".into(),
            (0, JobStatus::Running) if apply => "planning the changes".into(),
            (0, JobStatus::Running) => "running".into(),
            (0, _) if apply => "no changes".into(),
            (0, _) => "done".into(),
            (total, _) => format!(
                "{} of {total} changes ({}%)",
                job.done,
                job.done * 100 / total
            ),
        }
    }
}

async fn find(state: &AppState, id: &str) -> Result<JobView, WebError> {
    let id: i64 = id.parse().map_err(|_| WebError::NotFound)?;
    let job = state.store.job(id).await?.ok_or(WebError::NotFound)?;
    let log = state.store.job_log(id).await?;
    Ok(JobView::of(job, log))
}

async fn page(
    State(state): State<AppState>,
    Master(s): Master,
    Path(id): Path<String>,
) -> Result<Html<String>, WebError> {
    let job = find(&state, &id).await?;
    Ok(Html(
        JobPage {
            nav: Nav::of(&s),
            job,
        }
        .render()?,
    ))
}

async fn status(
    State(state): State<AppState>,
    Master(_): Master,
    Path(id): Path<String>,
) -> Result<Json<JobView>, WebError> {
    Ok(Json(find(&state, &id).await?))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/jobs/{id}", get(page))
        .route("/jobs/{id}/status", get(status))
}
