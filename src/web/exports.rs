//! A lab's exports tab (lab masters): start an export with the optional
//! parts and their expected size, follow it, download it. Downloads are
//! for lab masters only; anyone else is told there is nothing there (404).

use super::labs::{load_lab, LabPath};
use super::session::{Master, MaybeSession, Role};
use super::{AppState, Nav, WebError};
use crate::app::exports::{estimate, start_export, Estimate, StartExportError};
use crate::control::{ExportRecord, JobStatus};
use crate::export::ExportOptions;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{Html, Redirect, Response};
use axum::routing::get;
use axum::{Form, Router};

pub struct ExportLine {
    pub e: ExportRecord,
    pub options: String,
    pub state: String,
    pub size: String,
}

#[derive(Template)]
#[template(path = "exports.html")]
struct ExportsPage {
    nav: Option<Nav>,
    lab: String,
    title: String,
    estimate: Estimate,
    exports: Vec<ExportLine>,
    running: bool,
    keep_days: u32,
}

impl ExportsPage {
    fn size(&self, bytes: &u64) -> String {
        crate::app::human_size(*bytes)
    }
}

fn line(e: ExportRecord) -> ExportLine {
    let options: ExportOptions = serde_json::from_value(e.options.clone()).unwrap_or_default();
    let state = match e.status {
        _ if e.deleted_at.is_some() => "expired".to_string(),
        JobStatus::Queued => "queued".into(),
        JobStatus::Running => format!("running ({} of {} steps)", e.done, e.total.max(1)),
        JobStatus::Succeeded => "ready".into(),
        JobStatus::Failed => format!("failed: {}", e.error.as_deref().unwrap_or("unknown")),
    };
    let size = match e.size {
        Some(s) => crate::app::human_size(s.max(0) as u64),
        None => format!("about {}", crate::app::human_size(e.estimate.max(0) as u64)),
    };
    ExportLine {
        options: options.describe(),
        state,
        size,
        e,
    }
}

/// `GET /labs/{lab}/exports`.
async fn page(
    State(state): State<AppState>,
    Master(s): Master,
    LabPath(lab): LabPath,
) -> Result<Html<String>, WebError> {
    let loaded = load_lab(&state, &lab).await?;
    let exports: Vec<ExportLine> = state
        .store
        .lab_exports(&lab)
        .await?
        .into_iter()
        .map(line)
        .collect();
    let running = exports.iter().any(|l| !l.e.status.ended());
    Ok(Html(
        ExportsPage {
            nav: Nav::of(&s),
            lab: lab.to_string(),
            title: loaded.lab.title,
            estimate: estimate(&state.store, &lab).await?,
            exports,
            running,
            keep_days: state.settings.exports.keep_days,
        }
        .render()?,
    ))
}

#[derive(serde::Deserialize)]
struct StartForm {
    csrf: String,
    #[serde(default)]
    dumps: Option<String>,
    #[serde(default)]
    snapshots: Option<String>,
    #[serde(default)]
    logs: Option<String>,
    #[serde(default)]
    bom: Option<String>,
}

/// `POST /labs/{lab}/exports`: queued; back to the list, which follows it.
async fn start(
    State(state): State<AppState>,
    Master(s): Master,
    LabPath(lab): LabPath,
    Form(form): Form<StartForm>,
) -> Result<Redirect, WebError> {
    s.check_csrf(&form.csrf)?;
    let options = ExportOptions {
        dumps: form.dumps.is_some(),
        snapshots: form.snapshots.is_some(),
        logs: form.logs.is_some(),
        bom: form.bom.is_some(),
    };
    start_export(
        &state.settings,
        &state.store,
        &state.queue,
        &lab,
        options,
        &s.user,
    )
    .await
    .map_err(|e| match e {
        StartExportError::Store(e) => e.into(),
        StartExportError::NoSuchLab => WebError::NotFound,
        busy => WebError::Conflict(busy.to_string()),
    })?;
    Ok(Redirect::to(&format!("/labs/{lab}/exports")))
}

/// `GET /labs/{lab}/exports/{id}/download`: lab masters only; everybody
/// else, and an export that is not ready or not this lab's, gets 404.
async fn download(
    State(state): State<AppState>,
    MaybeSession(s): MaybeSession,
    LabPath(lab): LabPath,
    Path((_, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    let s = s
        .filter(|s| s.role == Role::Master)
        .ok_or(WebError::NotFound)?;
    let id: i64 = id.parse().map_err(|_| WebError::NotFound)?;
    let export = state
        .store
        .export(id)
        .await?
        .filter(|e| e.lab == lab)
        .ok_or(WebError::NotFound)?;
    let file =
        crate::app::exports::export_file(&state.settings, &export).ok_or(WebError::NotFound)?;
    tracing::info!(%lab, export = id, user = %s.user, "export downloaded");
    super::download::attachment(&file, &export.name, &headers, vec![])
        .await
        .map_err(|_| WebError::NotFound)
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/labs/{lab}/exports", get(page).post(start))
        .route("/labs/{lab}/exports/{id}/download", get(download))
}
