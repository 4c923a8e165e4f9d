//! A participant's evidence for staff: the snapshots (a lab master may
//! take one now, download one, restore one into a read-only copy or into
//! the participant's own database), the final state, and the deadline with
//! its extension form.

use super::labs::{LabPath, LabUserPath};
use super::login::CsrfOnly;
use super::participant::back_to_page;
use super::session::Master;
use super::{AppState, WebError};
use crate::app::snapshots::{start_restore, start_snapshot, RestoreTarget, SnapshotRequestError};
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};

pub(super) fn refused(e: SnapshotRequestError) -> WebError {
    match e {
        SnapshotRequestError::Store(e) => e.into(),
        SnapshotRequestError::NoSuchSnapshot => WebError::NotFound,
        other => WebError::Conflict(other.to_string()),
    }
}

async fn database_of(
    state: &AppState,
    lab: &crate::ident::LabId,
    user: &crate::ident::Username,
) -> Result<String, WebError> {
    Ok(state
        .store
        .database_of(lab, user)
        .await?
        .ok_or(WebError::NotFound)?
        .database
        .to_string())
}

/// `POST /labs/{lab}/people/{user}/snapshots`: a snapshot now.
async fn take_now(
    State(state): State<AppState>,
    Master(s): Master,
    LabUserPath(lab, user): LabUserPath,
    Form(form): Form<CsrfOnly>,
) -> Result<Redirect, WebError> {
    s.check_csrf(&form.csrf)?;
    let db = database_of(&state, &lab, &user).await?;
    let id = start_snapshot(&state.store, &state.queue, &lab, &db, &s.user)
        .await
        .map_err(refused)?;
    Ok(Redirect::to(&format!("/jobs/{id}")))
}

#[derive(serde::Deserialize)]
struct RestoreForm {
    csrf: String,
    target: RestoreTarget,
    /// Restoring into the participant's own database must be confirmed.
    #[serde(default)]
    confirm: Option<String>,
}

/// The snapshot of the path, if it belongs to the lab of the path.
async fn snapshot_of(
    state: &AppState,
    lab: &crate::ident::LabId,
    id: &str,
) -> Result<crate::control::SnapshotRecord, WebError> {
    let id: i64 = id.parse().map_err(|_| WebError::NotFound)?;
    state
        .store
        .snapshot(id)
        .await?
        .filter(|s| &s.lab == lab)
        .ok_or(WebError::NotFound)
}

/// `POST /labs/{lab}/snapshots/{id}/restore`.
async fn restore(
    State(state): State<AppState>,
    Master(s): Master,
    LabPath(lab): LabPath,
    Path((_, id)): Path<(String, String)>,
    Form(form): Form<RestoreForm>,
) -> Result<Redirect, WebError> {
    s.check_csrf(&form.csrf)?;
    let snap = snapshot_of(&state, &lab, &id).await?;
    if form.target == RestoreTarget::Own && form.confirm.as_deref() != Some("yes") {
        return Err(WebError::BadRequest(format!(
            "Restoring snapshot #{} replaces what is in {} now (it is kept as a snapshot first): tick the box to confirm.",
            snap.n, snap.database
        )));
    }
    let job = start_restore(
        &state.store,
        &state.queue,
        &lab,
        snap.id,
        form.target,
        &s.user,
    )
    .await
    .map_err(refused)?;
    Ok(Redirect::to(&format!("/jobs/{job}")))
}

/// `GET /labs/{lab}/snapshots/{id}/download` (lab master): the dump file,
/// never a public static file.
async fn download(
    State(state): State<AppState>,
    Master(s): Master,
    LabPath(lab): LabPath,
    Path((_, id)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
) -> Result<Response, WebError> {
    let snap = snapshot_of(&state, &lab, &id).await?;
    snapshot_download(&state, &snap, &headers, &s.user).await
}

/// A snapshot's dump as an attachment (ranges, its SHA-256 in a header),
/// for the page and the API; `by` is logged.
pub(super) async fn snapshot_download(
    state: &AppState,
    snap: &crate::control::SnapshotRecord,
    headers: &axum::http::HeaderMap,
    by: &str,
) -> Result<Response, WebError> {
    let path = crate::app::snapshots::snapshot_file(&state.settings, snap);
    tracing::info!(lab = %snap.lab, snapshot = snap.id, by, "snapshot downloaded");
    let name = format!("{}-snapshot-{}.dump", snap.database, snap.n);
    let checksum = (
        header::HeaderName::from_static("x-checksum-sha256"),
        snap.sha256.clone(),
    );
    super::download::attachment(&path, &name, headers, vec![checksum])
        .await
        .map_err(|_| {
            WebError::Conflict("The snapshot's file is gone from the data directory.".into())
        })
}

#[derive(serde::Deserialize)]
struct ExtendForm {
    csrf: String,
    until: String,
}

/// `POST /labs/{lab}/people/{user}/extend`: the participant's own deadline.
async fn extend(
    State(state): State<AppState>,
    Master(s): Master,
    LabUserPath(lab, user): LabUserPath,
    Form(form): Form<ExtendForm>,
) -> Result<Redirect, WebError> {
    s.check_csrf(&form.csrf)?;
    let spec = super::labs::load_lab(&state, &lab).await?.lab;
    let until = crate::app::deadlines::parse_until(&form.until, spec.deadline)
        .map_err(WebError::BadRequest)?;
    crate::app::deadlines::extend(&state.settings, &state.store, &lab, &user, until, &s.user)
        .await
        .map_err(|e| match e {
            crate::app::deadlines::ExtendError::Store(e) => e.into(),
            other => WebError::BadRequest(other.to_string()),
        })?;
    Ok(Redirect::to(&format!("/labs/{lab}/people/{user}#evidence")))
}

async fn back_to_lab(LabPath(lab): LabPath) -> Redirect {
    Redirect::to(&format!("/labs/{lab}"))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/labs/{lab}/people/{user}/snapshots",
            post(take_now).get(back_to_page),
        )
        .route(
            "/labs/{lab}/people/{user}/extend",
            post(extend).get(back_to_page),
        )
        .route(
            "/labs/{lab}/snapshots/{id}/restore",
            post(restore).get(back_to_lab),
        )
        .route("/labs/{lab}/snapshots/{id}/download", get(download))
}
