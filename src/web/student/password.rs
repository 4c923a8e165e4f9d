//! A student changes their own password (LDAP checks the current one).

use super::{render, Feedback};
use crate::provision::ldap;
use crate::web::session::Student;
use crate::web::{AppState, WebError};
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use std::net::SocketAddr;

#[derive(serde::Deserialize)]
pub(super) struct PasswordForm {
    #[serde(default)]
    csrf: String,
    current: String,
    new: String,
    confirm: String,
}

pub(super) async fn change_password(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: axum::http::HeaderMap,
    student: Student,
    Form(form): Form<PasswordForm>,
) -> Result<Response, WebError> {
    student.session.check_csrf(&form.csrf)?;
    let (s, user) = (&student, &student.user);
    let min = state.settings.web.min_password_length;
    let problem = if form.new != form.confirm {
        Some("The new password and its confirmation differ.".to_string())
    } else if form.new.chars().count() < min {
        Some(format!("The new password needs at least {min} characters."))
    } else if form.new == form.current {
        Some("The new password must differ from the current one.".to_string())
    } else if form.new.chars().any(char::is_control) {
        Some("The new password cannot contain control characters.".to_string())
    } else {
        None
    };
    if let Some(p) = problem {
        return invalid(render(&state, s, Feedback::Password(p)).await?);
    }
    let attempt = crate::web::limiter::Attempt {
        user: user.as_str(),
        addr: crate::web::session::client_ip(&state, &headers, addr),
        known_device: false,
    };
    let counted = state.limiter.count(&state.store, &attempt).await?;
    if !ldap::change_own_password(&state.settings.ldap, user, &form.current, &form.new).await? {
        let wrong = Feedback::Password("The current password is wrong.".into());
        return invalid(render(&state, s, wrong).await?);
    }
    state.limiter.forgive(&state.store, counted).await;
    // The initial password no longer works: pglab stops keeping it.
    state.store.forget_initial_password(user).await?;
    tracing::info!(%user, "password changed by its owner");
    Ok(Redirect::to("/me?done=password#password").into_response())
}

/// The page again with what was wrong with the form (422).
fn invalid(page: Html<String>) -> Result<Response, WebError> {
    Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
}
