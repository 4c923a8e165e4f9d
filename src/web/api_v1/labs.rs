//! Labs: list, read, check, create or replace, and their scores and
//! analytics.

use super::auth::{Allowed, MasterAdmin};
use super::model::{
    Analytics, LabChecked, LabDetail, LabItem, LabPage, LabProblem, LabUpload, PageQuery, Scores,
    TaskItem, TaskStats,
};
use super::{existing_lab, lab_id, links, loaded_lab, page, Body, Problem, Who, P, Q};
use crate::app::lab_upload::{self, Staging};
use crate::control::TokenScope;
use crate::lab::LoadedLab;
use crate::web::session::Role;
use crate::web::{AppState, WebError};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Largest lab (YAML and files, as JSON) taken.
const MAX_LAB: usize = 64 * 1024 * 1024;

/// List the labs.
///
/// The labs.
///
/// Who: staff or lab master, scope read.
#[utoipa::path(get, path = "/api/v1/labs", operation_id = "listLabs", tag = "labs", params(PageQuery),
    responses((status = 200, body = LabPage)))]
async fn list(
    State(state): State<AppState>,
    Who(caller, base): Who,
    Q(q): Q<PageQuery>,
) -> Result<Json<LabPage>, Problem> {
    caller.staff(Role::Staff, TokenScope::Read)?;
    let mut labs = state.store.labs().await?;
    labs.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
    let (labs, next_cursor) = page(labs, |l| l.id.to_string(), &q);
    let items = labs
        .into_iter()
        .map(|l| LabItem {
            links: links(
                &base,
                &[
                    ("self", format!("/api/v1/labs/{}", l.id)),
                    ("scores", format!("/api/v1/labs/{}/scores", l.id)),
                    (
                        "participants",
                        format!("/api/v1/labs/{}/participants", l.id),
                    ),
                ],
            ),
            id: l.id.to_string(),
            title: l.title,
            participants: l.participants,
            databases: l.databases,
        })
        .collect();
    Ok(Json(LabPage { items, next_cursor }))
}

/// A lab as the API shows it; its YAML (with the checks' SQL and hints)
/// only to lab masters, as on the pages.
fn detail(loaded: &LoadedLab, base: &str, with_yaml: bool) -> LabDetail {
    let l = &loaded.lab;
    LabDetail {
        id: l.id.to_string(),
        title: l.title.clone(),
        deadline: l.deadline,
        after_deadline: l.after_deadline.name().to_string(),
        max_points: l.tasks.iter().map(|t| t.points).sum(),
        tasks: l
            .tasks
            .iter()
            .map(|t| TaskItem {
                id: t.id.clone(),
                title: t.title.clone(),
                points: t.points,
                description: t.description.clone(),
            })
            .collect(),
        yaml: with_yaml.then(|| loaded.text.clone()),
        links: links(
            base,
            &[
                ("self", format!("/api/v1/labs/{}", l.id)),
                ("scores", format!("/api/v1/labs/{}/scores", l.id)),
                (
                    "participants",
                    format!("/api/v1/labs/{}/participants", l.id),
                ),
                ("analytics", format!("/api/v1/labs/{}/analytics", l.id)),
                ("page", format!("/labs/{}", l.id)),
            ],
        ),
    }
}

/// Read a lab.
///
/// One lab, with its tasks and YAML.
///
/// Who: staff or lab master, scope read.
#[utoipa::path(get, path = "/api/v1/labs/{lab}", operation_id = "getLab", tag = "labs",
    params(("lab" = String, Path, description = "The lab's id")),
    responses((status = 200, body = LabDetail)))]
async fn get_lab(
    State(state): State<AppState>,
    Who(caller, base): Who,
    P(lab): P<String>,
) -> Result<Json<LabDetail>, Problem> {
    caller.staff(Role::Staff, TokenScope::Read)?;
    let loaded = loaded_lab(&state, &lab).await?;
    let master = matches!(caller, super::auth::Caller::Token(_, Role::Master));
    Ok(Json(detail(&loaded, &base, master)))
}

/// Stages an uploaded lab and validates it like the upload page does.
async fn staged(
    state: &AppState,
    up: &LabUpload,
    replace: bool,
) -> Result<(Staging, LoadedLab), Problem> {
    let staging = Staging::new(&state.settings)
        .map_err(|e| WebError::Internal(format!("staging folder: {e}")))?;
    for (name, text) in &up.files {
        let Some(clean) = lab_upload::file_name(name).filter(|c| c == name) else {
            return Err(Problem::bad_request(
                "files",
                format!(
                    "file name {name:?}: use letters, digits, '.', '-' and '_' (and not lab.yaml)"
                ),
            ));
        };
        std::fs::write(staging.path().join(clean), text)
            .map_err(|e| WebError::Internal(format!("writing {name}: {e}")))?;
    }
    match lab_upload::validate(
        &state.settings,
        &state.store,
        staging.path(),
        &up.yaml,
        replace,
    )
    .await?
    {
        Ok(lab) => Ok((staging, lab)),
        Err(problems) => Err(invalid(problems)),
    }
}

fn invalid(problems: Vec<lab_upload::LabProblem>) -> Problem {
    let first = problems.first().cloned();
    Problem {
        field: first.as_ref().map(|p| {
            if p.field.is_empty() {
                "yaml".to_string()
            } else {
                p.field.clone()
            }
        }),
        problems: Some(
            problems
                .into_iter()
                .map(|p| LabProblem {
                    line: p.line,
                    field: p.field,
                    message: p.message,
                })
                .collect(),
        ),
        ..Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_lab",
            first.map_or_else(|| "the lab is not valid".into(), |p| p.text()),
        )
    }
}

/// Check a lab without storing it.
///
/// Checks a lab (YAML and files) as storing it would, without storing:
/// every problem with its line, and whether the reference and starter
/// load.
///
/// Who: lab master, scope admin.
#[utoipa::path(post, path = "/api/v1/labs/check", operation_id = "checkLab", tag = "labs", request_body = LabUpload,
    responses((status = 200, body = LabChecked)))]
async fn check(
    State(state): State<AppState>,
    _: Allowed<MasterAdmin>,
    Body(up): Body<LabUpload, MAX_LAB>,
) -> Result<Json<LabChecked>, Problem> {
    let (_staging, lab) = staged(&state, &up, true).await?;
    let l = &lab.lab;
    Ok(Json(LabChecked {
        id: l.id.to_string(),
        title: l.title.clone(),
        tasks: l.tasks.len(),
        max_points: l.tasks.iter().map(|t| t.points).sum(),
        exists: state.store.lab(&l.id).await?.is_some(),
    }))
}

/// Create or replace a lab.
///
/// Creates the lab, or replaces the one of this id (its participants and
/// their databases stay; apply the participants to bring them to the new
/// version). The id in the YAML must be the one in the path.
///
/// Who: lab master, scope admin.
#[utoipa::path(put, path = "/api/v1/labs/{lab}", operation_id = "putLab", tag = "labs", request_body = LabUpload,
    params(("lab" = String, Path, description = "The lab's id")),
    responses((status = 201, body = LabDetail, description = "Created"), (status = 200, body = LabDetail, description = "Replaced")))]
async fn put_lab(
    State(state): State<AppState>,
    Allowed(caller, base, _): Allowed<MasterAdmin>,
    P(lab): P<String>,
    Body(up): Body<LabUpload, MAX_LAB>,
) -> Result<Response, Problem> {
    let id = lab_id(&lab)?;
    let (_staging, loaded) = staged(&state, &up, true).await?;
    if loaded.lab.id != id {
        return Err(Problem::bad_request(
            "yaml",
            format!(
                "the YAML is lab {}, the path lab {id}: they must be the same",
                loaded.lab.id
            ),
        ));
    }
    let existed = state.store.lab(&id).await?.is_some();
    lab_upload::store_lab(&state.store, &loaded, &caller.name())
        .await
        .map_err(|e| WebError::Internal(format!("{e:#}")))?;
    tracing::info!(lab = %id, by = %caller.name(), "lab stored through the API");
    let stored = state.store.lab(&id).await?.ok_or_else(Problem::not_found)?;
    let body = detail(&stored, &base, true);
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let location = body.links.get("self");
    Ok((status, [(header::LOCATION, location)], Json(body)).into_response())
}

/// Read the scores of a lab.
///
/// Each participant's points, tasks with reasons, and the final score once
/// taken. `ETag` changes with each scoring round: send `If-None-Match` to
/// get `304` when nothing changed.
///
/// Who: staff or lab master, scope read.
#[utoipa::path(get, path = "/api/v1/labs/{lab}/scores", operation_id = "getScores", tag = "participants",
    params(("lab" = String, Path, description = "The lab's id"), PageQuery,
        ("If-None-Match" = Option<String>, Header, description = "The ETag of an earlier answer")),
    responses((status = 200, body = Scores, headers(("ETag" = String))), (status = 304, description = "Not changed since the ETag")))]
async fn scores(
    State(state): State<AppState>,
    Who(caller, base): Who,
    headers: HeaderMap,
    P(lab): P<String>,
    Q(q): Q<PageQuery>,
) -> Result<Response, Problem> {
    caller.staff(Role::Staff, TokenScope::Read)?;
    let id = existing_lab(&state, &lab).await?;
    let snapshot = state.board.get();
    let finals = state.store.final_states(&id).await?;
    let tag = format!(
        "\"scores-{}-{}-{}-{}\"",
        snapshot
            .at
            .map_or(0, |t| t.timestamp_nanos_opt().unwrap_or(0)),
        finals.len(),
        q.cursor.as_deref().unwrap_or(""),
        q.limit.unwrap_or(0),
    );
    let tag = tag
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .collect::<String>();
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        == Some(tag.as_str())
    {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, tag)]).into_response());
    }
    let board = snapshot.labs.iter().find(|l| l.id == id.as_str());
    let mut people: Vec<_> = board.map(|b| b.participants.clone()).unwrap_or_default();
    people.sort_by(|a, b| a.username.cmp(&b.username));
    let (people, next_cursor) = page(people, |p| p.username.clone(), &q);
    let items = people
        .iter()
        .map(|p| super::people::score_item(board, p, &finals, &id, &base))
        .collect();
    let body = Scores {
        lab: id.to_string(),
        max_points: board.map_or(0, |b| b.max_points()),
        checked_at: snapshot.began,
        items,
        next_cursor,
    };
    Ok((
        [
            (header::ETAG, tag),
            (header::CACHE_CONTROL, "private, no-cache".to_string()),
        ],
        Json(body),
    )
        .into_response())
}

/// Read a lab's analytics.
///
/// Per task: how many pass, how fast, how many broke it again; who has no
/// progress; hand-ins.
///
/// Who: staff or lab master, scope read.
#[utoipa::path(get, path = "/api/v1/labs/{lab}/analytics", operation_id = "getAnalytics", tag = "labs",
    params(("lab" = String, Path, description = "The lab's id")),
    responses((status = 200, body = Analytics)))]
async fn analytics(
    State(state): State<AppState>,
    Who(caller, _): Who,
    P(lab): P<String>,
) -> Result<Json<Analytics>, Problem> {
    caller.staff(Role::Staff, TokenScope::Read)?;
    let loaded = loaded_lab(&state, &lab).await?;
    let s = crate::app::analytics::lab_stats(&state.store, &loaded.lab).await?;
    Ok(Json(Analytics {
        lab: s.lab.to_string(),
        databases: s.databases,
        tasks: s
            .tasks
            .into_iter()
            .map(|t| TaskStats {
                task: t.task,
                title: t.title,
                passing: t.passing,
                pass_rate: t.pass_rate,
                median_minutes_to_pass: t.median_minutes_to_pass,
                broke_again: t.broke_again,
            })
            .collect(),
        without_progress: s.without_progress,
        handins: s.handins,
        handins_failed: s.handins_failed,
    }))
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(check))
        .routes(routes!(get_lab, put_lab))
        .routes(routes!(scores))
        .routes(routes!(analytics))
}
