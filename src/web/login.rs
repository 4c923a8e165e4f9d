//! Logging in and out. Lab masters and staff are members of LDAP groups
//! named in the config (or the bootstrap admin of the config); students are
//! LDAP people who take part in a lab. Failed attempts are rate-limited per
//! username and client address (see `limiter`).

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
use std::net::SocketAddr;

const LOGIN_COOKIE: &str = "pglab_login";

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

/// Only pglab's own paths: a login must not bounce the browser to another
/// site. A path is printable ASCII without spaces or backslashes, starts
/// with one `/`, and stays so once percent-decoded (browsers drop tabs and
/// newlines and read `\` as `/`, which would turn `/\evil` or `/%09/evil`
/// into `//evil`, another host).
pub fn safe_next(next: Option<&str>) -> Option<String> {
    fn local(s: &str, space: bool) -> bool {
        s.starts_with('/')
            && !s.starts_with("//")
            && s.bytes()
                .all(|b| (b.is_ascii_graphic() || space && b == b' ') && b != b'\\')
    }
    fn decoded(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            match (b[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
                (b'%', Some(v)) => {
                    out.push(v);
                    i += 3;
                }
                (c, _) => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    next.filter(|n| n.len() <= 2000 && local(n, false) && local(&decoded(n), true))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn next_stays_on_pglab() {
        for ok in ["/", "/labs/demo", "/me?tab=1#x", "/labs/a%20b"] {
            assert_eq!(safe_next(Some(ok)).as_deref(), Some(ok), "{ok}");
        }
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "/%5Cevil.example",
            "/%2F/evil.example",
            "/%09/evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "https://evil.example",
            "evil.example",
            "/ /evil",
            "/%00",
            "",
        ] {
            assert_eq!(safe_next(Some(bad)), None, "{bad:?}");
        }
    }
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

/// The role `username` holds as a lab master or staff, if any: the
/// bootstrap admin is a lab master; others by their LDAP groups.
pub async fn staff_role(state: &AppState, username: &str) -> Result<Option<Role>, WebError> {
    let web = &state.settings.web;
    if !web.admin_user.is_empty() && username == web.admin_user {
        return Ok(Some(Role::Master));
    }
    match Username::parse(username) {
        Ok(user) => ldap_role(state, &user).await,
        Err(_) => Ok(None),
    }
}

/// The role `user` holds by their LDAP groups, if any.
async fn ldap_role(state: &AppState, user: &Username) -> Result<Option<Role>, WebError> {
    let web = &state.settings.web;
    let mut dir = ldap::Directory::connect(&state.settings.ldap).await?;
    let role = if dir.is_member(&web.master_group, user).await? {
        Some(Role::Master)
    } else if dir.is_member(&web.staff_group, user).await? {
        Some(Role::Staff)
    } else {
        None
    };
    dir.close().await;
    Ok(role)
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
    if let Some(role) = ldap_role(state, &user).await? {
        return Ok(Ok(role));
    }
    if state.store.labs_of_user(&user).await? > 0 {
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
    let attempt = session::attempt(&state, &headers, addr, &form.username);
    let counted = state.limiter.count(&state.store, &attempt).await?;
    match authenticate(&state, form.username.trim(), &form.password).await? {
        Ok(role) => {
            state.limiter.forgive(&state.store, counted).await;
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
                session::device_cookie(&state, &s.user),
            ] {
                if let Ok(v) = c.parse() {
                    h.append(header::SET_COOKIE, v);
                }
            }
            Ok(response)
        }
        Err(message) => {
            // The attempt stays counted.
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
