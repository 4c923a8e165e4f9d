//! Long actions started from a page (applying a participant list): they run
//! in the background, the page follows their progress, one per lab at a time.

use super::session::{Role, Session};
use super::{AppState, Nav, WebError};
use askama::Template;
use axum::extract::{Path, State};
use axum::response::Html;
use axum::routing::get;
use axum::{Json, Router};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Lines of progress kept per job (the page shows the latest ones).
const LOG_LINES: usize = 500;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Job {
    pub id: String,
    pub lab: String,
    pub title: String,
    pub started_by: String,
    pub total: usize,
    pub done: usize,
    pub log: Vec<String>,
    /// `running`, `succeeded` or `failed`.
    pub state: &'static str,
    pub summary: Vec<String>,
    pub error: Option<String>,
}

#[derive(Clone, Default)]
pub struct Jobs(Arc<Mutex<HashMap<String, Job>>>);

/// A handle the running job reports through.
#[derive(Clone)]
pub struct JobHandle {
    jobs: Jobs,
    id: String,
}

impl Jobs {
    /// Registers a job for `lab`, unless one is already running for it.
    pub fn start(
        &self,
        lab: &str,
        title: String,
        user: &str,
        total: usize,
    ) -> Result<JobHandle, WebError> {
        let mut jobs = self
            .0
            .lock()
            .map_err(|_| WebError::Internal("job table".into()))?;
        if let Some(j) = jobs.values().find(|j| j.lab == lab && j.state == "running") {
            return Err(WebError::Conflict(format!(
                "{} is still running for lab {lab} (started by {}); wait until it ends: /jobs/{}",
                j.title, j.started_by, j.id
            )));
        }
        let id = super::session::random_token();
        jobs.insert(
            id.clone(),
            Job {
                id: id.clone(),
                lab: lab.to_string(),
                title,
                started_by: user.to_string(),
                total,
                done: 0,
                log: vec![],
                state: "running",
                summary: vec![],
                error: None,
            },
        );
        Ok(JobHandle {
            jobs: self.clone(),
            id,
        })
    }

    pub fn get(&self, id: &str) -> Option<Job> {
        self.0.lock().ok()?.get(id).cloned()
    }
}

impl JobHandle {
    pub fn id(&self) -> &str {
        &self.id
    }

    fn with(&self, f: impl FnOnce(&mut Job)) {
        if let Some(job) = self
            .jobs
            .0
            .lock()
            .ok()
            .as_mut()
            .and_then(|j| j.get_mut(&self.id))
        {
            f(job);
        }
    }

    pub fn progress(&self, done: usize, line: String) {
        self.with(|j| {
            j.done = done;
            j.log.push(line);
            if j.log.len() > LOG_LINES {
                j.log.remove(0);
            }
        });
    }

    pub fn succeed(&self, summary: Vec<String>) {
        self.with(|j| {
            j.done = j.total;
            j.state = "succeeded";
            j.summary = summary;
        });
    }

    pub fn fail(&self, error: String) {
        self.with(|j| {
            j.state = "failed";
            j.error = Some(error);
        });
    }
}

#[derive(Template)]
#[template(path = "job.html")]
struct JobPage {
    nav: Option<Nav>,
    job: Job,
}

impl JobPage {
    fn percent(&self) -> usize {
        (self.job.done * 100)
            .checked_div(self.job.total)
            .unwrap_or(100)
    }
}

fn find(state: &AppState, s: &Session, id: &str) -> Result<Job, WebError> {
    s.require(Role::Master)?;
    state.jobs.get(id).ok_or(WebError::NotFound)
}

async fn page(
    State(state): State<AppState>,
    s: Session,
    Path(id): Path<String>,
) -> Result<Html<String>, WebError> {
    let job = find(&state, &s, &id)?;
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
    s: Session,
    Path(id): Path<String>,
) -> Result<Json<Job>, WebError> {
    Ok(Json(find(&state, &s, &id)?))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/jobs/{id}", get(page))
        .route("/jobs/{id}/status", get(status))
}
