//! A student's own page: their database, the `psql` command, their progress
//! per task with the scoring engine's reasons, and the password change.

use super::session::Student;
use super::{AppState, Nav, WebError};
use crate::app::psql_command;
use crate::ident::{LabId, PgName, Username};
use crate::provision::ldap;
use crate::scoring::TaskBoard;
use askama::Template;
use axum::extract::{ConnectInfo, State};
use axum::response::Html;
use axum::routing::{get, post};
use axum::{Form, Router};
use std::net::SocketAddr;

pub struct TaskRow {
    pub title: String,
    pub points: u32,
    pub state: Option<TaskBoard>,
}

pub struct StudentLab {
    pub id: String,
    pub title: String,
    pub database: String,
    pub psql: String,
    pub tasks: Vec<TaskRow>,
    pub points: u32,
    pub max_points: u32,
    /// Why the database could not be scored in the latest round.
    pub error: Option<String>,
    pub scored: bool,
    /// Dump uploads, when the lab takes them.
    pub handin: Option<Handin>,
}

/// What the student page shows of a lab's `submissions:`.
pub struct Handin {
    pub formats: String,
    pub max_size: String,
    pub deadline: Option<String>,
    pub late_policy: &'static str,
    pub replace: bool,
    pub past: Vec<crate::control::SubmissionRecord>,
}

async fn handin(
    state: &AppState,
    lab: &LabId,
    database: &PgName,
) -> Result<Option<Handin>, WebError> {
    let Some(loaded) = state.store.lab(lab).await? else {
        return Ok(None);
    };
    let Some(rules) = loaded.lab.submissions.clone() else {
        return Ok(None);
    };
    Ok(Some(Handin {
        formats: rules
            .formats
            .iter()
            .map(|f| format!("{} ({})", f.name(), f.how()))
            .collect::<Vec<_>>()
            .join("; "),
        max_size: crate::app::human_size(rules.max_bytes),
        deadline: rules
            .deadline(loaded.lab.deadline)
            .map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string()),
        late_policy: match rules.late {
            crate::lab::submissions::LatePolicy::Reject => "uploads after it are refused",
            crate::lab::submissions::LatePolicy::AcceptFlagged => {
                "uploads after it are accepted and marked late"
            }
        },
        replace: rules.replace,
        past: state.store.database_submissions(lab, database).await?,
    }))
}

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

async fn labs_of(state: &AppState, user: &Username) -> Result<Vec<StudentLab>, WebError> {
    let snapshot = state.board.get();
    let memberships = state.store.memberships(user).await?;
    let mut handins = vec![];
    for m in &memberships {
        handins.push(handin(state, &m.lab, &m.database).await?);
    }
    Ok(memberships
        .into_iter()
        .zip(handins)
        .map(|(m, handin)| {
            let board = snapshot.labs.iter().find(|l| l.id == m.lab.as_str());
            let me =
                board.and_then(|b| b.participants.iter().find(|p| p.username == user.as_str()));
            let psql = state
                .settings
                .server(&m.server)
                .map_or_else(String::new, |server| {
                    psql_command(server, user, &m.database)
                });
            let tasks = board.map_or_else(Vec::new, |b| {
                b.tasks
                    .iter()
                    .enumerate()
                    .map(|(i, t)| TaskRow {
                        title: t.title.clone(),
                        points: t.points,
                        state: me
                            .and_then(|p| p.tasks.as_ref())
                            .and_then(|ts| ts.get(i).cloned()),
                    })
                    .collect()
            });
            StudentLab {
                id: m.lab.to_string(),
                title: m.title,
                database: m.database.to_string(),
                psql,
                points: me.map_or(0, |p| p.points()),
                max_points: board.map_or(0, |b| b.max_points()),
                error: me.and_then(|p| p.error.clone()),
                scored: me.is_some_and(|p| p.tasks.is_some()),
                tasks,
                handin,
            }
        })
        .collect())
}

pub(super) async fn render(
    state: &AppState,
    student: &Student,
    message: Option<String>,
    error: Option<String>,
) -> Result<Html<String>, WebError> {
    Ok(Html(
        StudentPage {
            nav: Nav::of(&student.session),
            user: student.user.to_string(),
            labs: labs_of(state, &student.user).await?,
            min_length: state.settings.web.min_password_length,
            message,
            error,
        }
        .render()?,
    ))
}

async fn me(State(state): State<AppState>, student: Student) -> Result<Html<String>, WebError> {
    render(&state, &student, None, None).await
}

#[derive(serde::Deserialize)]
struct PasswordForm {
    #[serde(default)]
    csrf: String,
    current: String,
    new: String,
    confirm: String,
}

async fn change_password(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: axum::http::HeaderMap,
    student: Student,
    Form(form): Form<PasswordForm>,
) -> Result<Html<String>, WebError> {
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
        return render(&state, s, None, Some(p)).await;
    }
    let counted = state
        .limiter
        .count(&super::limiter::Attempt {
            user: user.as_str(),
            addr: super::session::client_ip(&state, &headers, addr),
            known_device: false,
        })
        .map_err(WebError::TooManyAttempts)?;
    if !ldap::change_own_password(&state.settings.ldap, user, &form.current, &form.new).await? {
        return render(
            &state,
            s,
            None,
            Some("The current password is wrong.".into()),
        )
        .await;
    }
    state.limiter.forgive(counted);
    // The initial password no longer works: pglab stops keeping it.
    state.store.forget_initial_password(user).await?;
    tracing::info!(%user, "password changed by its owner");
    render(
        &state,
        s,
        Some("Your password was changed. Use the new one for psql and for this site.".into()),
        None,
    )
    .await
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/me", get(me))
        .route("/me/password", post(change_password))
}
