//! The API reference page, rendered by pglab from its own OpenAPI document
//! (no script, no CDN).

use crate::web::AppState;
use axum::Router;

pub fn router() -> Router<AppState> {
    Router::new()
}
