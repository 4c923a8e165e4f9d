//! Mail: credentials by mail (or a dry run), and a lab's delivery log.

use super::auth::{Allowed, MasterWrite};
use super::model::{
    Mail, MailCredentialsRequest, MailPage, MailPreview, MailQueued, MailRecipient, MailSkipped,
    PageQuery,
};
use super::{existing_lab, id_key, links, page, Body, Problem, Who, P, Q};
use crate::app::mail::{mail_credentials, plan_credentials, MailError};
use crate::control::TokenScope;
use crate::ident::Username;
use crate::web::session::Role;
use crate::web::{AppState, WebError};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Mail the credentials.
///
/// Each participant (all not mailed yet, or those in `to`) gets one
/// message with their username, initial password, `psql` command and the
/// web address; a password is mailed once (reset it to mail a new one).
/// With `dry_run`, nothing is sent: who would get what, and the first
/// message.
///
/// Who: lab master, scope write.
#[utoipa::path(post, path = "/api/v1/labs/{lab}/mail/credentials", operation_id = "mailCredentials", tag = "mail",
    params(("lab" = String, Path, description = "The lab's id")), request_body = MailCredentialsRequest,
    responses((status = 202, body = MailQueued, description = "Queued as a job", headers(("Location" = String, description = "The job"))),
        (status = 200, body = MailQueued, description = "A dry run, or nobody to mail")))]
async fn credentials(
    State(state): State<AppState>,
    Allowed(caller, base, _): Allowed<MasterWrite>,
    P(lab): P<String>,
    Body(req): Body<MailCredentialsRequest, 65536>,
) -> Result<Response, Problem> {
    let id = existing_lab(&state, &lab).await?;
    let to: Vec<Username> = req
        .to
        .iter()
        .map(|u| {
            Username::parse(u)
                .map_err(|_| Problem::bad_request("to", format!("{u:?} is not a username")))
        })
        .collect::<Result<_, _>>()?;
    let login = format!("{base}/login");
    let refused = |e: MailError| -> Problem {
        match e {
            MailError::Store(e) => e.into(),
            MailError::NoSuchLab => Problem::not_found(),
            other => WebError::Conflict(other.to_string()).into(),
        }
    };
    let (job, plan) = if req.dry_run {
        let plan = plan_credentials(&state.settings, &state.store, &id, &to, &login)
            .await
            .map_err(refused)?;
        (None, plan)
    } else {
        mail_credentials(
            &state.settings,
            &state.store,
            &state.queue,
            &id,
            &to,
            &login,
            &caller.name(),
        )
        .await
        .map_err(refused)?
    };
    let body = queued(&base, &id, job, plan, req.dry_run);
    Ok(match job {
        Some(_) => {
            let location = body.links.get("job");
            (
                StatusCode::ACCEPTED,
                [(header::LOCATION, location)],
                Json(body),
            )
                .into_response()
        }
        None => Json(body).into_response(),
    })
}

/// The answer to a mail request.
fn queued(
    base: &str,
    id: &crate::ident::LabId,
    job: Option<i64>,
    plan: crate::app::mail::CredentialsPlan,
    dry_run: bool,
) -> MailQueued {
    let mut pairs = vec![("log", format!("/api/v1/labs/{id}/mail"))];
    if let Some(j) = job {
        pairs.push(("job", format!("/api/v1/jobs/{j}")));
    }
    MailQueued {
        job,
        recipients: plan
            .recipients
            .into_iter()
            .map(|r| MailRecipient {
                username: r.username,
                name: r.name,
                email: r.email,
            })
            .collect(),
        skipped: plan
            .skipped
            .into_iter()
            .map(|s| MailSkipped {
                username: s.username,
                why: s.why,
            })
            .collect(),
        preview: plan.preview.filter(|_| dry_run).map(|m| MailPreview {
            subject: m.subject,
            text: m.text,
        }),
        links: links(base, &pairs),
    }
}

/// Read the delivery log.
///
/// Every message made for the lab, newest first: to whom, what, status,
/// attempts and the server's answer.
///
/// Who: lab master, scope read.
#[utoipa::path(get, path = "/api/v1/labs/{lab}/mail", operation_id = "listMail", tag = "mail",
    params(("lab" = String, Path, description = "The lab's id"), PageQuery),
    responses((status = 200, body = MailPage)))]
async fn log(
    State(state): State<AppState>,
    Who(caller, _): Who,
    P(lab): P<String>,
    Q(q): Q<PageQuery>,
) -> Result<Json<MailPage>, Problem> {
    caller.staff(Role::Master, TokenScope::Read)?;
    let id = existing_lab(&state, &lab).await?;
    let all = state.store.lab_mail(&id, 100_000).await?;
    let (rows, next_cursor) = page(all, |m| id_key(i64::MAX - m.id), &q);
    let items = rows
        .into_iter()
        .map(|m| Mail {
            id: m.id,
            job: m.job,
            kind: m.kind.to_string(),
            username: m.username,
            to_name: m.to_name,
            to_address: m.to_address,
            subject: m.subject,
            status: m.status.to_string(),
            attempts: m.attempts,
            answer: m.answer,
            updated_at: m.updated_at,
            sent_at: m.sent_at,
        })
        .collect();
    Ok(Json(MailPage { items, next_cursor }))
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(credentials))
        .routes(routes!(log))
}
