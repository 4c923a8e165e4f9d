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

pub fn router() -> Router<AppState> {
    Router::new().route("/api/labs/{lab}/generate", post(generate))
}
