//! Participants of a lab: add rows or paste CSV, see the plan, apply it as a
//! job of the queue whose progress the browser follows.

use super::labs::load_lab;
use super::session::Session;
use super::{AppState, Nav, WebError};
use crate::control::ParticipantRecord;
use crate::ident::LabId;
use crate::lab::Participants;
use crate::provision;
use crate::web::labs::LabPath;
use crate::web::session::Master;
use askama::Template;
use axum::extract::State;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};

/// Empty rows the form offers.
const FORM_ROWS: usize = 3;

#[derive(Template)]
#[template(path = "participants.html")]
struct ParticipantsPage {
    nav: Option<Nav>,
    lab: String,
    title: String,
    current: Vec<ParticipantRecord>,
    pasted: String,
    rows: Vec<[String; 4]>,
    errors: Vec<String>,
}

#[derive(Template)]
#[template(path = "plan.html")]
struct PlanPage {
    nav: Option<Nav>,
    lab: String,
    title: String,
    changes: Vec<String>,
    notices: Vec<String>,
    participants: usize,
    added: Vec<String>,
    csv: String,
}

fn csrf_of(form: &[(String, String)]) -> &str {
    form.iter()
        .find(|(k, _)| k == "csrf")
        .map_or("", |(_, v)| v.as_str())
}

fn field<'a>(form: &'a [(String, String)], key: &str) -> &'a str {
    form.iter()
        .find(|(k, _)| k == key)
        .map_or("", |(_, v)| v.as_str())
}

/// The rows typed into the form (username, name, email, group).
fn form_rows(form: &[(String, String)]) -> Vec<[String; 4]> {
    let all = |key: &str| -> Vec<String> {
        form.iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.trim().to_string())
            .collect()
    };
    let (u, n, e, g) = (all("username"), all("name"), all("email"), all("group"));
    (0..u.len())
        .map(|i| {
            let get = |v: &Vec<String>| v.get(i).cloned().unwrap_or_default();
            [get(&u), get(&n), get(&e), get(&g)]
        })
        .collect()
}

/// The new rows from the form and the paste, checked like a CSV file.
fn new_rows(pasted: &str, rows: &[[String; 4]]) -> Result<Participants, Vec<String>> {
    let mut errors = vec![];
    let pasted = if pasted.trim().is_empty() {
        Participants::default()
    } else {
        Participants::parse("pasted CSV", pasted).unwrap_or_else(|e| {
            errors.extend(e.lines());
            Participants::default()
        })
    };
    let mut w = csv::Writer::from_writer(vec![]);
    for r in rows.iter().filter(|r| r.iter().any(|f| !f.is_empty())) {
        let _ = w.write_record(r);
    }
    let typed = String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default();
    let typed = if typed.is_empty() {
        Participants::default()
    } else {
        Participants::parse("form row", &typed).unwrap_or_else(|e| {
            errors.extend(e.lines());
            Participants::default()
        })
    };
    if errors.is_empty() {
        Ok(pasted.merged(typed))
    } else {
        Err(errors)
    }
}

async fn page_for(
    state: &AppState,
    s: &Session,
    lab: &LabId,
    pasted: String,
    rows: Vec<[String; 4]>,
    errors: Vec<String>,
) -> Result<ParticipantsPage, WebError> {
    let loaded = load_lab(state, lab).await?;
    let mut rows = rows;
    rows.resize(rows.len().max(FORM_ROWS), Default::default());
    Ok(ParticipantsPage {
        nav: Nav::of(s),
        lab: lab.to_string(),
        title: loaded.lab.title,
        current: state.store.participants(lab).await?,
        pasted,
        rows,
        errors,
    })
}

async fn show(
    State(state): State<AppState>,
    Master(s): Master,
    LabPath(lab): LabPath,
) -> Result<Html<String>, WebError> {
    Ok(Html(
        page_for(&state, &s, &lab, String::new(), vec![], vec![])
            .await?
            .render()?,
    ))
}

/// The complete list after the change, and the plan to get there.
async fn plan_for(
    state: &AppState,
    lab: &LabId,
    wanted: Participants,
) -> Result<provision::Plan, WebError> {
    crate::app::participants::plan(&state.settings, &state.store, lab, wanted)
        .await
        .map_err(|e| match e {
            provision::ProvisionError::Input(m) => WebError::BadRequest(m),
            other => other.into(),
        })?
        .ok_or(WebError::NotFound)
}

async fn plan(
    State(state): State<AppState>,
    Master(s): Master,
    LabPath(lab): LabPath,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, WebError> {
    s.check_csrf(csrf_of(&form))?;
    let pasted = field(&form, "csv").to_string();
    let rows = form_rows(&form);
    let added = match new_rows(&pasted, &rows) {
        Ok(p) if p.0.is_empty() => {
            let errors = vec!["Add at least one participant: type a row or paste CSV.".to_string()];
            return invalid(page_for(&state, &s, &lab, pasted, rows, errors).await?);
        }
        Ok(p) => p,
        Err(errors) => return invalid(page_for(&state, &s, &lab, pasted, rows, errors).await?),
    };
    let current = crate::app::participants::current_list(&state.store.participants(&lab).await?);
    let wanted = current.merged(added.clone());
    let plan = match plan_for(&state, &lab, wanted.clone()).await {
        Ok(p) => p,
        Err(WebError::BadRequest(m)) => {
            return invalid(page_for(&state, &s, &lab, pasted, rows, vec![m]).await?)
        }
        Err(e) => return Err(e),
    };
    Ok(Html(
        PlanPage {
            nav: Nav::of(&s),
            lab: lab.to_string(),
            title: plan.lab.lab.title.clone(),
            changes: plan.changes.iter().map(|c| c.to_string()).collect(),
            notices: plan.notices.clone(),
            participants: wanted.0.len(),
            added: added.0.iter().map(|p| p.username.to_string()).collect(),
            csv: wanted.to_csv(),
        }
        .render()?,
    )
    .into_response())
}

fn invalid(page: ParticipantsPage) -> Result<Response, WebError> {
    let mut r = Html(page.render()?).into_response();
    *r.status_mut() = axum::http::StatusCode::UNPROCESSABLE_ENTITY;
    Ok(r)
}

async fn apply(
    State(state): State<AppState>,
    Master(s): Master,
    LabPath(lab): LabPath,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, WebError> {
    s.check_csrf(csrf_of(&form))?;
    let wanted = Participants::parse("participants", field(&form, "csv"))
        .map_err(|e| WebError::BadRequest(e.to_string()))?;
    // Checked here so that a list that cannot be applied is refused at
    // once; the job plans again when it runs.
    plan_for(&state, &lab, wanted.clone()).await?;
    let id = crate::app::labs::start_apply(&state.store, &state.queue, &lab, &wanted, &s.user)
        .await
        .map_err(|e| match e {
            crate::app::labs::StartApplyError::Store(e) => e.into(),
            busy => WebError::Conflict(busy.to_string()),
        })?;
    Ok(Redirect::to(&format!("/jobs/{id}")).into_response())
}

/// A refresh or bookmark of a form's address: the form again (a plan is
/// made from a list, which a visit does not carry).
async fn back_to_participants(LabPath(lab): LabPath) -> Redirect {
    Redirect::to(&format!("/labs/{lab}/participants"))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/labs/{lab}/participants", get(show))
        .route(
            "/labs/{lab}/participants/plan",
            post(plan).get(back_to_participants),
        )
        .route(
            "/labs/{lab}/participants/apply",
            post(apply).get(back_to_participants),
        )
}
