//! `/healthz` for load balancers and `pglab healthcheck`; `/metrics`.

use super::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::time::Duration;

const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);

async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    let check = async {
        let client = state.store.client().await?;
        client.query_one("SELECT 1", &[]).await?;
        Ok::<_, crate::control::StoreError>(())
    };
    // LDAP down is said, not failed: the replica still serves (the
    // bootstrap admin, the board, the API), and a load balancer must not
    // take every replica out for it.
    let ldap = match &state.board.get().ldap_error {
        None => "ok".to_string(),
        Some(e) => format!("down: {e}"),
    };
    match tokio::time::timeout(HEALTH_TIMEOUT, check).await {
        Ok(Ok(())) => (
            StatusCode::OK,
            Json(serde_json::json!({"status": "ok", "ldap": ldap})),
        ),
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "error", "control_database": e.to_string()})),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "error", "control_database": "timed out"})),
        ),
    }
}

/// The metrics, to anyone when no `metrics_token` is set, else only with
/// `Authorization: Bearer <metrics_token>`.
async fn metrics(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    let token = state.settings.metrics_token.expose();
    if !token.is_empty() {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !super::session::same(given.trim(), token) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "/metrics needs the metrics token (Authorization: Bearer ...)\n",
            )
                .into_response();
        }
    }
    let gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(accepts_gzip);
    let parts = state.metrics.render_parts(gzip);
    let length: usize = parts.iter().map(bytes::Bytes::len).sum();
    let body = axum::body::Body::from_stream(futures_util::stream::iter(
        parts.into_iter().map(Ok::<_, std::convert::Infallible>),
    ));
    let mut response = (
        [
            (header::CONTENT_TYPE, "text/plain; version=0.0.4"),
            (header::VARY, "Accept-Encoding"),
        ],
        body,
    )
        .into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_LENGTH, length.into());
    if gzip {
        h.insert(
            header::CONTENT_ENCODING,
            axum::http::HeaderValue::from_static("gzip"),
        );
    }
    response
}

/// Whether an `Accept-Encoding` value takes gzip (not with `q=0`).
fn accepts_gzip(value: &str) -> bool {
    value.split(',').any(|part| {
        let mut it = part.split(';');
        let coding = it.next().unwrap_or("").trim();
        let refused = it.any(|p| {
            p.trim()
                .strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                == Some(0.0)
        });
        (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
    })
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
}

#[cfg(test)]
mod tests {
    #[test]
    fn gzip_when_accepted() {
        for (value, gzip) in [
            ("gzip", true),
            ("identity, gzip;q=0.5", true),
            ("GZIP", true),
            ("*", true),
            ("gzip;q=0", false),
            ("deflate, br", false),
            ("", false),
        ] {
            assert_eq!(super::accepts_gzip(value), gzip, "{value}");
        }
    }
}
