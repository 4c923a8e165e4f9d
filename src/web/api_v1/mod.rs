//! `/api/v1`: the JSON API for scripts, on the application layer like the
//! pages (one function per action, shared with them). Callers are a lab
//! master's or staff member's personal token (`Authorization: Bearer
//! pglab_...`, scoped read / write / admin), or a student with their lab
//! password (Basic) for their own hand-ins and progress. Errors are
//! `application/problem+json` with a stable `code`; lists are pages with a
//! cursor; addresses in answers are absolute. The OpenAPI document is made
//! from the handlers themselves (`utoipa`), so it cannot drift from them.

mod auth;
mod evidence;
mod handins;
mod labs;
mod mail;
pub mod model;
mod people;
mod reference;

pub use auth::ApiState;
use auth::{caller, Caller};

use super::error::WebError;
use super::AppState;
use crate::ident::LabId;
use axum::extract::{ConnectInfo, FromRequest, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use model::{Health, Links, ProblemBody};
use std::net::SocketAddr;
use std::sync::OnceLock;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// An API error: its status, a stable code, words for people, and the
/// field it is about.
#[derive(Debug)]
pub struct Problem {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    pub retry_after: Option<u64>,
    pub problems: Option<Vec<model::LabProblem>>,
}

impl Problem {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after: None,
            problems: None,
        }
    }

    pub fn bad_request(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: Some(field.to_string()),
            ..Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
        }
    }

    pub fn not_found() -> Self {
        WebError::NotFound.into()
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
            _ if e.status() == StatusCode::PAYLOAD_TOO_LARGE => "too_large",
            _ if e.status() == StatusCode::CONFLICT => "conflict",
            _ if e.status() == StatusCode::TOO_MANY_REQUESTS => "busy",
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
            retry_after,
            ..Self::new(e.status(), code, e.message())
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
        let body = ProblemBody {
            kind: format!("https://pglab.invalid/problems/{}", self.code),
            title: self
                .status
                .canonical_reason()
                .unwrap_or("error")
                .to_string(),
            status: self.status.as_u16(),
            code: self.code.to_string(),
            message: self.message,
            field: self.field,
            problems: self.problems,
        };
        let text = serde_json::to_string(&body).unwrap_or_default();
        let mut r = (self.status, text).into_response();
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

/// A JSON request body of at most `LIMIT` bytes; anything else is a
/// problem naming what is wrong (and, for a bad field, which one).
pub struct Body<T, const LIMIT: usize>(pub T);

impl<T: serde::de::DeserializeOwned, const LIMIT: usize> FromRequest<AppState> for Body<T, LIMIT> {
    type Rejection = Problem;

    async fn from_request(req: Request, _: &AppState) -> Result<Self, Problem> {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as Content-Type: application/json",
            ));
        }
        let bytes = axum::body::to_bytes(req.into_body(), LIMIT)
            .await
            .map_err(|_| too_large(LIMIT))?;
        serde_json::from_slice(&bytes).map(Body).map_err(|e| {
            let text = e.to_string();
            let field = text
                .split('`')
                .nth(1)
                .filter(|_| text.contains("field `"))
                .unwrap_or("body");
            Problem::bad_request(
                field,
                format!("the body is not what this route takes: {text}"),
            )
        })
    }
}

pub fn too_large(limit: usize) -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!(
            "the body is larger than this route takes ({})",
            crate::app::human_size(limit as u64)
        ),
    )
}

/// The query string, or a problem naming it.
pub struct Q<T>(pub T);

impl<T: serde::de::DeserializeOwned + Send> axum::extract::FromRequestParts<AppState> for Q<T> {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Problem> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Q(q.0))
            .map_err(|e| Problem::bad_request("query", e.body_text()))
    }
}

/// The parameters of the path; a path that does not fit is a 404.
pub struct P<T>(pub T);

impl<T: serde::de::DeserializeOwned + Send> axum::extract::FromRequestParts<AppState> for P<T> {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Problem> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| P(p.0))
            .map_err(|_| Problem::not_found())
    }
}

/// The address scripts reach pglab at, for absolute URLs in answers:
/// `web.public_url`, or the `Host` of the request (`https` behind secure
/// cookies).
pub fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = &state.settings.web.public_url {
        return url.clone();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '-' | '[' | ']'))
        })
        .map_or_else(|| state.settings.listen.to_string(), str::to_string);
    let scheme = if state.settings.web.secure_cookies {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{host}")
}

/// Links from (name, path) pairs, made absolute.
pub fn links(base: &str, pairs: &[(&str, String)]) -> Links {
    let map = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), format!("{base}{v}")))
        .collect::<std::collections::BTreeMap<_, _>>();
    Links(map)
}

/// One page of `items` (sorted by `key`, which is unique): the items after
/// `cursor`, at most `limit`, and the cursor of the next page.
pub fn page<T>(
    items: Vec<T>,
    key: impl Fn(&T) -> String,
    q: &model::PageQuery,
) -> (Vec<T>, Option<String>) {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let after = q.cursor.clone().unwrap_or_default();
    let mut rest: Vec<T> = items
        .into_iter()
        .filter(|i| after.is_empty() || key(i) > after)
        .collect();
    let next = (rest.len() > limit).then(|| key(&rest[limit - 1]));
    rest.truncate(limit);
    (rest, next)
}

/// Ids in list keys sort as text: zero-padded so that text order is
/// number order.
pub fn id_key(id: i64) -> String {
    format!("{id:020}")
}

pub fn lab_id(s: &str) -> Result<LabId, Problem> {
    LabId::parse(s).map_err(|_| Problem::not_found())
}

/// The id of the path's lab, which exists; 404 otherwise.
pub async fn existing_lab(state: &AppState, lab: &str) -> Result<LabId, Problem> {
    let id = lab_id(lab)?;
    if state.store.lab_exists(&id).await? {
        Ok(id)
    } else {
        Err(Problem::not_found())
    }
}

/// The path's lab, loaded; 404 when there is none.
pub async fn loaded_lab(state: &AppState, lab: &str) -> Result<crate::lab::LoadedLab, Problem> {
    state
        .store
        .lab(&lab_id(lab)?)
        .await?
        .ok_or_else(Problem::not_found)
}

/// The caller, from the request's parts.
pub struct Who(pub Caller, pub String);

impl axum::extract::FromRequestParts<AppState> for Who {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Problem> {
        let addr = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let c = caller(state, &parts.headers, addr).await?;
        Ok(Who(c, base_url(state, &parts.headers)))
    }
}

/// Health.
///
/// Whether the control database answers.
///
/// Who: anyone.
#[utoipa::path(get, path = "/api/v1/health", operation_id = "getHealth", tag = "health", security(()),
    responses((status = 200, body = Health), (status = 503, body = Health)))]
async fn health(State(state): State<AppState>) -> Response {
    let ok = state.store.client().await.is_ok();
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Health {
        status: if ok { "ok" } else { "degraded" }.into(),
        version: env!("CARGO_PKG_VERSION").into(),
    };
    (status, Json(body)).into_response()
}

/// This OpenAPI document.
///
/// This document.
///
/// Who: anyone.
#[utoipa::path(get, path = "/api/v1/openapi.json", operation_id = "getOpenapi", tag = "health", security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json")))]
async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        document_json().as_str(),
    )
        .into_response()
}

async fn unknown() -> Problem {
    Problem::not_found()
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "pglab API",
        description = "Labs, participants, scores, hand-ins, exports and snapshots of a pglab server. Authenticate with a personal token (`Authorization: Bearer pglab_...`), or, for a student's own hand-ins and progress, with Basic and the lab password. Errors are `application/problem+json` with a stable `code`.",
        license(name = "MIT", identifier = "MIT"),
    ),
    servers((url = "/", description = "This pglab (the document's own address)")),
    modifiers(&Security),
    components(schemas(ProblemBody, model::LabProblem)),
    tags(
        (name = "labs", description = "Labs: list, read, check, create or replace"),
        (name = "participants", description = "Participants, their credentials, scores and history"),
        (name = "hand-ins", description = "pg_dump hand-ins"),
        (name = "evidence", description = "Exports and snapshots"),
        (name = "mail", description = "Mail to participants, and the delivery log"),
        (name = "jobs", description = "Background jobs"),
        (name = "me", description = "A student's own progress"),
        (name = "health", description = "Health and this document"),
    )
)]
struct ApiDoc;

/// Declares the two ways in, makes a token the default, and documents the
/// errors every route may answer with.
struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A personal API token: pglab token create, or the Tokens page",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "student",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Basic).build()),
        );
        let problem = || {
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ProblemBody")))
                .build()
        };
        let errors = [
            ("400", "The request is not what the route takes"),
            ("401", "No credentials, or unknown, revoked or expired ones"),
            ("403", "The caller may not do this"),
            ("404", "No such thing (or not the caller's to see)"),
            ("429", "Too many requests; see Retry-After"),
            ("500", "pglab failed; the log says why"),
        ];
        let writes = [
            (
                "409",
                "In the way of something that is still running or already there",
            ),
            ("413", "The body is larger than the route takes"),
            ("415", "The body is not of the type the route takes"),
            ("422", "Understood, but refused (the message says why)"),
        ];
        for item in doc.paths.paths.values_mut() {
            let reads = item.get.iter_mut().map(|op| (op, &[][..]));
            let changes = [&mut item.put, &mut item.post, &mut item.delete]
                .into_iter()
                .flatten()
                .map(|op| (op, &writes[..]));
            for (op, extra) in reads.chain(changes) {
                for (code, response) in op.responses.responses.iter_mut() {
                    if let utoipa::openapi::RefOr::T(r) = response {
                        if r.description.is_empty() {
                            r.description = match code.as_str() {
                                "200" => "OK",
                                "201" => "Created",
                                "202" => "Accepted: the work goes on as a job",
                                _ => "See the body",
                            }
                            .to_string();
                        }
                    }
                }
                for (code, words) in errors.iter().chain(extra).copied() {
                    op.responses
                        .responses
                        .entry(code.to_string())
                        .or_insert_with(|| {
                            ResponseBuilder::new()
                                .description(words)
                                .content("application/problem+json", problem())
                                .into()
                        });
                }
            }
        }
        doc.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
            "token",
            Vec::<String>::new(),
        )]);
    }
}

fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health))
        .routes(routes!(openapi_json))
        .merge(labs::routes())
        .merge(people::routes())
        .merge(handins::routes())
        .merge(evidence::routes())
        .merge(mail::routes())
}

/// The OpenAPI document, made once from the handlers.
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOC.get_or_init(|| {
        let (_, mut doc) = api().split_for_parts();
        <Security as utoipa::Modify>::modify(&Security, &mut doc);
        doc
    })
}

pub fn document_json() -> &'static String {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| document().to_pretty_json().unwrap_or_default())
}

/// API answers are for the caller alone: not kept by caches (scores
/// carry their own `private, no-cache` with an ETag).
async fn no_store(mut r: Response) -> Response {
    r.headers_mut()
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    r
}

pub fn router() -> Router<AppState> {
    let (router, _) = api().split_for_parts();
    router
        .layer(axum::middleware::map_response(no_store))
        .merge(reference::router())
        .route("/api/v1/{*rest}", axum::routing::any(unknown))
}
