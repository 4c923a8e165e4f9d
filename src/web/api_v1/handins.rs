//! Hand-ins (a student's `pg_dump`, sent with their lab password) and a
//! student's own progress; staff tokens read everyone's hand-ins.

use super::auth::Caller;
use super::model::{Binary, HandIn, PageQuery, Progress, RestoreIssue, Submission, SubmissionPage};
use super::people::{on_board, participant, standing, task_scores};
use super::{id_key, lab_id, links, page, Problem, Who, P, Q};
use crate::control::{SubmissionRecord, TokenScope};
use crate::web::session::Role;
use crate::web::{AppState, WebError};
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

fn submission(s: SubmissionRecord, base: &str) -> Submission {
    Submission {
        links: links(
            base,
            &[
                ("self", format!("/api/v1/submissions/{}", s.id)),
                ("job", format!("/api/v1/jobs/{}", s.job)),
            ],
        ),
        id: s.id,
        lab: s.lab.to_string(),
        database: s.database.to_string(),
        uploaded_by: s.uploaded_by.to_string(),
        uploaded_at: s.uploaded_at,
        size: s.size,
        format: s.format.name().to_string(),
        late: s.late,
        status: s.status.to_string(),
        attempts: s.attempts,
        started_at: s.started_at,
        finished_at: s.finished_at,
        errors: s
            .errors
            .into_iter()
            .map(|e| RestoreIssue {
                message: e.message,
                statement: e.statement,
                toc: e.toc,
                line: e.line,
            })
            .collect(),
        note: s.note,
    }
}

fn student_only(caller: &Caller) -> Result<&crate::ident::Username, Problem> {
    match caller {
        Caller::Student(u) => Ok(u),
        Caller::Token(..) => Err(Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this is for a participant with their lab password (Basic), not for tokens",
        )),
    }
}

/// Hand in a dump.
///
/// Hands in a `pg_dump` file (custom, tar or plain format) as the raw body;
/// it is restored into the participant's database as a job. Basic with the
/// participant's lab password; the lab's size limit applies.
///
/// Who: the participant (Basic).
#[utoipa::path(post, path = "/api/v1/labs/{lab}/submissions", operation_id = "handIn", tag = "hand-ins",
    params(("lab" = String, Path, description = "The lab's id")),
    request_body(content = Binary, content_type = "application/octet-stream", description = "The dump"),
    security(("student" = [])),
    responses((status = 202, body = HandIn, headers(("Location" = String, description = "The hand-in's status")))))]
async fn hand_in(
    State(state): State<AppState>,
    Who(caller, base): Who,
    P(lab): P<String>,
    request: Request,
) -> Result<Response, Problem> {
    let user = student_only(&caller)?.clone();
    let id = lab_id(&lab)?;
    let mut body = request
        .into_body()
        .into_data_stream()
        .map(|c| c.map_err(|e| e.to_string()));
    let a = crate::app::hand_in(
        &state.settings,
        &state.store,
        &state.queue,
        &id,
        &user,
        chrono::Utc::now(),
        &mut body,
    )
    .await
    .map_err(WebError::from)?;
    let out = HandIn {
        links: links(
            &base,
            &[
                ("self", format!("/api/v1/submissions/{}", a.id)),
                ("page", format!("/submissions/{}", a.id)),
            ],
        ),
        id: a.id,
        status: "queued".into(),
        format: a.format,
        size: a.size,
        late: a.late,
    };
    let location = out.links.get("self");
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(out),
    )
        .into_response())
}

/// Whether the caller may see `s`: staff tokens, or the people of its
/// database. Others get 404, as if it did not exist.
async fn may_see(state: &AppState, caller: &Caller, s: &SubmissionRecord) -> Result<bool, Problem> {
    match caller {
        Caller::Student(u) => Ok(state
            .store
            .database_of(&s.lab, u)
            .await?
            .is_some_and(|p| p.database == s.database)),
        Caller::Token(..) => caller.staff(Role::Staff, TokenScope::Read).map(|_| true),
    }
}

/// Read a hand-in.
///
/// A hand-in: its restore's status and, when it failed, the errors.
///
/// Who: staff or lab master, scope read; or a participant of its database (Basic).
#[utoipa::path(get, path = "/api/v1/submissions/{id}", operation_id = "getSubmission", tag = "hand-ins",
    params(("id" = i64, Path, description = "The hand-in's id")),
    security(("token" = []), ("student" = [])),
    responses((status = 200, body = Submission)))]
async fn status(
    State(state): State<AppState>,
    Who(caller, base): Who,
    P(id): P<String>,
) -> Result<Json<Submission>, Problem> {
    let id: i64 = id.parse().map_err(|_| Problem::not_found())?;
    let s = state
        .store
        .submission(id)
        .await?
        .ok_or_else(Problem::not_found)?;
    if !may_see(&state, &caller, &s).await? {
        return Err(Problem::not_found());
    }
    Ok(Json(submission(s, &base)))
}

/// List hand-ins.
///
/// The lab's hand-ins, newest first (a participant: their own database's).
///
/// Who: staff or lab master, scope read; or a participant (Basic): their own.
#[utoipa::path(get, path = "/api/v1/labs/{lab}/submissions", operation_id = "listSubmissions", tag = "hand-ins",
    params(("lab" = String, Path, description = "The lab's id"), PageQuery),
    security(("token" = []), ("student" = [])),
    responses((status = 200, body = SubmissionPage)))]
async fn list(
    State(state): State<AppState>,
    Who(caller, base): Who,
    P(lab): P<String>,
    Q(q): Q<PageQuery>,
) -> Result<Json<SubmissionPage>, Problem> {
    let id = lab_id(&lab)?;
    let all = match &caller {
        Caller::Student(u) => {
            let db = state
                .store
                .database_of(&id, u)
                .await?
                .ok_or_else(Problem::not_found)?;
            state.store.database_submissions(&id, &db.database).await?
        }
        Caller::Token(..) => {
            caller.staff(Role::Staff, TokenScope::Read)?;
            state.store.lab(&id).await?.ok_or_else(Problem::not_found)?;
            state.store.lab_submissions(&id).await?
        }
    };
    let mut all = all;
    // Newest first: the cursor counts down.
    all.sort_by_key(|s| std::cmp::Reverse(s.id));
    let (rows, next_cursor) = page(all, |s| id_key(i64::MAX - s.id), &q);
    let items = rows.into_iter().map(|s| submission(s, &base)).collect();
    Ok(Json(SubmissionPage { items, next_cursor }))
}

/// Read my own progress.
///
/// A participant's own progress: points, each task with the reason it
/// fails, the deadline and the final score (Basic).
///
/// Who: the participant (Basic).
#[utoipa::path(get, path = "/api/v1/me/labs/{lab}/progress", operation_id = "getMyProgress", tag = "me",
    params(("lab" = String, Path, description = "The lab's id")),
    security(("student" = [])),
    responses((status = 200, body = Progress)))]
async fn my_progress(
    State(state): State<AppState>,
    Who(caller, _): Who,
    P(lab): P<String>,
) -> Result<Json<Progress>, Problem> {
    let user = student_only(&caller)?;
    let (loaded, p) = participant(&state, &lab, user.as_str()).await?;
    let id = &loaded.lab.id;
    let (evidence, snapshot) = standing(&state, &loaded, &p).await?;
    let (board, me) = on_board(&snapshot, id, &p.username);
    Ok(Json(Progress {
        lab: id.to_string(),
        username: p.username.to_string(),
        database: p.database.to_string(),
        points: me.map_or(0, |m| m.points()),
        max_points: loaded.lab.tasks.iter().map(|t| t.points).sum(),
        tasks: me.and_then(|m| task_scores(board, m)).unwrap_or_default(),
        checked_at: snapshot.began,
        deadline: evidence.deadline,
        final_score: evidence
            .final_state
            .as_ref()
            .map(super::people::final_score),
    }))
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(hand_in, list))
        .routes(routes!(status))
        .routes(routes!(my_progress))
}
