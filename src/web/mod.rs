//! The web app: server-rendered pages for lab masters, staff and students,
//! the JSON API, `/healthz` and `/metrics`.

mod analytics;
mod api;
mod api_v1;
mod assets;
mod board;
mod credentials;
pub(crate) mod download;
mod error;
pub(crate) mod evidence;
mod exports;
mod health;
mod highlight;
mod jobs;
mod labs;
pub mod limiter;
pub(crate) mod login;
mod mail;
mod markdown;
mod participant;
mod participants;
pub mod session;
mod student;
pub(crate) mod submissions;
mod tokens;

pub use api_v1::document_json as openapi_json;
pub use board::{render_grid, Audience, BoardView};
pub use error::WebError;
pub use limiter::Limiter;

use crate::control::Store;
use crate::scoring::Board;
use crate::settings::Settings;
use axum::Router;
use session::{Role, Session, SessionKey};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub store: Store,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub board: Board,
    pub sessions: SessionKey,
    pub limiter: Arc<Limiter>,
    /// Wakes the restore workers when a dump was queued.
    pub queue: crate::app::Queue,
    /// Stopped when the web app stops.
    pub background: Background,
    /// The API's request buckets and token owners' roles.
    pub api: api_v1::ApiState,
}

/// What the page header needs to know about the logged-in user.
pub struct Nav {
    pub user: String,
    pub role: Role,
    pub csrf: String,
}

impl Nav {
    pub fn of(s: &Session) -> Option<Nav> {
        Some(Nav {
            user: s.user.clone(),
            role: s.role,
            csrf: s.csrf.clone(),
        })
    }

    pub fn is_staff(&self) -> bool {
        self.role >= Role::Staff
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(login::router())
        .merge(labs::router())
        .merge(participants::router())
        .merge(participant::router())
        .merge(evidence::router())
        .merge(exports::router())
        .merge(api_v1::router())
        .merge(tokens::router())
        .merge(analytics::router())
        .merge(credentials::router())
        .merge(mail::router())
        .merge(student::router())
        .merge(submissions::router())
        .merge(board::router())
        .merge(jobs::router())
        .merge(assets::router())
        .merge(health::router())
        .merge(api::router())
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(axum::middleware::from_fn(assets::security_headers))
        .layer(axum::middleware::from_fn(request_span))
        .with_state(state)
}

/// Every request runs in a span named by its matched route (`/labs/{lab}`,
/// not the raw path) with a short request id, so that each log line of a
/// request can be found; the id is sent back as `X-Request-Id`.
async fn request_span(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use tracing::Instrument;
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("(none)", |m| m.as_str())
        .to_string();
    let id: String = crate::random::token().chars().take(12).collect();
    let span = tracing::info_span!("request", method = %request.method(), route = %route, id = %id);
    let mut response = next.run(request).instrument(span).await;
    if let Ok(v) = axum::http::HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}

/// Serves on an already bound listener (the caller picks the port and
/// reports a taken one) until `shutdown`.
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "web app listening");
    let background = state.background.clone();
    let served = axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await;
    background.stop();
    served
}

/// The loops that run beside the web app (scoring, restore workers, the
/// sweeper); they end with it, before `pglab up` stops the services they
/// use. A restore cut off here is swept at the next start like after a
/// crash: retried, nothing left behind.
#[derive(Clone)]
pub struct Background(std::sync::Arc<Vec<tokio::task::AbortHandle>>);

impl Background {
    pub fn new(tasks: Vec<tokio::task::AbortHandle>) -> Self {
        Self(std::sync::Arc::new(tasks))
    }

    pub fn stop(&self) {
        for task in self.0.iter() {
            task.abort();
        }
    }
}
