//! `/api/v1`: the JSON API for scripts, on the application layer like the
//! pages. Callers are a lab master's personal token (`Authorization:
//! Bearer pglab_...`, scoped read / write / admin), or a student with their
//! LDAP password (Basic) for their own progress. Errors are
//! `application/problem+json` with a stable `code`; every caller is rate
//! limited (a token bucket per token, and per address).

use super::error::WebError;
use super::AppState;
use crate::app::tokens::TokenRefused;
use crate::control::{TokenRecord, TokenScope};
use crate::ident::{LabId, Username};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// An API error: its status, a stable code, words for people, and the
/// field it is about.
#[derive(Debug)]
pub struct Problem {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<&'static str>,
    pub retry_after: Option<u64>,
}

impl Problem {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }
}

impl From<WebError> for Problem {
    fn from(e: WebError) -> Self {
        let code = match &e {
            WebError::NotFound => "not_found",
            WebError::Forbidden => "forbidden",
            WebError::Unauthorized | WebError::LoginRequired(_) => "unauthorized",
            WebError::TooManyAttempts(_) => "too_many_attempts",
            WebError::BadRequest(_) => "bad_request",
            WebError::Conflict(_) => "conflict",
            _ if e.status().is_server_error() => "server_error",
            _ => "refused",
        };
        let retry_after = match &e {
            WebError::TooManyAttempts(s) => Some(*s),
            _ => None,
        };
        if e.status().is_server_error() {
            tracing::error!(error = %e, "API request failed");
        }
        Self {
            status: e.status(),
            code,
            message: e.message(),
            field: None,
            retry_after,
        }
    }
}

impl From<crate::control::StoreError> for Problem {
    fn from(e: crate::control::StoreError) -> Self {
        WebError::from(e).into()
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "type": format!("https://pglab.invalid/problems/{}", self.code),
            "title": self.status.canonical_reason().unwrap_or("error"),
            "status": self.status.as_u16(),
            "code": self.code,
            "message": self.message,
            "field": self.field,
        });
        let mut r = (self.status, body.to_string()).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(s) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        r
    }
}

/// Callers remembered at most (the oldest makes room).
const MAX_CALLERS: usize = 20_000;

/// Token buckets per caller (a token's id, or an address).
#[derive(Default, Clone)]
pub struct RateLimits {
    buckets: Arc<Mutex<HashMap<String, (f64, Instant)>>>,
}

impl RateLimits {
    /// Takes one request from `key`'s bucket of `per_minute`; the seconds
    /// to wait when it is empty.
    pub fn take(&self, key: &str, per_minute: f64) -> Result<(), u64> {
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if map.len() >= MAX_CALLERS && !map.contains_key(key) {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        let (tokens, last) = map.entry(key.to_string()).or_insert((per_minute, now));
        *tokens =
            (*tokens + now.duration_since(*last).as_secs_f64() * per_minute / 60.0).min(per_minute);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) * 60.0 / per_minute).ceil().max(1.0) as u64)
        }
    }
}

/// Who calls.
pub enum Caller {
    Token(TokenRecord),
    Student(Username),
}

impl Caller {
    /// A lab master's token of at least `scope`.
    fn token(&self, scope: TokenScope) -> Result<&TokenRecord, Problem> {
        match self {
            Caller::Token(t) if t.scope.allows(scope) => Ok(t),
            Caller::Token(t) => Err(Problem::new(
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                format!(
                    "this needs a token of scope {scope}; this one is {}",
                    t.scope
                ),
            )),
            Caller::Student(_) => Err(Problem::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this is for lab masters' tokens",
            )),
        }
    }
}

fn rate_limited(state: &AppState, key: &str) -> Result<(), Problem> {
    state
        .api_rates
        .take(key, state.settings.api_rate_per_minute())
        .map_err(|wait| Problem {
            retry_after: Some(wait),
            ..Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many requests; try again in {wait} s"),
            )
        })
}

/// The caller of a request: a personal token, or a student's Basic login;
/// rate-limited per address first, then per token.
async fn caller(
    state: &AppState,
    headers: &HeaderMap,
    addr: SocketAddr,
) -> Result<Caller, Problem> {
    let ip: IpAddr = addr.ip();
    rate_limited(state, &format!("addr:{ip}"))?;
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if let Some(bearer) = auth.strip_prefix("Bearer ") {
        let bearer = bearer.trim();
        if !state.settings.api_token.expose().is_empty()
            && super::session::same(bearer, state.settings.api_token.expose())
        {
            return Err(Problem::new(
                StatusCode::UNAUTHORIZED,
                "shared_token",
                "the shared api_token only works for /api/labs/{lab}/generate; make a personal token: pglab token create NAME --owner USER --scope read",
            ));
        }
        let token = match crate::app::tokens::check(&state.store, bearer).await? {
            Ok(t) => t,
            Err(why) => {
                let code = match why {
                    TokenRefused::Unknown => "unknown_token",
                    TokenRefused::Revoked => "revoked_token",
                    TokenRefused::Expired => "expired_token",
                };
                return Err(Problem::new(
                    StatusCode::UNAUTHORIZED,
                    code,
                    why.to_string(),
                ));
            }
        };
        rate_limited(state, &format!("token:{}", token.id))?;
        return Ok(Caller::Token(token));
    }
    if auth.starts_with("Basic ") {
        let user = super::submissions::basic_user(state, headers, addr).await?;
        return Ok(Caller::Student(user));
    }
    Err(Problem::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "send Authorization: Bearer <personal token> (or Basic with your lab password for your own progress)",
    ))
}

fn lab_id(s: &str) -> Result<LabId, Problem> {
    LabId::parse(s).map_err(|_| WebError::NotFound.into())
}

/// `GET /api/v1/health` (no login).
async fn health(State(state): State<AppState>) -> Response {
    let ok = state.store.client().await.is_ok();
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(serde_json::json!({ "status": if ok { "ok" } else { "degraded" }, "version": env!("CARGO_PKG_VERSION") }))).into_response()
}

/// `GET /api/v1/labs`.
async fn labs(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, Problem> {
    caller(&state, &headers, addr)
        .await?
        .token(TokenScope::Read)?;
    let labs = state.store.labs().await?;
    let items: Vec<serde_json::Value> = labs
        .iter()
        .map(|l| {
            serde_json::json!({
                "id": l.id, "title": l.title, "participants": l.participants, "databases": l.databases,
                "links": { "self": format!("/api/v1/labs/{}", l.id), "scores": format!("/api/v1/labs/{}/scores", l.id) },
            })
        })
        .collect();
    Ok(Json(
        serde_json::json!({ "items": items, "next_cursor": null }),
    ))
}

/// `GET /api/v1/labs/{lab}`.
async fn lab(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(lab): Path<String>,
) -> Result<Json<serde_json::Value>, Problem> {
    caller(&state, &headers, addr)
        .await?
        .token(TokenScope::Read)?;
    let id = lab_id(&lab)?;
    let loaded = state.store.lab(&id).await?.ok_or(WebError::NotFound)?;
    let l = &loaded.lab;
    Ok(Json(serde_json::json!({
        "id": l.id, "title": l.title, "deadline": l.deadline, "after_deadline": l.after_deadline,
        "databases": l.databases, "snapshots": l.snapshots,
        "tasks": l.tasks.iter().map(|t| serde_json::json!({ "id": t.id, "title": t.title, "points": t.points, "description": t.description })).collect::<Vec<_>>(),
        "yaml": loaded.text,
    })))
}

#[derive(serde::Deserialize)]
struct Page {
    cursor: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/v1/labs/{lab}/scores?cursor=&limit=`: each participant's
/// points, tasks with reasons, and final score; `ETag` per scoring round.
async fn scores(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(lab): Path<String>,
    Query(page): Query<Page>,
) -> Result<Response, Problem> {
    caller(&state, &headers, addr)
        .await?
        .token(TokenScope::Read)?;
    let id = lab_id(&lab)?;
    state.store.lab(&id).await?.ok_or(WebError::NotFound)?;
    let snapshot = state.board.get();
    let finals = state.store.final_states(&id).await?;
    let tag = format!(
        "\"scores-{}-{}-{}\"",
        snapshot
            .at
            .map_or(0, |t| t.timestamp_nanos_opt().unwrap_or(0)),
        finals.len(),
        page.cursor.as_deref().unwrap_or("")
    );
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        == Some(tag.as_str())
    {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, tag)]).into_response());
    }
    let limit = page.limit.unwrap_or(100).clamp(1, 1000);
    let board = snapshot.labs.iter().find(|l| l.id == id.as_str());
    let mut people: Vec<_> = board.map(|b| b.participants.clone()).unwrap_or_default();
    people.sort_by(|a, b| a.username.cmp(&b.username));
    let after = page.cursor.unwrap_or_default();
    let rest: Vec<_> = people.into_iter().filter(|p| p.username > after).collect();
    let next = (rest.len() > limit).then(|| rest[limit - 1].username.clone());
    let items: Vec<serde_json::Value> = rest
        .iter()
        .take(limit)
        .map(|p| {
            let fin = finals.iter().find(|f| f.database == p.database);
            serde_json::json!({
                "username": p.username, "database": p.database, "points": p.points(),
                "tasks": p.tasks, "error": p.error,
                "final": fin.map(|f| serde_json::json!({ "points": f.points, "max_points": f.max_points, "taken_at": f.taken_at, "late": f.late })),
            })
        })
        .collect();
    let body = serde_json::json!({
        "lab": id, "max_points": board.map(|b| b.max_points()), "checked_at": snapshot.at,
        "items": items, "next_cursor": next,
    });
    Ok(([(header::ETAG, tag)], Json(body)).into_response())
}

/// `GET /api/v1/jobs/{id}`: a job's state and log.
async fn job(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, Problem> {
    caller(&state, &headers, addr)
        .await?
        .token(TokenScope::Read)?;
    let id: i64 = id.parse().map_err(|_| Problem::from(WebError::NotFound))?;
    let job = state.store.job(id).await?.ok_or(WebError::NotFound)?;
    let log = state.store.job_log(id).await?;
    Ok(Json(serde_json::json!({ "job": job, "log": log })))
}

/// `GET /api/v1/me/labs/{lab}/progress`: a student's own tasks (Basic).
async fn my_progress(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(lab): Path<String>,
) -> Result<Json<serde_json::Value>, Problem> {
    let Caller::Student(user) = caller(&state, &headers, addr).await? else {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this is a student's own progress: log in with Basic",
        ));
    };
    let id = lab_id(&lab)?;
    let data = crate::app::exports::participant_data(&state.store, &id, &user)
        .await?
        .ok_or(WebError::NotFound)?;
    Ok(Json(data))
}

async fn unknown() -> Problem {
    WebError::NotFound.into()
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/health", get(health))
        .route("/api/v1/labs", get(labs))
        .route("/api/v1/labs/{lab}", get(lab))
        .route("/api/v1/labs/{lab}/scores", get(scores))
        .route("/api/v1/jobs/{id}", get(job))
        .route("/api/v1/me/labs/{lab}/progress", get(my_progress))
        .route("/api/v1/{*rest}", get(unknown).post(unknown))
}
