//! The JSON API, for scripts: bearer-token authentication (no cookies, so no
//! CSRF), one route per action.

use super::error::ApiError;
use super::{AppState, WebError};
use crate::ident::LabId;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};

/// Compares the bearer token in constant time.
fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), WebError> {
    let expected = state.settings.api_token.expose();
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !expected.is_empty() && super::session::same(given, expected) {
        Ok(())
    } else {
        Err(WebError::Unauthorized)
    }
}

/// `POST /api/labs/{lab}/generate`: writes the lab's monitoring files into
/// `<data_dir>/generated` and lists them.
async fn generate(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(lab): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    authorize(&state, &headers)?;
    let lab = LabId::parse(&lab).map_err(|e| WebError::BadRequest(e.to_string()))?;
    let settings = &state.settings;
    let opts = crate::app::default_generate_options(settings);
    let written = crate::app::write_generated(settings, &state.store, &lab, None, &opts).await?;
    let names: Vec<String> = written
        .files
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    Ok(Json(
        serde_json::json!({ "lab": lab, "folder": written.folder, "files": names }),
    ))
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ExportRequest {
    /// Optional parts, comma-separated: dumps, snapshots, logs, bom.
    #[serde(default)]
    with: String,
}

fn export_json(e: &crate::control::ExportRecord) -> serde_json::Value {
    serde_json::json!({
        "id": e.id,
        "lab": e.lab,
        "status": e.state(),
        "progress": { "done": e.done, "total": e.total },
        "options": e.options,
        "estimate": e.estimate,
        "size": e.size,
        "error": e.error,
        "name": e.name,
        "created_at": e.created_at,
        "expires_at": e.expires_at,
        "status_url": format!("/api/exports/{}", e.id),
        "download_url": e.ready().then(|| format!("/api/exports/{}/download", e.id)),
    })
}

/// `POST /api/labs/{lab}/exports` `{"with": "dumps,logs"}`: queues an
/// export (202); its status at `status_url`.
async fn start_export(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(lab): Path<String>,
    body: Option<Json<ExportRequest>>,
) -> Result<(axum::http::StatusCode, Json<serde_json::Value>), ApiError> {
    authorize(&state, &headers)?;
    let lab = LabId::parse(&lab).map_err(|_| WebError::NotFound)?;
    let with = body.map(|b| b.0).unwrap_or_default().with;
    let options = crate::export::ExportOptions::parse(&with).map_err(WebError::BadRequest)?;
    let e = crate::app::exports::start_export(
        &state.settings,
        &state.store,
        &state.queue,
        &lab,
        options,
        "api",
    )
    .await
    .map_err(|e| match e {
        crate::app::exports::StartExportError::Store(e) => WebError::from(e),
        crate::app::exports::StartExportError::NoSuchLab => WebError::NotFound,
        busy => WebError::Conflict(busy.to_string()),
    })?;
    Ok((axum::http::StatusCode::ACCEPTED, Json(export_json(&e))))
}

async fn export_of(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
) -> Result<crate::control::ExportRecord, WebError> {
    authorize(state, headers)?;
    let id: i64 = id.parse().map_err(|_| WebError::NotFound)?;
    state.store.export(id).await?.ok_or(WebError::NotFound)
}

/// `GET /api/exports/{id}`.
async fn export_status(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(export_json(&export_of(&state, &headers, &id).await?)))
}

/// `GET /api/exports/{id}/download`: the archive (ranges supported).
async fn export_download(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<axum::response::Response, ApiError> {
    let e = export_of(&state, &headers, &id).await?;
    let file = crate::app::exports::export_file(&state.settings, &e).ok_or(WebError::NotFound)?;
    Ok(
        super::download::attachment(&file, &e.name, &headers, vec![])
            .await
            .map_err(|_| WebError::NotFound)?,
    )
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/labs/{lab}/generate", post(generate))
        .route("/api/labs/{lab}/exports", post(start_export))
        .route("/api/exports/{id}", axum::routing::get(export_status))
        .route(
            "/api/exports/{id}/download",
            axum::routing::get(export_download),
        )
}
