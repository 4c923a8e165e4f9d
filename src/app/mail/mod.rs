//! Mail: messages queued as a job (one message per item, in order), sent
//! through the configured SMTP server at its pace, retried with back-off on
//! temporary failures, failed for good on permanent ones with the server's
//! answer, and recorded as sent before the next one goes. A message that
//! was at the server when pglab stopped is marked uncertain, never sent
//! twice by itself. A participant's initial password is mailed once: it is
//! read when the message is made, never stored with it, and mailing it
//! again takes a reset (a new password).

use crate::control::{
    Claim, CredentialRecord, JobKind, JobRecord, MailKind, MailRecord, NewJob, NewMail, Queueing,
    Store, StoreError,
};
use crate::ident::{LabId, Username};
use crate::lab::mail::{MailRules, MailTemplate};
use crate::mail::{Mailer, Rendered, SendError};
use crate::settings::Settings;
use std::time::Duration;

/// Longest wait between two attempts of a message.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// The web address mails point at when no request gave one:
/// `web.public_url`, or the address pglab listens on.
pub fn public_base(settings: &Settings) -> String {
    settings
        .web
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", settings.listen))
}

/// Longest text of one restore problem in a hand-in's result.
const ISSUE_CHARS: usize = 400;
/// Restore problems named in a hand-in's result.
const ISSUES_MAILED: usize = 3;
/// Hand-in results mailed to a database's people an hour at most.
const HAND_IN_MAILS_PER_HOUR: i64 = 10;

/// Why mail could not be queued.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("no SMTP server is configured: set mail.host and mail.from in the config")]
    NotConfigured,
    #[error("no such lab")]
    NoSuchLab,
    #[error("too many mail jobs are waiting; try again when they are done")]
    Busy,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A credentials message that goes (or would go).
#[derive(Debug, Clone)]
pub struct Recipient {
    pub username: String,
    pub name: String,
    pub email: String,
    /// The password the message is for (when it was set).
    pub password_set: Option<i64>,
}

/// A participant who gets no message, and why.
#[derive(Debug, Clone)]
pub struct Skipped {
    pub username: String,
    pub why: String,
}

/// Who gets their credentials, who does not and why, and the first
/// message as it would be sent.
pub struct CredentialsPlan {
    pub recipients: Vec<Recipient>,
    pub skipped: Vec<Skipped>,
    pub preview: Option<Rendered>,
}

fn skip(c: &CredentialRecord) -> Option<String> {
    if c.email.trim().is_empty() {
        return Some("no e-mail address in the participants list".into());
    }
    if let Some(at) = c.mailed_at {
        return Some(format!(
            "already mailed {}: a password is mailed once; reset it to mail a new one",
            super::snapshots::when(at)
        ));
    }
    if c.initial_password.is_none() {
        return Some(
            "no initial password kept (the participant changed it, or it was forgotten): reset it to mail a new one"
                .into(),
        );
    }
    None
}

/// The credentials message of `c` as it is sent now.
/// The subject a message is queued with: the lab's own template's, with
/// what is known when it is queued, or pglab's.
fn subject_for(
    rules: &MailRules,
    kind: &str,
    values: &[(&str, String)],
    builtin: impl FnOnce() -> String,
) -> String {
    match rules.templates.get(kind) {
        Some(t) => {
            crate::mail::from_template(
                &MailTemplate {
                    subject: t.subject.clone(),
                    text: String::new(),
                    html: None,
                },
                None,
                values,
            )
            .subject
        }
        None => builtin(),
    }
}

/// The lab's own template of `kind`, filled, if it has one.
fn own(rules: &MailRules, kind: &str, values: &[(&str, String)]) -> Option<Rendered> {
    rules
        .templates
        .get(kind)
        .map(|t| crate::mail::from_template(t, rules.language.as_deref(), values))
}

fn credentials_message(
    settings: &Settings,
    lab: &crate::lab::Lab,
    c: &CredentialRecord,
    password: &str,
    login_url: &str,
) -> Result<Rendered, String> {
    let psql = settings.server(&c.server).map_or_else(String::new, |s| {
        super::psql_command(s, &c.username, &c.database)
    });
    let lab_title = lab.title.as_str();
    let values = [
        ("name", c.name.clone()),
        ("lab", lab.title.clone()),
        ("username", c.username.to_string()),
        ("password", password.to_string()),
        ("psql", psql.clone()),
        ("login_url", login_url.to_string()),
    ];
    if let Some(m) = own(&lab.mail, "credentials", &values) {
        return Ok(m);
    }
    crate::mail::credentials(&crate::mail::Credentials {
        name: &c.name,
        username: c.username.as_str(),
        password,
        lab_title,
        psql: &psql,
        login_url,
    })
    .map_err(|e| format!("the message cannot be made: {e}"))
}

/// Who would get their credentials if `to` (empty: every participant) were
/// mailed now; nothing is sent or changed.
pub async fn plan_credentials(
    settings: &Settings,
    store: &Store,
    lab: &LabId,
    to: &[Username],
    login_url: &str,
) -> Result<CredentialsPlan, MailError> {
    Ok(plan_of(settings, store, lab, to, login_url).await?.1)
}

/// The lab as stored, and the plan for it.
async fn plan_of(
    settings: &Settings,
    store: &Store,
    lab: &LabId,
    to: &[Username],
    login_url: &str,
) -> Result<(crate::lab::Lab, CredentialsPlan), MailError> {
    let loaded = store.lab(lab).await?.ok_or(MailError::NoSuchLab)?;
    let all = store.credentials(lab).await?;
    let mut plan = CredentialsPlan {
        recipients: vec![],
        skipped: vec![],
        preview: None,
    };
    for user in to {
        if !all.iter().any(|c| &c.username == user) {
            plan.skipped.push(Skipped {
                username: user.to_string(),
                why: "takes no part in this lab".into(),
            });
        }
    }
    for c in all
        .iter()
        .filter(|c| to.is_empty() || to.contains(&c.username))
    {
        if let Some(why) = skip(c) {
            plan.skipped.push(Skipped {
                username: c.username.to_string(),
                why,
            });
            continue;
        }
        if plan.preview.is_none() {
            let password = c.initial_password.as_deref().unwrap_or_default();
            plan.preview = credentials_message(settings, &loaded.lab, c, password, login_url).ok();
        }
        plan.recipients.push(Recipient {
            username: c.username.to_string(),
            name: c.name.clone(),
            email: c.email.trim().to_string(),
            password_set: c.password_set,
        });
    }
    Ok((loaded.lab, plan))
}

/// Queues the credentials of `to` (empty: every participant not mailed
/// yet) as one mail job; the job (`None` when nobody is to get one) and the
/// plan it followed.
pub async fn mail_credentials(
    settings: &Settings,
    store: &Store,
    queue: &super::Queue,
    lab: &LabId,
    to: &[Username],
    login_url: &str,
    by: &str,
) -> Result<(Option<i64>, CredentialsPlan), MailError> {
    if !settings.mail.enabled() {
        return Err(MailError::NotConfigured);
    }
    let (spec, plan) = plan_of(settings, store, lab, to, login_url).await?;
    if plan.recipients.is_empty() {
        return Ok((None, plan));
    }
    let subjects: Vec<String> = plan
        .recipients
        .iter()
        .map(|r| {
            let values = [
                ("lab", spec.title.clone()),
                ("name", r.name.clone()),
                ("username", r.username.clone()),
            ];
            subject_for(&spec.mail, "credentials", &values, || {
                crate::mail::credentials_subject(&spec.title)
            })
        })
        .collect();
    let mails: Vec<NewMail<'_>> = plan
        .recipients
        .iter()
        .zip(&subjects)
        .map(|(r, subject)| NewMail {
            kind: MailKind::Credentials,
            username: Some(&r.username),
            about: r.password_set,
            to_name: &r.name,
            to_address: &r.email,
            subject,
        })
        .collect();
    let job = NewJob {
        kind: JobKind::Mail,
        lab,
        lock_key: "mail".into(),
        title: format!("Credentials of lab {lab} by mail"),
        started_by: by,
        params: serde_json::json!({ "login_url": login_url }),
        max_attempts: 5,
    };
    let (id, queued) = store
        .queue_mail(&job, &mails, Queueing::ClaimPasswords)
        .await?
        .ok_or(MailError::Busy)?;
    if queued == 0 {
        return Ok((None, plan));
    }
    queue.queued();
    tracing::info!(%lab, by, job = id, messages = queued, "credentials mail queued");
    Ok((Some(id), plan))
}

/// After an apply: the credentials of every participant not mailed yet,
/// when the lab says so (`mail.credentials: after-apply`). Failing to
/// queue them does not fail the apply; it is logged.
pub async fn after_apply(settings: &Settings, store: &Store, lab: &crate::lab::Lab) {
    if !lab.mail.credentials_after_apply || !settings.mail.enabled() {
        return;
    }
    let login = format!("{}/login", public_base(settings));
    let queue = super::Queue::default();
    match mail_credentials(
        settings,
        store,
        &queue,
        &lab.id,
        &[],
        &login,
        "pglab (after apply)",
    )
    .await
    {
        Ok((Some(job), plan)) => {
            tracing::info!(lab = %lab.id, job, messages = plan.recipients.len(), "credentials mailed after the apply");
        }
        Ok((None, _)) => {}
        Err(e) => {
            tracing::warn!(lab = %lab.id, error = %e, "could not queue the credentials after the apply")
        }
    }
}

mod auto;
mod digest;
mod render;
mod send;

pub use auto::{hand_in_result, remind};
pub use digest::send_digests;

/// What pglab mails by itself when it is due: deadline reminders, digests
/// of who needs help, and hand-in results that never reached a server.
/// How many jobs (or hand-ins) it queued mail for.
pub async fn automatic(settings: &Settings, store: &Store) -> usize {
    let mut queued = 0;
    match remind(settings, store).await {
        Ok(n) => queued += n,
        Err(e) => tracing::warn!(error = %e, "queuing deadline reminders"),
    }
    match send_digests(settings, store).await {
        Ok(n) => queued += n,
        Err(e) => tracing::warn!(error = %e, "queuing digests of who needs help"),
    }
    match auto::retry_unsent(settings, store).await {
        Ok(n) => queued += n,
        Err(e) => tracing::warn!(error = %e, "queuing unsent hand-in results again"),
    }
    queued
}
pub use send::{give_up, recover, run_mail_job};
