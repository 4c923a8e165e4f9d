//! Participants: the list, planning and applying a change (a job), each
//! participant's score, history and password, and the lab's credentials.

use super::auth::{Allowed, MasterWrite};
use super::model::{
    ChangeMode, Credential, CredentialPage, Event, EventPage, FinalScore, Forgotten, Job,
    PageQuery, ParticipantDetail, ParticipantItem, ParticipantPage, ParticipantsChange,
    PasswordReset, PlanOut, ScoreItem, TaskScore,
};
use super::{existing_lab, id_key, lab_id, links, page, Body, Problem, Who, P, Q};
use crate::app::participants as people;
use crate::control::{FinalState, TokenScope};
use crate::ident::{LabId, Username};
use crate::lab::Participants;
use crate::scoring::{LabBoard, ParticipantBoard};
use crate::web::session::Role;
use crate::web::{AppState, WebError};
use axum::extract::State;
use axum::response::Response;
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Largest participants list taken (some 50,000 rows).
const MAX_LIST: usize = 4 * 1024 * 1024;

pub fn final_score(f: &FinalState) -> FinalScore {
    FinalScore {
        points: f.points,
        max_points: f.max_points,
        deadline: f.deadline,
        taken_at: f.taken_at,
        late: f.late,
        tasks: f
            .tasks
            .iter()
            .map(|t| TaskScore {
                task: t.task.clone(),
                passed: t.passed,
                points: t.points,
                reason: t.reason.clone(),
                hint: None,
                first_passed: None,
            })
            .collect(),
    }
}

/// A participant's tasks on the board, named by the lab's task ids.
pub fn task_scores(board: Option<&LabBoard>, p: &ParticipantBoard) -> Option<Vec<TaskScore>> {
    let names = board.map(|b| b.tasks.as_slice()).unwrap_or_default();
    p.tasks.as_ref().map(|tasks| {
        tasks
            .iter()
            .enumerate()
            .map(|(i, t)| TaskScore {
                task: names.get(i).map_or_else(String::new, |n| n.id.clone()),
                passed: t.passed,
                points: t.points,
                reason: t.reason.clone(),
                hint: t.hint.clone(),
                first_passed: t.first_passed,
            })
            .collect()
    })
}

pub fn score_item(
    board: Option<&LabBoard>,
    p: &ParticipantBoard,
    finals: &[FinalState],
    lab: &LabId,
    base: &str,
) -> ScoreItem {
    ScoreItem {
        username: p.username.clone(),
        database: p.database.clone(),
        server: p.server.clone(),
        points: p.points(),
        tasks: task_scores(board, p),
        error: p.error.clone(),
        stale: p.server_down,
        final_score: finals
            .iter()
            .find(|f| f.database == p.database)
            .map(final_score),
        links: links(
            base,
            &[(
                "participant",
                format!("/api/v1/labs/{lab}/participants/{}", p.username),
            )],
        ),
    }
}

/// List a lab's participants.
///
/// The lab's participants.
///
/// Who: lab master, scope read.
#[utoipa::path(get, path = "/api/v1/labs/{lab}/participants", operation_id = "listParticipants", tag = "participants",
    params(("lab" = String, Path, description = "The lab's id"), PageQuery),
    responses((status = 200, body = ParticipantPage)))]
async fn list(
    State(state): State<AppState>,
    Who(caller, base): Who,
    P(lab): P<String>,
    Q(q): Q<PageQuery>,
) -> Result<Json<ParticipantPage>, Problem> {
    caller.staff(Role::Master, TokenScope::Read)?;
    let id = existing_lab(&state, &lab).await?;
    let mut all = state.store.participants(&id).await?;
    all.sort_by(|a, b| a.username.as_str().cmp(b.username.as_str()));
    let (rows, next_cursor) = page(all, |p| p.username.to_string(), &q);
    let items = rows
        .into_iter()
        .map(|p| ParticipantItem {
            links: links(
                &base,
                &[(
                    "self",
                    format!("/api/v1/labs/{id}/participants/{}", p.username),
                )],
            ),
            username: p.username.to_string(),
            name: p.name,
            email: p.email,
            group: p.group.map(|g| g.to_string()),
            database: p.database.to_string(),
        })
        .collect();
    Ok(Json(ParticipantPage { items, next_cursor }))
}

/// The complete list a change asks for.
async fn wanted(
    state: &AppState,
    lab: &LabId,
    c: &ParticipantsChange,
) -> Result<Participants, Problem> {
    let given = Participants::parse("csv", &c.csv)
        .map_err(|e| Problem::bad_request("csv", e.to_string()))?;
    if c.mode == ChangeMode::Replace {
        return Ok(given);
    }
    if given.0.is_empty() {
        return Err(Problem::bad_request("csv", "add at least one participant"));
    }
    let current = people::current_list(&state.store.participants(lab).await?);
    Ok(current.merged(given))
}

async fn plan_of(
    state: &AppState,
    lab: &LabId,
    wanted: Participants,
) -> Result<crate::provision::Plan, Problem> {
    people::plan(&state.settings, &state.store, lab, wanted)
        .await
        .map_err(|e| match e {
            crate::provision::ProvisionError::Input(m) => Problem::bad_request("csv", m),
            other => WebError::from(other).into(),
        })?
        .ok_or_else(Problem::not_found)
}

/// Plan a change of participants.
///
/// What applying the change would do (nothing is changed).
///
/// Who: lab master, scope write.
#[utoipa::path(post, path = "/api/v1/labs/{lab}/participants/plan", operation_id = "planParticipants", tag = "participants",
    params(("lab" = String, Path, description = "The lab's id")), request_body = ParticipantsChange,
    responses((status = 200, body = PlanOut)))]
async fn plan(
    State(state): State<AppState>,
    _: Allowed<MasterWrite>,
    P(lab): P<String>,
    Body(change): Body<ParticipantsChange, MAX_LIST>,
) -> Result<Json<PlanOut>, Problem> {
    let id = existing_lab(&state, &lab).await?;
    let list = wanted(&state, &id, &change).await?;
    let participants = list.0.len();
    let plan = plan_of(&state, &id, list).await?;
    Ok(Json(PlanOut {
        changes: plan.changes.iter().map(|c| c.to_string()).collect(),
        notices: plan.notices.clone(),
        participants,
    }))
}

/// Apply a change of participants.
///
/// Applies the change as a job (LDAP accounts, databases, grants); follow
/// it at `Location`.
///
/// Who: lab master, scope write.
#[utoipa::path(post, path = "/api/v1/labs/{lab}/participants/apply", operation_id = "applyParticipants", tag = "participants",
    params(("lab" = String, Path, description = "The lab's id")), request_body = ParticipantsChange,
    responses((status = 202, body = Job, headers(("Location" = String, description = "The job")))))]
async fn apply(
    State(state): State<AppState>,
    Allowed(caller, base, _): Allowed<MasterWrite>,
    P(lab): P<String>,
    Body(change): Body<ParticipantsChange, MAX_LIST>,
) -> Result<Response, Problem> {
    let id = existing_lab(&state, &lab).await?;
    let list = wanted(&state, &id, &change).await?;
    // Refused at once when it cannot be applied; the job plans again.
    plan_of(&state, &id, list.clone()).await?;
    let job = crate::app::labs::start_apply(&state.store, &state.queue, &id, &list, &caller.name())
        .await
        .map_err(|e| match e {
            crate::app::labs::StartApplyError::Store(e) => Problem::from(e),
            busy => WebError::Conflict(busy.to_string()).into(),
        })?;
    super::evidence::accepted_job(&state, job, &base).await
}

/// Read a participant.
///
/// A participant: contact, database, `psql` command, deadline and score.
///
/// Who: staff or lab master, scope read.
#[utoipa::path(get, path = "/api/v1/labs/{lab}/participants/{user}", operation_id = "getParticipant", tag = "participants",
    params(("lab" = String, Path, description = "The lab's id"), ("user" = String, Path, description = "The username")),
    responses((status = 200, body = ParticipantDetail)))]
async fn get_participant(
    State(state): State<AppState>,
    Who(caller, base): Who,
    P((lab, user)): P<(String, String)>,
) -> Result<Json<ParticipantDetail>, Problem> {
    caller.staff(Role::Staff, TokenScope::Read)?;
    let (loaded, p) = participant(&state, &lab, &user).await?;
    let id = &loaded.lab.id;
    let db = state
        .store
        .database_of(id, &p.username)
        .await?
        .ok_or_else(Problem::not_found)?;
    let psql = state
        .settings
        .server(&db.server)
        .map_or_else(String::new, |s| {
            crate::app::psql_command(s, &p.username, &p.database)
        });
    let (evidence, snapshot) = standing(&state, &loaded, &p).await?;
    let (board, me) = on_board(&snapshot, id, &p.username);
    let finals: Vec<FinalState> = evidence.final_state.clone().into_iter().collect();
    let score = me.map(|q| score_item(board, q, &finals, id, &base));
    let u = &p.username;
    Ok(Json(ParticipantDetail {
        links: links(
            &base,
            &[
                ("self", format!("/api/v1/labs/{id}/participants/{u}")),
                (
                    "history",
                    format!("/api/v1/labs/{id}/participants/{u}/history"),
                ),
                (
                    "snapshots",
                    format!("/api/v1/labs/{id}/participants/{u}/snapshots"),
                ),
                ("page", format!("/labs/{id}/people/{u}")),
            ],
        ),
        username: u.to_string(),
        name: p.name,
        email: p.email,
        group: p.group.map(|g| g.to_string()),
        database: p.database.to_string(),
        server: db.server.to_string(),
        psql,
        deadline: evidence.deadline,
        score,
    }))
}

/// A participant's deadline evidence, and the latest board.
pub async fn standing(
    state: &AppState,
    loaded: &crate::lab::LoadedLab,
    p: &crate::control::ParticipantRecord,
) -> Result<
    (
        crate::app::deadlines::Evidence,
        std::sync::Arc<crate::scoring::Snapshot>,
    ),
    Problem,
> {
    let evidence = crate::app::deadlines::evidence(
        &state.store,
        &loaded.lab,
        &p.username,
        p.database.as_str(),
    )
    .await?;
    Ok((evidence, state.board.get()))
}

/// A lab's board in a snapshot, and a participant's row on it.
pub fn on_board<'a>(
    snapshot: &'a crate::scoring::Snapshot,
    lab: &LabId,
    user: &Username,
) -> (Option<&'a LabBoard>, Option<&'a ParticipantBoard>) {
    let board = snapshot.labs.iter().find(|l| l.id == lab.as_str());
    let me = board.and_then(|b| b.participants.iter().find(|q| q.username == user.as_str()));
    (board, me)
}

/// The lab and one of its participants; 404 for either.
pub async fn participant(
    state: &AppState,
    lab: &str,
    user: &str,
) -> Result<(crate::lab::LoadedLab, crate::control::ParticipantRecord), Problem> {
    let id = lab_id(lab)?;
    let user = Username::parse(user).map_err(|_| Problem::not_found())?;
    let loaded = state.store.lab(&id).await?.ok_or_else(Problem::not_found)?;
    let p = state
        .store
        .participants(&id)
        .await?
        .into_iter()
        .find(|p| p.username == user)
        .ok_or_else(Problem::not_found)?;
    Ok((loaded, p))
}

/// Read a participant's history.
///
/// A participant's timeline, oldest first: each task passed or broken,
/// sessions, hand-ins.
///
/// Who: staff or lab master, scope read.
#[utoipa::path(get, path = "/api/v1/labs/{lab}/participants/{user}/history", operation_id = "getHistory", tag = "participants",
    params(("lab" = String, Path, description = "The lab's id"), ("user" = String, Path, description = "The username"), PageQuery),
    responses((status = 200, body = EventPage)))]
async fn history(
    State(state): State<AppState>,
    Who(caller, _): Who,
    P((lab, user)): P<(String, String)>,
    Q(q): Q<PageQuery>,
) -> Result<Json<EventPage>, Problem> {
    caller.staff(Role::Staff, TokenScope::Read)?;
    let (loaded, p) = participant(&state, &lab, &user).await?;
    let events = people::timeline(&state.store, &loaded.lab, &p.database, true).await?;
    let numbered: Vec<(usize, people::Event)> = events.into_iter().enumerate().collect();
    let (rows, next_cursor) = page(numbered, |(i, _)| id_key(*i as i64), &q);
    let items = rows
        .into_iter()
        .map(|(_, e)| Event {
            at: e.at,
            kind: e.kind.to_string(),
            what: e.what,
        })
        .collect();
    Ok(Json(EventPage { items, next_cursor }))
}

/// Reset a participant's password.
///
/// Gives the participant a new initial password (in LDAP at once; on the
/// credentials list until they change it).
///
/// Who: lab master, scope write.
#[utoipa::path(post, path = "/api/v1/labs/{lab}/participants/{user}/password", operation_id = "resetPassword", tag = "participants",
    params(("lab" = String, Path, description = "The lab's id"), ("user" = String, Path, description = "The username")),
    responses((status = 200, body = PasswordReset)))]
async fn reset_password(
    State(state): State<AppState>,
    Who(caller, _): Who,
    P((lab, user)): P<(String, String)>,
) -> Result<Json<PasswordReset>, Problem> {
    caller.staff(Role::Master, TokenScope::Write)?;
    let (loaded, p) = participant(&state, &lab, &user).await?;
    let id = &loaded.lab.id;
    if !people::reset_password(&state.settings, &state.store, id, &p.username)
        .await
        .map_err(WebError::from)?
    {
        return Err(Problem::not_found());
    }
    tracing::info!(lab = %id, user = %p.username, by = %caller.name(), "password reset through the API");
    let password = state
        .store
        .initial_password(&p.username)
        .await?
        .unwrap_or_default();
    let psql = credentials_of(&state, id)
        .await?
        .into_iter()
        .find(|c| c.username == p.username.as_str())
        .map(|c| c.psql)
        .unwrap_or_default();
    Ok(Json(PasswordReset {
        username: p.username.to_string(),
        password,
        psql,
    }))
}

async fn credentials_of(state: &AppState, lab: &LabId) -> Result<Vec<Credential>, Problem> {
    Ok(state
        .store
        .credentials(lab)
        .await?
        .into_iter()
        .map(|c| Credential {
            psql: state
                .settings
                .server(&c.server)
                .map_or_else(String::new, |s| {
                    crate::app::psql_command(s, &c.username, &c.database)
                }),
            username: c.username.to_string(),
            name: c.name,
            email: c.email,
            database: c.database.to_string(),
            server: c.server.to_string(),
            password: c.initial_password,
        })
        .collect())
}

/// List initial passwords.
///
/// Initial passwords while they are kept (until the participant changes
/// theirs, or they are forgotten). Needs a `write` token: a token for
/// dashboards does not see passwords.
///
/// Who: lab master, scope write.
#[utoipa::path(get, path = "/api/v1/labs/{lab}/credentials", operation_id = "listCredentials", tag = "participants",
    params(("lab" = String, Path, description = "The lab's id"), PageQuery),
    responses((status = 200, body = CredentialPage)))]
async fn credentials(
    State(state): State<AppState>,
    Who(caller, _): Who,
    P(lab): P<String>,
    Q(q): Q<PageQuery>,
) -> Result<Json<CredentialPage>, Problem> {
    caller.staff(Role::Master, TokenScope::Write)?;
    let id = existing_lab(&state, &lab).await?;
    let mut all = credentials_of(&state, &id).await?;
    all.sort_by(|a, b| a.username.cmp(&b.username));
    let (items, next_cursor) = page(all, |c| c.username.clone(), &q);
    Ok(Json(CredentialPage { items, next_cursor }))
}

/// Forget initial passwords.
///
/// Forgets the lab's initial passwords (once handed out); the participants'
/// passwords stay what they are.
///
/// Who: lab master, scope write.
#[utoipa::path(delete, path = "/api/v1/labs/{lab}/credentials", operation_id = "forgetCredentials", tag = "participants",
    params(("lab" = String, Path, description = "The lab's id")),
    responses((status = 200, body = Forgotten)))]
async fn forget_credentials(
    State(state): State<AppState>,
    Who(caller, _): Who,
    P(lab): P<String>,
) -> Result<Json<Forgotten>, Problem> {
    caller.staff(Role::Master, TokenScope::Write)?;
    let id = existing_lab(&state, &lab).await?;
    let n = state.store.forget_lab_passwords(&id).await?;
    tracing::info!(lab = %id, forgotten = n, by = %caller.name(), "initial passwords forgotten");
    Ok(Json(Forgotten {
        forgotten: n as usize,
    }))
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(plan))
        .routes(routes!(apply))
        .routes(routes!(get_participant))
        .routes(routes!(history))
        .routes(routes!(reset_password))
        .routes(routes!(credentials, forget_credentials))
}
