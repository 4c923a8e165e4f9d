//! A lab master's API tokens page: make one (shown once), see them, revoke
//! one. The same tokens as `pglab token`.

use super::session::Master;
use super::{AppState, Nav, WebError};
use crate::control::{TokenRecord, TokenScope};
use askama::Template;
use axum::extract::{Path, State};
use axum::response::{Html, Redirect};
use axum::routing::{get, post};
use axum::{Form, Router};

#[derive(Template)]
#[template(path = "tokens.html")]
struct TokensPage {
    nav: Option<Nav>,
    tokens: Vec<(TokenRecord, &'static str)>,
    /// A token just made: shown this once.
    created: Option<(TokenRecord, String)>,
    error: Option<String>,
}

async fn render(
    state: &AppState,
    s: &super::session::Session,
    created: Option<(TokenRecord, String)>,
    error: Option<String>,
) -> Result<Html<String>, WebError> {
    let now = chrono::Utc::now();
    let tokens = state
        .store
        .tokens(Some(&s.user))
        .await?
        .into_iter()
        .map(|t| {
            let state = if t.revoked_at.is_some() {
                "revoked"
            } else if !t.usable(now) {
                "expired"
            } else {
                "valid"
            };
            (t, state)
        })
        .collect();
    Ok(Html(
        TokensPage {
            nav: Nav::of(s),
            tokens,
            created,
            error,
        }
        .render()?,
    ))
}

async fn page(State(state): State<AppState>, Master(s): Master) -> Result<Html<String>, WebError> {
    render(&state, &s, None, None).await
}

#[derive(serde::Deserialize)]
struct CreateForm {
    csrf: String,
    name: String,
    scope: String,
    #[serde(default)]
    days: String,
}

/// `POST /tokens`: the new token on the page it answers with (once; a
/// redirect could not show it again).
async fn create(
    State(state): State<AppState>,
    Master(s): Master,
    Form(form): Form<CreateForm>,
) -> Result<Html<String>, WebError> {
    s.check_csrf(&form.csrf)?;
    let name = form.name.trim();
    let scope = TokenScope::parse(&form.scope);
    let days: Option<i64> = match form.days.trim() {
        "" => None,
        d => match d.parse::<i64>() {
            Ok(n) if (1..=3650).contains(&n) => Some(n),
            _ => {
                return render(
                    &state,
                    &s,
                    None,
                    Some("Days: a whole number from 1 to 3650, or empty.".into()),
                )
                .await
            }
        },
    };
    let (Some(scope), false) = (scope, name.is_empty() || name.len() > 100) else {
        return render(
            &state,
            &s,
            None,
            Some("Give the token a name (up to 100 characters) and a scope.".into()),
        )
        .await;
    };
    let expires = days.map(|d| chrono::Utc::now() + chrono::Duration::days(d));
    let made = crate::app::tokens::create(&state.store, name, &s.user, scope, expires).await?;
    render(&state, &s, Some(made), None).await
}

#[derive(serde::Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn revoke(
    State(state): State<AppState>,
    Master(s): Master,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Redirect, WebError> {
    s.check_csrf(&form.csrf)?;
    let id: i64 = id.parse().map_err(|_| WebError::NotFound)?;
    if !state.store.revoke_token(id, Some(&s.user)).await? {
        return Err(WebError::NotFound);
    }
    Ok(Redirect::to("/tokens"))
}

async fn back() -> Redirect {
    Redirect::to("/tokens")
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/tokens", get(page).post(create))
        .route("/tokens/{id}/revoke", post(revoke).get(back))
}
