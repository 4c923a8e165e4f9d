//! Logging in and out. Lab masters and staff are members of LDAP groups
//! named in the config (or the bootstrap admin of the config); students are
//! LDAP people who take part in a lab. Failed attempts are rate-limited per
//! username and per client address.

use super::session::{self, MaybeSession, Role, Session};
use super::{AppState, Nav, WebError};
use crate::ident::Username;
use crate::provision::ldap;
use askama::Template;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const LOGIN_COOKIE: &str = "pglab_login";
const WINDOW: Duration = Duration::from_secs(300);
/// Failed logins allowed per username in `WINDOW`.
const PER_USER: usize = 5;
/// Per client address: higher, since a classroom may share one NAT address.
const PER_ADDRESS: usize = 50;

/// Failed login attempts in the last `WINDOW`, per key.
#[derive(Default)]
pub struct Limiter(Mutex<HashMap<String, VecDeque<Instant>>>);

impl Limiter {
    /// Seconds to wait if any key is over its limit.
    pub fn blocked(&self, keys: &[(String, usize)]) -> Option<u64> {
        let mut map = self.0.lock().ok()?;
        let now = Instant::now();
        keys.iter().find_map(|(key, limit)| {
            let q = map.get_mut(key)?;
            while q.front().is_some_and(|t| now.duration_since(*t) > WINDOW) {
                q.pop_front();
            }
            (q.len() >= *limit).then(|| {
                q.front()
                    .map_or(1, |t| (WINDOW - now.duration_since(*t)).as_secs() + 1)
            })
        })
    }

    pub fn fail(&self, keys: &[(String, usize)]) {
        if let Ok(mut map) = self.0.lock() {
            for (key, _) in keys {
                map.entry(key.clone())
                    .or_default()
                    .push_back(Instant::now());
            }
        }
    }

    fn clear(&self, key: &str) {
        if let Ok(mut map) = self.0.lock() {
            map.remove(key);
        }
    }
}

/// The limiter keys of a password attempt by `user` from `addr`.
pub fn attempt_keys(user: &str, addr: SocketAddr) -> [(String, usize); 2] {
    [
        (format!("user:{}", user.trim().to_lowercase()), PER_USER),
        (format!("addr:{}", addr.ip()), PER_ADDRESS),
    ]
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    nav: Option<Nav>,
    next: String,
    token: String,
    username: String,
    error: Option<String>,
}

#[derive(serde::Deserialize)]
struct NextQuery {
    next: Option<String>,
}

/// Only local paths: a login must not bounce the browser to another site.
fn safe_next(next: Option<&str>) -> Option<String> {
    next.filter(|n| n.starts_with('/') && !n.starts_with("//") && !n.contains('\\'))
        .map(str::to_string)
}

fn login_page(state: &AppState, page: LoginPage) -> Result<Response, WebError> {
    let cookie = session::cookie(state, LOGIN_COOKIE, &page.token, 3600);
    Ok(([(header::SET_COOKIE, cookie)], Html(page.render()?)).into_response())
}

async fn show(
    State(state): State<AppState>,
    MaybeSession(current): MaybeSession,
    Query(q): Query<NextQuery>,
) -> Result<Response, WebError> {
    if let Some(s) = current {
        return Ok(Redirect::to(home(s.role)).into_response());
    }
    login_page(
        &state,
        LoginPage {
            nav: None,
            next: safe_next(q.next.as_deref()).unwrap_or_default(),
            token: session::random_token(),
            username: String::new(),
            error: None,
        },
    )
}

#[derive(serde::Deserialize)]
struct LoginForm {
    username: String,
    password: String,
    #[serde(default)]
    next: String,
    #[serde(default)]
    token: String,
}

pub fn home(role: Role) -> &'static str {
    match role {
        Role::Student => "/me",
        Role::Staff | Role::Master => "/labs",
    }
}

/// The role `username` gets with `password`, or why not.
async fn authenticate(
    state: &AppState,
    username: &str,
    password: &str,
) -> Result<Result<Role, &'static str>, WebError> {
    let web = &state.settings.web;
    let wrong = "Wrong username or password.";
    if !web.admin_user.is_empty()
        && username == web.admin_user
        && session::same(password, web.admin_password.expose())
    {
        return Ok(Ok(Role::Master));
    }
    let Ok(user) = Username::parse(username) else {
        return Ok(Err(wrong));
    };
    if !ldap::check_password(&state.settings.ldap, &user, password).await? {
        return Ok(Err(wrong));
    }
    let mut dir = ldap::Directory::connect(&state.settings.ldap).await?;
    let role = if dir.is_member(&web.master_group, &user).await? {
        Some(Role::Master)
    } else if dir.is_member(&web.staff_group, &user).await? {
        Some(Role::Staff)
    } else {
        None
    };
    dir.close().await;
    if let Some(role) = role {
        return Ok(Ok(role));
    }
    if state.store.labs_of_user(user.as_str()).await? > 0 {
        Ok(Ok(Role::Student))
    } else {
        Ok(Err("Your account takes part in no lab (yet)."))
    }
}

async fn submit(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, WebError> {
    let expected = session::read_cookie(&headers, LOGIN_COOKIE).unwrap_or("");
    if expected.is_empty() || !session::same(&form.token, expected) {
        return Err(WebError::Csrf);
    }
    let keys = attempt_keys(&form.username, addr);
    let user_key = keys[0].0.clone();
    if let Some(wait) = state.limiter.blocked(&keys) {
        tracing::warn!(client = %addr.ip(), "login refused: too many failed attempts");
        return Err(WebError::TooManyAttempts(wait));
    }
    match authenticate(&state, form.username.trim(), &form.password).await? {
        Ok(role) => {
            state.limiter.clear(&user_key);
            let s = Session::new(
                form.username.trim().to_string(),
                role,
                state.settings.web.session_hours,
            );
            tracing::info!(user = %s.user, role = s.role.label(), "login");
            let target = safe_next(Some(&form.next)).unwrap_or_else(|| home(role).to_string());
            let max_age = i64::from(state.settings.web.session_hours) * 3600;
            let mut response = Redirect::to(&target).into_response();
            let h = response.headers_mut();
            for c in [
                session::cookie(&state, session::COOKIE, &state.sessions.sign(&s), max_age),
                session::cookie(&state, LOGIN_COOKIE, "", 0),
            ] {
                if let Ok(v) = c.parse() {
                    h.append(header::SET_COOKIE, v);
                }
            }
            Ok(response)
        }
        Err(message) => {
            state.limiter.fail(&keys);
            tracing::info!(client = %addr.ip(), "failed login");
            let mut response = login_page(
                &state,
                LoginPage {
                    nav: None,
                    next: safe_next(Some(&form.next)).unwrap_or_default(),
                    token: session::random_token(),
                    username: form.username,
                    error: Some(message.to_string()),
                },
            )?;
            *response.status_mut() = axum::http::StatusCode::UNAUTHORIZED;
            Ok(response)
        }
    }
}

#[derive(serde::Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    pub csrf: String,
}

async fn logout(
    State(state): State<AppState>,
    s: Session,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, WebError> {
    s.check_csrf(&form.csrf)?;
    let cookie = session::cookie(&state, session::COOKIE, "", 0);
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response())
}

async fn index(MaybeSession(s): MaybeSession) -> Redirect {
    Redirect::to(s.map_or("/login", |s| home(s.role)))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/login", get(show).post(submit))
        .route("/logout", post(logout))
}
