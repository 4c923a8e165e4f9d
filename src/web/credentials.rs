//! Initial passwords of a lab (lab masters only): printable slips, a CSV
//! download, and resetting one participant's password.

use super::labs::{load_lab, LabUserPath};
use super::login::CsrfOnly;
use super::{AppState, Nav, WebError};
use crate::app::psql_command;
use crate::ident::LabId;
use crate::web::labs::LabPath;
use crate::web::session::Master;
use askama::Template;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};

pub struct Slip {
    pub username: String,
    pub name: String,
    pub email: String,
    pub database: String,
    pub password: Option<String>,
    pub psql: String,
    /// When the password was mailed (it is mailed once).
    pub mailed: Option<String>,
}

#[derive(Template)]
#[template(path = "credentials.html")]
struct CredentialsPage {
    nav: Option<Nav>,
    lab: String,
    title: String,
    slips: Vec<Slip>,
    login_url: String,
    /// Whether an SMTP server is configured.
    mail_on: bool,
    /// Participants whose password can be mailed now.
    mailable: usize,
}

async fn slips(state: &AppState, lab: &LabId) -> Result<Vec<Slip>, WebError> {
    let rows = state.store.credentials(lab).await?;
    Ok(rows
        .into_iter()
        .map(|c| {
            let psql = state
                .settings
                .server(&c.server)
                .map_or_else(String::new, |server| {
                    psql_command(server, &c.username, &c.database)
                });
            Slip {
                psql,
                username: c.username.to_string(),
                name: c.name,
                email: c.email,
                database: c.database.to_string(),
                password: c.initial_password,
                mailed: c.mailed_at.map(crate::app::snapshots::when),
            }
        })
        .collect())
}

/// The address students log in at.
pub(super) fn login_url(state: &AppState, headers: &HeaderMap) -> String {
    format!("{}/login", super::api_v1::base_url(state, headers))
}

async fn page(
    State(state): State<AppState>,
    Master(s): Master,
    headers: HeaderMap,
    LabPath(lab): LabPath,
) -> Result<Html<String>, WebError> {
    let loaded = load_lab(&state, &lab).await?;
    Ok(Html(
        CredentialsPage {
            nav: Nav::of(&s),
            lab: lab.to_string(),
            title: loaded.lab.title,
            mailable: crate::app::mail::plan_credentials(
                &state.settings,
                &state.store,
                &lab,
                &[],
                "",
            )
            .await
            .map_or(0, |p| p.recipients.len()),
            slips: slips(&state, &lab).await?,
            login_url: login_url(&state, &headers),
            mail_on: state.settings.mail.enabled(),
        }
        .render()?,
    ))
}

async fn csv(
    State(state): State<AppState>,
    Master(s): Master,
    headers: HeaderMap,
    LabPath(lab): LabPath,
) -> Result<Response, WebError> {
    // UTF-8 with a byte order mark: spreadsheets then read accented names
    // right instead of guessing a legacy encoding.
    let mut w = csv::Writer::from_writer("\u{feff}".as_bytes().to_vec());
    let web = login_url(&state, &headers);
    let _ = w.write_record([
        "username",
        "name",
        "email",
        "database",
        "initial_password",
        "psql",
        "web",
    ]);
    for slip in slips(&state, &lab).await? {
        let password = slip.password.unwrap_or_default();
        let _ = w.write_record([
            &slip.username,
            // A cell starting with = + - @ would be a formula in a spreadsheet.
            &crate::export::neutralize(&slip.name),
            &crate::export::neutralize(&slip.email),
            &slip.database,
            &password,
            &slip.psql,
            &web,
        ]);
    }
    let body = w.into_inner().unwrap_or_default();
    tracing::info!(%lab, user = %s.user, "credentials downloaded");
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{lab}-credentials.csv\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        body,
    )
        .into_response())
}

async fn reset(
    State(state): State<AppState>,
    Master(s): Master,
    LabUserPath(lab, user): LabUserPath,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, WebError> {
    s.check_csrf(&form.csrf)?;
    if !crate::app::participants::reset_password(&state.settings, &state.store, &lab, &user).await?
    {
        return Err(WebError::NotFound);
    }
    tracing::info!(%lab, %user, by = %s.user, "password reset");
    Ok(Redirect::to(&format!("/labs/{lab}/credentials#slip-{user}")).into_response())
}

/// A refresh of the reset's address: back to the slip (a reset is only
/// made by the button).
async fn back_to_slip(LabUserPath(lab, user): LabUserPath) -> Redirect {
    Redirect::to(&format!("/labs/{lab}/credentials#slip-{user}"))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/labs/{lab}/credentials", get(page))
        .route("/labs/{lab}/credentials.csv", get(csv))
        .route(
            "/labs/{lab}/participants/{user}/reset",
            post(reset).get(back_to_slip),
        )
}
