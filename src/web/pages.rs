//! Server-rendered pages.

use super::{AppState, WebError};
use crate::control::LabSummary;
use askama::Template;
use axum::extract::State;
use axum::response::Html;
use axum::routing::get;
use axum::Router;

#[derive(Template)]
#[template(path = "index.html")]
struct IndexPage {
    labs: Vec<LabSummary>,
}

async fn index(State(state): State<AppState>) -> Result<Html<String>, WebError> {
    let labs = state.store.labs().await?;
    Ok(Html(IndexPage { labs }.render()?))
}

pub fn router() -> Router<AppState> {
    Router::new().route("/", get(index))
}
