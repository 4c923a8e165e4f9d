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
        _ => Feedback::Nothing,
    };
    render(&state, &student, feedback).await
}

/// A bookmark or a refresh of the form's address.
async fn back_to_me() -> Redirect {
    Redirect::to("/me#password")
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/me", get(me))
        .route("/me/labs/{lab}/progress", get(progress::fragment))
        .route(
            "/me/password",
            post(password::change_password).get(back_to_me),
        )
}
