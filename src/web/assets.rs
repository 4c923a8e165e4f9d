//! The stylesheet and the little script, compiled into the binary: pglab
//! serves everything itself (no CDN), so pages work in a closed network.

use super::AppState;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

const CSS: &str = include_str!("../../assets/pglab.css");
const JS: &str = include_str!("../../assets/pglab.js");

async fn css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        CSS,
    )
}

async fn js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        JS,
    )
}

/// Headers on every response: no framing, no sniffing, scripts and styles
/// only from pglab itself.
pub async fn security_headers(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        h.entry(name)
            .or_insert(axum::http::HeaderValue::from_static(value));
    }
    response
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/static/pglab.css", get(css))
        .route("/static/pglab.js", get(js))
}
