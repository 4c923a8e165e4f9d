//! Mail pages of a lab (lab masters): credentials by mail with a preview
//! of who gets what and of the first message, and the delivery log.

use super::labs::{load_lab, LabPath};
use super::session::Master;
use super::{AppState, Nav, WebError};
use crate::app::mail::{mail_credentials, plan_credentials, CredentialsPlan, MailError};
use crate::control::MailRecord;
use crate::ident::Username;
use askama::Template;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};

#[derive(Template)]
#[template(path = "mail_preview.html")]
struct PreviewPage {
    nav: Option<Nav>,
    lab: String,
    title: String,
    to: String,
    plan: CredentialsPlan,
}

#[derive(Template)]
#[template(path = "mail_log.html")]
struct LogPage {
    nav: Option<Nav>,
    lab: String,
    title: String,
    mails: Vec<MailRecord>,
    mail_on: bool,
}

#[derive(serde::Deserialize)]
struct MailForm {
    csrf: String,
    #[serde(default)]
    to: String,
    action: String,
}

fn refused(e: MailError) -> WebError {
    match e {
        MailError::Store(e) => e.into(),
        MailError::NoSuchLab => WebError::NotFound,
        other => WebError::Conflict(other.to_string()),
    }
}

/// `POST /labs/{lab}/mail/credentials`: `action=preview` shows who would
/// get what; `action=send` queues the messages and shows the job.
async fn credentials(
    State(state): State<AppState>,
    Master(s): Master,
    headers: HeaderMap,
    LabPath(lab): LabPath,
    Form(form): Form<MailForm>,
) -> Result<Response, WebError> {
    s.check_csrf(&form.csrf)?;
    let to: Vec<Username> = form
        .to
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|u| !u.is_empty())
        .map(|u| {
            Username::parse(u).map_err(|_| WebError::BadRequest(format!("{u:?} is not a username")))
        })
        .collect::<Result<_, _>>()?;
    let url = super::credentials::login_url(&state, &headers);
    if form.action == "send" {
        let (job, _) = mail_credentials(
            &state.settings,
            &state.store,
            &state.queue,
            &lab,
            &to,
            &url,
            &s.user,
        )
        .await
        .map_err(refused)?;
        return Ok(match job {
            Some(id) => Redirect::to(&format!("/jobs/{id}")).into_response(),
            None => Redirect::to(&format!("/labs/{lab}/mail")).into_response(),
        });
    }
    let plan = plan_credentials(&state.settings, &state.store, &lab, &to, &url)
        .await
        .map_err(refused)?;
    let loaded = load_lab(&state, &lab).await?;
    Ok(Html(
        PreviewPage {
            nav: Nav::of(&s),
            lab: lab.to_string(),
            title: loaded.lab.title,
            to: form.to,
            plan,
        }
        .render()?,
    )
    .into_response())
}

/// `GET /labs/{lab}/mail`: the delivery log, newest first.
async fn log(
    State(state): State<AppState>,
    Master(s): Master,
    LabPath(lab): LabPath,
) -> Result<Html<String>, WebError> {
    let loaded = load_lab(&state, &lab).await?;
    Ok(Html(
        LogPage {
            nav: Nav::of(&s),
            lab: lab.to_string(),
            title: loaded.lab.title,
            mails: state.store.lab_mail(&lab, 500).await?,
            mail_on: state.settings.mail.enabled(),
        }
        .render()?,
    ))
}

async fn back_to_credentials(LabPath(lab): LabPath) -> Redirect {
    Redirect::to(&format!("/labs/{lab}/credentials#mail"))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/labs/{lab}/mail/credentials",
            post(credentials).get(back_to_credentials),
        )
        .route("/labs/{lab}/mail", get(log))
}
