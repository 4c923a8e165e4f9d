//! Jobs, exports, snapshots, deadline extensions and database resets.

use super::auth::{Allowed, MasterWrite};
use super::model::{
    Binary, Export, ExportPage, ExportRequest, Extended, ExtensionRequest, Job, PageQuery,
    RestoreRequest, RestoreTargetName, Snapshot, SnapshotPage,
};
use super::people::participant;
use super::{existing_lab, id_key, lab_id, links, page, Body, Problem, Who, P, Q};
use crate::app::snapshots::{RestoreTarget, SnapshotRequestError};
use crate::control::{ExportRecord, SnapshotRecord, TokenScope};
use crate::web::session::Role;
use crate::web::{AppState, WebError};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Small JSON bodies (options of an action).
const SMALL: usize = 16 * 1024;

async fn job_of(state: &AppState, id: i64, base: &str) -> Result<Job, Problem> {
    let j = state.store.job(id).await?.ok_or_else(Problem::not_found)?;
    let log = state.store.job_log(id).await?;
    Ok(Job {
        links: links(
            base,
            &[
                ("self", format!("/api/v1/jobs/{}", j.id)),
                ("page", format!("/jobs/{}", j.id)),
            ],
        ),
        id: j.id,
        kind: j.kind.to_string(),
        lab: j.lab.to_string(),
        title: j.title,
        started_by: j.started_by,
        status: j.status.to_string(),
        attempts: j.attempts,
        max_attempts: j.max_attempts,
        created_at: j.created_at,
        started_at: j.started_at,
        finished_at: j.finished_at,
        done: j.done,
        total: j.total,
        summary: j.summary,
        error: j.error,
        log,
    })
}

/// `202 Accepted` with the job queued, `Location` its address.
pub async fn accepted_job(state: &AppState, id: i64, base: &str) -> Result<Response, Problem> {
    let job = job_of(state, id, base).await?;
    let location = job.links.get("self");
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(job),
    )
        .into_response())
}

/// Read a job.
///
/// A background job (apply, restore, reset, snapshot, export): state,
/// progress and the latest log lines.
///
/// Who: lab master, scope read.
#[utoipa::path(get, path = "/api/v1/jobs/{id}", operation_id = "getJob", tag = "jobs",
    params(("id" = i64, Path, description = "The job's id")),
    responses((status = 200, body = Job)))]
async fn job(
    State(state): State<AppState>,
    Who(caller, base): Who,
    P(id): P<String>,
) -> Result<Json<Job>, Problem> {
    caller.staff(Role::Master, TokenScope::Read)?;
    let id: i64 = id.parse().map_err(|_| Problem::not_found())?;
    Ok(Json(job_of(&state, id, &base).await?))
}

fn export(e: ExportRecord, base: &str) -> Export {
    let mut pairs = vec![("self", format!("/api/v1/exports/{}", e.id))];
    if e.ready() {
        pairs.push(("download", format!("/api/v1/exports/{}/download", e.id)));
    }
    Export {
        links: links(base, &pairs),
        status: e.state().to_string(),
        id: e.id,
        lab: e.lab.to_string(),
        done: e.done,
        total: e.total,
        options: e.options,
        estimate: e.estimate,
        size: e.size,
        error: e.error,
        name: e.name,
        created_at: e.created_at,
        expires_at: e.expires_at,
    }
}

/// Start an export.
///
/// Starts an export of the lab's class data (a zip); follow it at
/// `Location`, download it from its `download` link when ready.
///
/// Who: lab master, scope write.
#[utoipa::path(post, path = "/api/v1/labs/{lab}/exports", operation_id = "startExport", tag = "evidence",
    params(("lab" = String, Path, description = "The lab's id")), request_body = ExportRequest,
    responses((status = 202, body = Export, headers(("Location" = String, description = "The export")))))]
async fn start_export(
    State(state): State<AppState>,
    Allowed(caller, base, _): Allowed<MasterWrite>,
    P(lab): P<String>,
    Body(req): Body<ExportRequest, SMALL>,
) -> Result<Response, Problem> {
    let id = lab_id(&lab)?;
    let options = crate::export::ExportOptions::parse(&req.with)
        .map_err(|m| Problem::bad_request("with", m))?;
    use crate::app::exports::StartExportError as E;
    let e = crate::app::exports::start_export(
        &state.settings,
        &state.store,
        &state.queue,
        &id,
        options,
        &caller.name(),
    )
    .await
    .map_err(|e| match e {
        E::Store(e) => Problem::from(e),
        E::NoSuchLab => Problem::not_found(),
        busy => WebError::Conflict(busy.to_string()).into(),
    })?;
    let out = export(e, &base);
    let location = out.links.get("self");
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(out),
    )
        .into_response())
}

/// List a lab's exports.
///
/// The lab's exports, newest first.
///
/// Who: lab master, scope read.
#[utoipa::path(get, path = "/api/v1/labs/{lab}/exports", operation_id = "listExports", tag = "evidence",
    params(("lab" = String, Path, description = "The lab's id"), PageQuery),
    responses((status = 200, body = ExportPage)))]
async fn exports(
    State(state): State<AppState>,
    Who(caller, base): Who,
    P(lab): P<String>,
    Q(q): Q<PageQuery>,
) -> Result<Json<ExportPage>, Problem> {
    caller.staff(Role::Master, TokenScope::Read)?;
    let id = existing_lab(&state, &lab).await?;
    let mut all = state.store.lab_exports(&id).await?;
    all.sort_by_key(|e| std::cmp::Reverse(e.id));
    let (rows, next_cursor) = page(all, |e| id_key(i64::MAX - e.id), &q);
    Ok(Json(ExportPage {
        items: rows.into_iter().map(|e| export(e, &base)).collect(),
        next_cursor,
    }))
}

async fn export_of(state: &AppState, id: &str) -> Result<ExportRecord, Problem> {
    let id: i64 = id.parse().map_err(|_| Problem::not_found())?;
    state.store.export(id).await?.ok_or_else(Problem::not_found)
}

/// Read an export.
///
/// An export: progress, size, and its download link when ready.
///
/// Who: lab master, scope read.
#[utoipa::path(get, path = "/api/v1/exports/{id}", operation_id = "getExport", tag = "evidence",
    params(("id" = i64, Path, description = "The export's id")),
    responses((status = 200, body = Export)))]
async fn export_status(
    State(state): State<AppState>,
    Who(caller, base): Who,
    P(id): P<String>,
) -> Result<Json<Export>, Problem> {
    caller.staff(Role::Master, TokenScope::Read)?;
    Ok(Json(export(export_of(&state, &id).await?, &base)))
}

/// Download an export.
///
/// The export's zip (ranges supported).
///
/// Who: lab master, scope read.
#[utoipa::path(get, path = "/api/v1/exports/{id}/download", operation_id = "downloadExport", tag = "evidence",
    params(("id" = i64, Path, description = "The export's id")),
    responses((status = 200, description = "The archive", content_type = "application/zip", body = Binary),
        (status = 206, description = "A range of the archive", content_type = "application/zip", body = Binary)))]
async fn export_download(
    State(state): State<AppState>,
    Who(caller, _): Who,
    headers: HeaderMap,
    P(id): P<String>,
) -> Result<Response, Problem> {
    caller.staff(Role::Master, TokenScope::Read)?;
    let e = export_of(&state, &id).await?;
    let file =
        crate::app::exports::export_file(&state.settings, &e).ok_or_else(Problem::not_found)?;
    crate::web::download::attachment(&file, &e.name, &headers, vec![])
        .await
        .map_err(|_| Problem::not_found())
}

fn snapshot(s: SnapshotRecord, base: &str) -> Snapshot {
    Snapshot {
        links: links(
            base,
            &[
                ("download", format!("/api/v1/snapshots/{}/download", s.id)),
                ("restore", format!("/api/v1/snapshots/{}/restore", s.id)),
            ],
        ),
        id: s.id,
        database: s.database,
        n: s.n,
        kind: s.kind.to_string(),
        taken_at: s.taken_at,
        size: s.size,
        sha256: s.sha256,
    }
}

fn refused(e: SnapshotRequestError) -> Problem {
    crate::web::evidence::refused(e).into()
}

/// List a participant's snapshots.
///
/// The participant's database's snapshots, newest first.
///
/// Who: staff or lab master, scope read.
#[utoipa::path(get, path = "/api/v1/labs/{lab}/participants/{user}/snapshots", operation_id = "listSnapshots", tag = "evidence",
    params(("lab" = String, Path, description = "The lab's id"), ("user" = String, Path, description = "The username"), PageQuery),
    responses((status = 200, body = SnapshotPage)))]
async fn snapshots(
    State(state): State<AppState>,
    Who(caller, base): Who,
    P((lab, user)): P<(String, String)>,
    Q(q): Q<PageQuery>,
) -> Result<Json<SnapshotPage>, Problem> {
    caller.staff(Role::Staff, TokenScope::Read)?;
    let (loaded, p) = participant(&state, &lab, &user).await?;
    let mut all = state
        .store
        .snapshots(&loaded.lab.id, p.database.as_str())
        .await?;
    all.sort_by_key(|s| std::cmp::Reverse(s.id));
    let (rows, next_cursor) = page(all, |s| id_key(i64::MAX - s.id), &q);
    Ok(Json(SnapshotPage {
        items: rows.into_iter().map(|s| snapshot(s, &base)).collect(),
        next_cursor,
    }))
}

/// Take a snapshot now.
///
/// Takes a snapshot of the participant's database now (a job).
///
/// Who: lab master, scope write.
#[utoipa::path(post, path = "/api/v1/labs/{lab}/participants/{user}/snapshots", operation_id = "takeSnapshot", tag = "evidence",
    params(("lab" = String, Path, description = "The lab's id"), ("user" = String, Path, description = "The username")),
    responses((status = 202, body = Job, headers(("Location" = String, description = "The job")))))]
async fn take_snapshot(
    State(state): State<AppState>,
    Who(caller, base): Who,
    P((lab, user)): P<(String, String)>,
) -> Result<Response, Problem> {
    caller.staff(Role::Master, TokenScope::Write)?;
    let (loaded, p) = participant(&state, &lab, &user).await?;
    let job = crate::app::snapshots::start_snapshot(
        &state.store,
        &state.queue,
        &loaded.lab.id,
        p.database.as_str(),
        &caller.name(),
    )
    .await
    .map_err(refused)?;
    accepted_job(&state, job, &base).await
}

async fn snapshot_by_id(state: &AppState, id: &str) -> Result<SnapshotRecord, Problem> {
    let id: i64 = id.parse().map_err(|_| Problem::not_found())?;
    state
        .store
        .snapshot(id)
        .await?
        .ok_or_else(Problem::not_found)
}

/// Download a snapshot.
///
/// A snapshot's dump (`pg_restore` custom format; ranges supported;
/// `X-Checksum-Sha256`).
///
/// Who: lab master, scope read.
#[utoipa::path(get, path = "/api/v1/snapshots/{id}/download", operation_id = "downloadSnapshot", tag = "evidence",
    params(("id" = i64, Path, description = "The snapshot's id")),
    responses((status = 200, description = "The dump", content_type = "application/octet-stream", body = Binary),
        (status = 206, description = "A range of the dump", content_type = "application/octet-stream", body = Binary)))]
async fn snapshot_download(
    State(state): State<AppState>,
    Who(caller, _): Who,
    headers: HeaderMap,
    P(id): P<String>,
) -> Result<Response, Problem> {
    caller.staff(Role::Master, TokenScope::Read)?;
    let snap = snapshot_by_id(&state, &id).await?;
    Ok(crate::web::evidence::snapshot_download(&state, &snap, &headers, &caller.name()).await?)
}

/// Restore a snapshot.
///
/// Restores a snapshot into a readable copy or into the participant's own
/// database (a job).
///
/// Who: lab master, scope write.
#[utoipa::path(post, path = "/api/v1/snapshots/{id}/restore", operation_id = "restoreSnapshot", tag = "evidence",
    params(("id" = i64, Path, description = "The snapshot's id")), request_body = RestoreRequest,
    responses((status = 202, body = Job, headers(("Location" = String, description = "The job")))))]
async fn restore_snapshot(
    State(state): State<AppState>,
    Allowed(caller, base, _): Allowed<MasterWrite>,
    P(id): P<String>,
    Body(req): Body<RestoreRequest, SMALL>,
) -> Result<Response, Problem> {
    let snap = snapshot_by_id(&state, &id).await?;
    let target = match req.target {
        RestoreTargetName::Copy => RestoreTarget::Copy,
        RestoreTargetName::Own => RestoreTarget::Own,
    };
    let job = crate::app::snapshots::start_restore(
        &state.store,
        &state.queue,
        &snap.lab,
        snap.id,
        target,
        &caller.name(),
    )
    .await
    .map_err(refused)?;
    accepted_job(&state, job, &base).await
}

/// Extend a participant's deadline.
///
/// Moves the participant's deadline; a final state already taken is set
/// aside and the database opened again.
///
/// Who: lab master, scope write.
#[utoipa::path(post, path = "/api/v1/labs/{lab}/participants/{user}/extension", operation_id = "extendDeadline", tag = "evidence",
    params(("lab" = String, Path, description = "The lab's id"), ("user" = String, Path, description = "The username")),
    request_body = ExtensionRequest,
    responses((status = 200, body = Extended)))]
async fn extend(
    State(state): State<AppState>,
    Allowed(caller, _, _): Allowed<MasterWrite>,
    P((lab, user)): P<(String, String)>,
    Body(req): Body<ExtensionRequest, SMALL>,
) -> Result<Json<Extended>, Problem> {
    let (loaded, p) = participant(&state, &lab, &user).await?;
    let until = crate::app::deadlines::parse_until(&req.until, loaded.lab.deadline)
        .map_err(|m| Problem::bad_request("until", m))?;
    use crate::app::deadlines::ExtendError as E;
    let done = crate::app::deadlines::extend(
        &state.settings,
        &state.store,
        &loaded.lab.id,
        &p.username,
        until,
        &caller.name(),
    )
    .await
    .map_err(|e| match e {
        E::Store(e) => Problem::from(e),
        E::Reopen(e) => WebError::Internal(e.to_string()).into(),
        other => Problem::bad_request("until", other.to_string()),
    })?;
    Ok(Json(Extended {
        database: done.database,
        until,
        reopened: done.reopened,
    }))
}

/// Reset a participant's database.
///
/// Puts the participant's database back to the lab's starter state (its
/// current content dumped first), as a job.
///
/// Who: lab master, scope write.
#[utoipa::path(post, path = "/api/v1/labs/{lab}/participants/{user}/reset", operation_id = "resetDatabase", tag = "participants",
    params(("lab" = String, Path, description = "The lab's id"), ("user" = String, Path, description = "The username")),
    responses((status = 202, body = Job, headers(("Location" = String, description = "The job")))))]
async fn reset_database(
    State(state): State<AppState>,
    Who(caller, base): Who,
    P((lab, user)): P<(String, String)>,
) -> Result<Response, Problem> {
    caller.staff(Role::Master, TokenScope::Write)?;
    let (loaded, p) = participant(&state, &lab, &user).await?;
    use crate::app::participants::{start_reset, ResetBy, StartResetError};
    let job = start_reset(
        &state.store,
        &state.queue,
        &loaded.lab.id,
        &p.database,
        &caller.name(),
        ResetBy::LabMaster,
    )
    .await
    .map_err(|e| match e {
        StartResetError::Store(e) => Problem::from(e),
        busy => WebError::Conflict(busy.to_string()).into(),
    })?;
    accepted_job(&state, job, &base).await
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(job))
        .routes(routes!(start_export, exports))
        .routes(routes!(export_status))
        .routes(routes!(export_download))
        .routes(routes!(snapshots, take_snapshot))
        .routes(routes!(snapshot_download))
        .routes(routes!(restore_snapshot))
        .routes(routes!(extend))
        .routes(routes!(reset_database))
}
