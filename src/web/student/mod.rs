//! A student's own page: their database, the `psql` command, their progress
//! per task with the scoring engine's reasons, and the password change.

mod password;
mod progress;

use super::session::Student;
use super::{AppState, Nav, WebError};
use crate::ident::LabId;
use askama::Template;
use axum::extract::State;
use axum::response::{Html, Redirect};
use axum::routing::{get, post};
use axum::Router;
use progress::{labs_of, StudentLab};

#[derive(Template)]
#[template(path = "student.html")]
struct StudentPage {
    nav: Option<Nav>,
    user: String,
    labs: Vec<StudentLab>,
    min_length: usize,
    message: Option<String>,
    error: Option<String>,
}

/// What the page says about the form just sent, next to that form.
pub(super) enum Feedback {
    Nothing,
    /// A message at the top (after a redirect: see `Done`).
    Done(&'static str),
    /// The password form's error.
    Password(String),
    /// An upload's error, in that lab's hand-in section.
    Upload {
        lab: LabId,
        error: String,
    },
    /// Why the lab's database could not be reset, next to its button.
    Reset {
        lab: LabId,
        error: String,
    },
}

pub(super) async fn render(
    state: &AppState,
    student: &Student,
    feedback: Feedback,
) -> Result<Html<String>, WebError> {
    let mut labs = labs_of(state, &student.user).await?;
    let (mut message, mut error) = (None, None);
    match feedback {
        Feedback::Nothing => {}
        Feedback::Done(m) => message = Some(m.to_string()),
        Feedback::Password(e) => error = Some(e),
        Feedback::Upload { lab, error } => {
            if let Some(l) = labs.iter_mut().find(|l| l.id == lab.as_str()) {
                l.upload_error = Some(error);
            }
        }
        Feedback::Reset { lab, error } => {
            if let Some(l) = labs.iter_mut().find(|l| l.id == lab.as_str()) {
                l.reset_error = Some(error);
            }
        }
    }
    Ok(Html(
        StudentPage {
            nav: Nav::of(&student.session),
            user: student.user.to_string(),
            labs,
            min_length: state.settings.web.min_password_length,
            message,
            error,
        }
        .render()?,
    ))
}

/// `?done=` after a form that succeeded (POST, then redirect, then GET):
/// a fixed message, never text from the address.
#[derive(serde::Deserialize)]
struct Done {
    done: Option<String>,
}

async fn me(
    State(state): State<AppState>,
    student: Student,
    axum::extract::Query(q): axum::extract::Query<Done>,
) -> Result<Html<String>, WebError> {
    let feedback = match q.done.as_deref() {
        Some("password") => {
            Feedback::Done("Your password was changed. Use the new one for psql and for this site.")
        }
        Some("reset") => Feedback::Done(
            "Your database is being reset to the lab's starter: it is back within a minute (your sessions in it were ended). Your work before the reset is kept for your lab master.",
        ),
        _ => Feedback::Nothing,
    };
    render(&state, &student, feedback).await
}

/// `POST /me/labs/{lab}/reset`: the student's own database back to the
/// starter (a job; the page says so after the redirect).
async fn reset(
    State(state): State<AppState>,
    student: Student,
    crate::web::labs::LabPath(lab): crate::web::labs::LabPath,
    axum::Form(form): axum::Form<crate::web::login::CsrfOnly>,
) -> Result<axum::response::Response, WebError> {
    use axum::response::IntoResponse;
    student.session.check_csrf(&form.csrf)?;
    let m = progress::membership(&state, &student.user, &lab).await?;
    let by = student.user.as_str();
    use crate::app::participants::{start_reset, ResetBy, StartResetError};
    match start_reset(
        &state.store,
        &state.queue,
        &lab,
        &m.database,
        by,
        ResetBy::Participant,
    )
    .await
    {
        Ok(_) => Ok(Redirect::to("/me?done=reset").into_response()),
        Err(StartResetError::Store(e)) => Err(e.into()),
        Err(refused) => {
            let error = refused.to_string();
            let page = render(&state, &student, Feedback::Reset { lab, error }).await?;
            Ok((axum::http::StatusCode::CONFLICT, page).into_response())
        }
    }
}

/// A bookmark or a refresh of the form's address.
async fn back_to_me() -> Redirect {
    Redirect::to("/me#password")
}

/// `GET /me/labs/{lab}/my-data.json`: the student's own data in the lab,
/// as a download.
async fn my_data(
    State(state): State<AppState>,
    student: Student,
    crate::web::labs::LabPath(lab): crate::web::labs::LabPath,
) -> Result<axum::response::Response, WebError> {
    use axum::http::header;
    use axum::response::IntoResponse;
    let data = crate::app::exports::participant_data(&state.store, &lab, &student.user)
        .await?
        .ok_or(WebError::NotFound)?;
    let body = serde_json::to_vec_pretty(&data).map_err(|e| WebError::BadRequest(e.to_string()))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{lab}-{}.json\"", student.user),
            ),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        body,
    )
        .into_response())
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/me", get(me))
        .route("/me/labs/{lab}/progress", get(progress::fragment))
        .route("/me/labs/{lab}/reset", post(reset).get(back_to_me))
        .route("/me/labs/{lab}/my-data.json", get(my_data))
        .route(
            "/me/password",
            post(password::change_password).get(back_to_me),
        )
}
