//! Labs: the list, one lab's page, and creating a lab from uploaded files.

mod upload;

use super::session::Role;
use super::{AppState, Nav, WebError};
use crate::ident::{LabId, Username};
use crate::lab::{Lab, LoadedLab};
use crate::scoring::LabBoard;
use crate::web::session::Staff;
use askama::Template;
use axum::extract::State;
use axum::response::Html;
use axum::routing::get;
use axum::Router;

pub fn parse_id(id: &str) -> Result<LabId, WebError> {
    LabId::parse(id).map_err(|_| WebError::NotFound)
}

/// The `{lab}` of a route, parsed: a name that is no lab id is a 404 like
/// any unknown lab.
pub struct LabPath(pub LabId);

/// The parameters of a route's path; a path that does not fit is a 404.
async fn path_params(
    parts: &mut axum::http::request::Parts,
    state: &AppState,
) -> Result<std::collections::BTreeMap<String, String>, WebError> {
    use axum::extract::{FromRequestParts, Path};
    let Path(params) = Path::from_request_parts(parts, state)
        .await
        .map_err(|_| WebError::NotFound)?;
    Ok(params)
}

impl axum::extract::FromRequestParts<AppState> for LabPath {
    type Rejection = WebError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, WebError> {
        let params = path_params(parts, state).await?;
        let lab = params
            .get("lab")
            .or_else(|| params.get("id"))
            .ok_or(WebError::NotFound)?;
        parse_id(lab).map(LabPath)
    }
}

/// The `{lab}` and `{user}` of a route, parsed: a 404 when either is not a
/// valid name.
pub struct LabUserPath(pub LabId, pub Username);

impl axum::extract::FromRequestParts<AppState> for LabUserPath {
    type Rejection = WebError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, WebError> {
        let params = path_params(parts, state).await?;
        let (Some(lab), Some(user)) = (params.get("lab"), params.get("user")) else {
            return Err(WebError::NotFound);
        };
        let user = Username::parse(user).map_err(|_| WebError::NotFound)?;
        Ok(LabUserPath(parse_id(lab)?, user))
    }
}

/// The lab as the control database holds it (uploaded here, or applied
/// from the CLI): the same spec the scoring engine reads.
pub async fn load_lab(state: &AppState, id: &LabId) -> Result<LoadedLab, WebError> {
    state.store.lab(id).await?.ok_or(WebError::NotFound)
}

/// One row of the labs list.
pub struct LabRow {
    pub id: String,
    pub title: String,
    pub participants: i64,
    pub average_percent: u32,
    pub finished: usize,
    pub needs_help: usize,
    pub status: String,
}

#[derive(Template)]
#[template(path = "labs.html")]
struct LabsPage {
    nav: Option<Nav>,
    labs: Vec<LabRow>,
}

fn board_of(state: &AppState, id: &str) -> Option<LabBoard> {
    state.board.get().labs.iter().find(|l| l.id == id).cloned()
}

async fn list(State(state): State<AppState>, Staff(s): Staff) -> Result<Html<String>, WebError> {
    let now = chrono::Utc::now();
    let labs = state
        .store
        .labs()
        .await?
        .into_iter()
        .map(|l| {
            let board = board_of(&state, l.id.as_str());
            let summary = board.as_ref().map(|b| super::board::summarize(b, now));
            LabRow {
                status: match (&summary, l.databases) {
                    (_, 0) => "no participants yet".into(),
                    (None, _) => "waiting for the first scoring round".into(),
                    (Some(_), n) => format!("{n} databases, scored live"),
                },
                average_percent: summary.as_ref().map_or(0, |s| s.average_percent),
                finished: summary.as_ref().map_or(0, |s| s.finished),
                needs_help: summary.as_ref().map_or(0, |s| s.needs_help),
                id: l.id.to_string(),
                title: l.title,
                participants: l.participants,
            }
        })
        .collect();
    Ok(Html(
        LabsPage {
            nav: Nav::of(&s),
            labs,
        }
        .render()?,
    ))
}

#[derive(Template)]
#[template(path = "lab.html")]
struct LabPage {
    nav: Option<Nav>,
    lab: Lab,
    participants: i64,
    databases: i64,
    grafana: Option<String>,
    is_master: bool,
}

async fn show(
    State(state): State<AppState>,
    Staff(s): Staff,
    LabPath(id): LabPath,
) -> Result<Html<String>, WebError> {
    let lab = load_lab(&state, &id).await?;
    let summary = state.store.labs().await?.into_iter().find(|l| l.id == id);
    Ok(Html(
        LabPage {
            nav: Nav::of(&s),
            participants: summary.as_ref().map_or(0, |l| l.participants),
            databases: summary.as_ref().map_or(0, |l| l.databases),
            grafana: grafana_link(&state, &id),
            is_master: s.role == Role::Master,
            lab: lab.lab,
        }
        .render()?,
    ))
}

/// The generated Grafana dashboard of a lab, when Grafana is configured.
pub fn grafana_link(state: &AppState, id: &LabId) -> Option<String> {
    state
        .settings
        .web
        .grafana_url
        .as_ref()
        .map(|g| format!("{}/d/pglab-{id}", g.trim_end_matches('/')))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/labs", get(list))
        .route("/labs/{lab}", get(show))
        .merge(upload::router())
}
