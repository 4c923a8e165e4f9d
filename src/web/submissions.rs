//! Dump submissions on the web: the upload from the student page (and the
//! JSON API with HTTP Basic authentication, for `curl`), a page per
//! submission with its errors, and the lab master's job log.

use super::highlight::{self, Piece};
use super::session::{Role, Session, Student};
use super::{AppState, Nav, WebError};
use crate::app::{self, Accepted, UploadError};
use crate::control::{JobStatus, SubmissionRecord};
use crate::ident::{GroupName, LabId, PgName, Username};
use crate::web::labs::LabPath;
use crate::web::session::Staff;
use askama::Template;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Multipart, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use std::collections::BTreeMap;
use std::net::SocketAddr;

impl UploadError {
    pub fn status(&self) -> StatusCode {
        match self {
            UploadError::Closed(_) => StatusCode::NOT_FOUND,
            UploadError::NotParticipant(_) | UploadError::Late(_) => StatusCode::FORBIDDEN,
            UploadError::AlreadyHandedIn => StatusCode::CONFLICT,
            UploadError::Busy(_) => StatusCode::TOO_MANY_REQUESTS,
            UploadError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            UploadError::Interrupted(_) => StatusCode::BAD_REQUEST,
            UploadError::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            UploadError::Io(_) | UploadError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// Longest small form field (the CSRF token) read.
const SMALL_FIELD: usize = 1024;

/// A small field's text, refused past `SMALL_FIELD` bytes (never buffered
/// whole: it could be as large as the upload).
async fn small_field(mut field: axum::extract::multipart::Field<'_>) -> Result<String, WebError> {
    let mut out = Vec::new();
    while let Some(chunk) = field
        .chunk()
        .await
        .map_err(|e| UploadError::Interrupted(e.body_text()))?
    {
        if out.len() + chunk.len() > SMALL_FIELD {
            return Err(WebError::BadRequest(format!(
                "the form field {:?} is longer than {SMALL_FIELD} bytes",
                field.name().unwrap_or("")
            )));
        }
        out.extend_from_slice(&chunk);
    }
    String::from_utf8(out).map_err(|_| WebError::BadRequest("a form field is not text".into()))
}

/// A multipart upload: the CSRF token (for the form) and the `file` field,
/// streamed into `accept`.
async fn accept_multipart(
    state: &AppState,
    lab: &LabId,
    user: &Username,
    mut form: Multipart,
    csrf: Option<&Session>,
) -> Result<Accepted, WebError> {
    let now = chrono::Utc::now();
    let mut token_ok = csrf.is_none();
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| UploadError::Interrupted(e.body_text()))?
    {
        match field.name() {
            Some("csrf") => {
                if let Some(s) = csrf {
                    s.check_csrf(&small_field(field).await?)?;
                    token_ok = true;
                }
            }
            Some("file") if token_ok => {
                let mut body = field.map(|c| c.map_err(|e| e.body_text()));
                return Ok(app::hand_in(
                    &state.settings,
                    &state.store,
                    &state.queue,
                    lab,
                    user,
                    now,
                    &mut body,
                )
                .await?);
            }
            Some("file") => return Err(WebError::Csrf),
            _ => {}
        }
    }
    Err(WebError::BadRequest(
        "no file in the form (field \"file\")".into(),
    ))
}

async fn upload_form(
    State(state): State<AppState>,
    student: Student,
    LabPath(lab): LabPath,
    form: Multipart,
) -> Result<Response, WebError> {
    let s = &student.session;
    match accept_multipart(&state, &lab, &student.user, form, Some(s)).await {
        Ok(a) => Ok(Redirect::to(&format!("/submissions/{}", a.id)).into_response()),
        Err(WebError::Upload(e)) if e.status().is_client_error() => {
            let feedback = super::student::Feedback::Upload {
                lab,
                error: e.to_string(),
            };
            let mut r = super::student::render(&state, &student, feedback)
                .await?
                .into_response();
            *r.status_mut() = e.status();
            Ok(r)
        }
        Err(e) => Err(e),
    }
}

/// HTTP Basic authentication with the LDAP password, rate-limited like
/// the login form.
pub(super) async fn basic_user(
    state: &AppState,
    headers: &HeaderMap,
    addr: SocketAddr,
) -> Result<Username, WebError> {
    use base64::Engine;
    let (user, password) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            s.split_once(':')
                .map(|(u, p)| (u.to_string(), p.to_string()))
        })
        .ok_or(WebError::Unauthorized)?;
    // A name that is no username costs no LDAP bind, and is not counted
    // (so that made-up names cannot push real ones out of the limiter).
    let parsed = Username::parse(&user).map_err(|_| WebError::Unauthorized)?;
    let attempt = super::session::attempt(state, headers, addr, &user);
    let counted = state.limiter.count(&state.store, &attempt).await?;
    if !crate::provision::ldap::check_password(&state.settings.ldap, &parsed, &password).await? {
        return Err(WebError::Unauthorized);
    }
    state.limiter.forgive(&state.store, counted).await;
    Ok(parsed)
}

/// `POST /api/labs/{lab}/submissions`: `curl -u alice -F file=@db.dump`, or
/// the dump as the raw body.
async fn upload_api(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    LabPath(lab): LabPath,
    request: axum::extract::Request,
) -> Result<Response, super::error::ApiError> {
    let user = basic_user(&state, request.headers(), addr).await?;
    let multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("multipart/form-data"));
    let accepted = if multipart {
        let form =
            <Multipart as axum::extract::FromRequest<AppState>>::from_request(request, &state)
                .await
                .map_err(|e| WebError::BadRequest(e.body_text()))?;
        accept_multipart(&state, &lab, &user, form, None).await?
    } else {
        let mut body = request
            .into_body()
            .into_data_stream()
            .map(|c| c.map_err(|e| e.to_string()));
        app::hand_in(
            &state.settings,
            &state.store,
            &state.queue,
            &lab,
            &user,
            chrono::Utc::now(),
            &mut body,
        )
        .await
        .map_err(WebError::from)?
    };
    let url = format!("/api/submissions/{}", accepted.id);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, url.clone())],
        Json(serde_json::json!({
            "id": accepted.id, "status": "queued", "format": accepted.format,
            "size": accepted.size, "late": accepted.late, "url": url,
            "page": format!("/submissions/{}", accepted.id),
        })),
    )
        .into_response())
}

/// Whether `user` may see the submission: staff, or its database's people.
async fn may_see(
    state: &AppState,
    role: Role,
    user: &str,
    sub: &SubmissionRecord,
) -> Result<bool, WebError> {
    if role >= Role::Staff {
        return Ok(true);
    }
    let Ok(user) = Username::parse(user) else {
        return Ok(false);
    };
    Ok(state
        .store
        .database_of(&sub.lab, &user)
        .await?
        .is_some_and(|p| p.database == sub.database))
}

async fn find(
    state: &AppState,
    role: Role,
    user: &str,
    id: i64,
) -> Result<SubmissionRecord, WebError> {
    let sub = state
        .store
        .submission(id)
        .await?
        .ok_or(WebError::NotFound)?;
    if may_see(state, role, user, &sub).await? {
        Ok(sub)
    } else {
        // Not "forbidden": whether an id exists is nobody else's business.
        Err(WebError::NotFound)
    }
}

async fn api_status(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Json<SubmissionRecord>, super::error::ApiError> {
    let user = basic_user(&state, &headers, addr).await?;
    Ok(Json(find(&state, Role::Student, user.as_str(), id).await?))
}

async fn status(
    State(state): State<AppState>,
    s: Session,
    Path(id): Path<i64>,
) -> Result<Json<SubmissionRecord>, WebError> {
    Ok(Json(find(&state, s.role, &s.user, id).await?))
}

/// An error of a restore, ready for the page.
pub struct IssueView {
    pub message: String,
    pub toc: Option<String>,
    /// (line number, pieces) of the statement.
    pub lines: Vec<(Option<usize>, Vec<Piece>)>,
}

#[derive(Template)]
#[template(path = "submission.html")]
struct SubmissionPage {
    nav: Option<Nav>,
    sub: SubmissionRecord,
    size: String,
    issues: Vec<IssueView>,
    is_staff: bool,
}

async fn page(
    State(state): State<AppState>,
    s: Session,
    Path(id): Path<i64>,
) -> Result<Html<String>, WebError> {
    let sub = find(&state, s.role, &s.user, id).await?;
    let issues = sub
        .errors
        .iter()
        .map(|i| IssueView {
            message: i.message.clone(),
            toc: i.toc.clone(),
            lines: i
                .statement
                .as_deref()
                .map(|st| {
                    highlight::lines(st)
                        .into_iter()
                        .enumerate()
                        .map(|(n, l)| (i.line.map(|first| first + n), l))
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect();
    Ok(Html(
        SubmissionPage {
            nav: Nav::of(&s),
            size: app::human_size(sub.size as u64),
            issues,
            is_staff: s.role >= Role::Staff,
            sub,
        }
        .render()?,
    ))
}

/// Uploads into one database, for the job log's summary.
pub struct DatabaseSummary {
    pub database: PgName,
    pub group: Option<GroupName>,
    pub uploads: usize,
    pub uploaders: Vec<Username>,
    pub last_status: String,
}

#[derive(Template)]
#[template(path = "submissions.html")]
struct JobLogPage {
    nav: Option<Nav>,
    lab: String,
    rows: Vec<(SubmissionRecord, String, String)>,
    databases: Vec<DatabaseSummary>,
}

async fn job_log(
    State(state): State<AppState>,
    Staff(s): Staff,
    LabPath(lab): LabPath,
) -> Result<Html<String>, WebError> {
    let subs = state.store.lab_submissions(&lab).await?;
    let mut by_db: BTreeMap<PgName, DatabaseSummary> = BTreeMap::new();
    for sub in subs.iter().rev() {
        let d = by_db
            .entry(sub.database.clone())
            .or_insert_with(|| DatabaseSummary {
                database: sub.database.clone(),
                group: sub.group.clone(),
                uploads: 0,
                uploaders: vec![],
                last_status: String::new(),
            });
        d.uploads += 1;
        d.last_status = sub.status.to_string();
        if !d.uploaders.contains(&sub.uploaded_by) {
            d.uploaders.push(sub.uploaded_by.clone());
        }
    }
    let rows = subs
        .into_iter()
        .map(|sub| {
            let size = app::human_size(sub.size as u64);
            let took = sub
                .duration_secs()
                .map_or_else(|| "—".to_string(), |d| format!("{d:.1} s"));
            (sub, size, took)
        })
        .collect();
    Ok(Html(
        JobLogPage {
            nav: Nav::of(&s),
            lab: lab.to_string(),
            rows,
            databases: by_db.into_values().collect(),
        }
        .render()?,
    ))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/labs/{lab}/submissions",
            post(upload_form)
                .get(job_log)
                .layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/api/labs/{lab}/submissions",
            post(upload_api).layer(DefaultBodyLimit::disable()),
        )
        .route("/api/submissions/{id}", get(api_status))
        .route("/submissions/{id}", get(page))
        .route("/submissions/{id}/status", get(status))
}
