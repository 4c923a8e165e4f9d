//! Mail: messages queued as a job (one message per item, in order), sent
//! through the configured SMTP server at its pace, retried with back-off on
//! temporary failures, failed for good on permanent ones with the server's
//! answer, and recorded as sent before the next one goes. A message that
//! was at the server when pglab stopped is marked uncertain, never sent
//! twice by itself. A participant's initial password is mailed once: it is
//! read when the message is made, never stored with it, and mailing it
//! again takes a reset (a new password).

use crate::control::{
    Claim, CredentialRecord, JobKind, JobRecord, MailKind, MailRecord, MailStatus, NewJob, NewMail,
    Store, StoreError,
};
use crate::ident::{LabId, Username};
use crate::mail::{Mailer, Rendered, SendError};
use crate::settings::Settings;
use std::time::Duration;

/// Longest wait between two attempts of a message.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

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
fn credentials_message(
    settings: &Settings,
    lab_title: &str,
    c: &CredentialRecord,
    password: &str,
    login_url: &str,
) -> Result<Rendered, String> {
    let psql = settings.server(&c.server).map_or_else(String::new, |s| {
        super::psql_command(s, &c.username, &c.database)
    });
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
            plan.preview =
                credentials_message(settings, &loaded.lab.title, c, password, login_url).ok();
        }
        plan.recipients.push(Recipient {
            username: c.username.to_string(),
            name: c.name.clone(),
            email: c.email.clone(),
        });
    }
    Ok(plan)
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
    let plan = plan_credentials(settings, store, lab, to, login_url).await?;
    if plan.recipients.is_empty() {
        return Ok((None, plan));
    }
    let title = store.lab(lab).await?.ok_or(MailError::NoSuchLab)?.lab.title;
    let subject = crate::mail::credentials_subject(&title);
    let mails: Vec<NewMail<'_>> = plan
        .recipients
        .iter()
        .map(|r| NewMail {
            kind: MailKind::Credentials,
            username: Some(&r.username),
            to_name: &r.name,
            to_address: &r.email,
            subject: &subject,
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
        .queue_mail(&job, &mails, true)
        .await?
        .ok_or(MailError::Busy)?;
    if queued == 0 {
        return Ok((None, plan));
    }
    queue.queued();
    tracing::info!(%lab, by, job = id, messages = queued, "credentials mail queued");
    Ok((Some(id), plan))
}

/// The message `m` as it is sent now; `Err` (a permanent failure) when it
/// can no longer be made.
async fn render(
    settings: &Settings,
    store: &Store,
    job: &JobRecord,
    lab_title: &str,
    m: &MailRecord,
) -> Result<Rendered, SendError> {
    match m.kind {
        MailKind::Credentials => {
            let user = m.username.as_deref().unwrap_or_default();
            let c = store
                .credentials(&job.lab)
                .await
                .map_err(|e| SendError::Temporary(e.to_string()))?
                .into_iter()
                .find(|c| c.username.as_str() == user)
                .ok_or_else(|| {
                    SendError::Permanent(format!("{user} no longer takes part in the lab"))
                })?;
            let password = c.initial_password.clone().ok_or_else(|| {
                SendError::Permanent(
                    "the initial password is no longer kept (the participant changed it): nothing sent"
                        .into(),
                )
            })?;
            let login_url = job.params["login_url"].as_str().unwrap_or_default();
            credentials_message(settings, lab_title, &c, &password, login_url)
                .map_err(SendError::Permanent)
        }
        other => Err(SendError::Permanent(format!(
            "{other} messages are not made by this pglab"
        ))),
    }
}

/// Runs a claimed mail job: each queued message in order, to its end.
pub async fn run_mail_job(settings: &Settings, store: &Store, job: &JobRecord, claim: Claim<'_>) {
    let error = send_all(settings, store, job, claim).await.err();
    let summary = match store.mail_counts(job.id).await {
        Ok(counts) => counts
            .iter()
            .map(|(status, n)| format!("{n} {status}"))
            .collect(),
        Err(_) => vec![],
    };
    if let Err(e) = store.finish_job(claim, &summary, error.as_deref()).await {
        tracing::error!(job = job.id, error = %e, "could not record the end of a mail job");
    }
}

async fn send_all(
    settings: &Settings,
    store: &Store,
    job: &JobRecord,
    claim: Claim<'_>,
) -> Result<(), String> {
    let mailer = Mailer::new(&settings.mail)?;
    let title = store
        .lab(&job.lab)
        .await
        .map_err(|e| e.to_string())?
        .map_or_else(|| job.lab.to_string(), |l| l.lab.title);
    while let Some(m) = store.next_mail(job.id).await.map_err(|e| e.to_string())? {
        let outcome = match render(settings, store, job, &title, &m).await {
            Ok(message) => {
                store
                    .set_mail_status(m.id, MailStatus::Sending, None)
                    .await
                    .map_err(|e| e.to_string())?;
                mailer.send(&m.to_address, &m.to_name, &message, m.id).await
            }
            Err(e) => Err(e),
        };
        record(settings, store, claim, &m, outcome).await?;
    }
    Ok(())
}

/// Records what became of one attempt of `m`; after a temporary failure
/// with attempts left, waits (doubling) and leaves it queued.
async fn record(
    settings: &Settings,
    store: &Store,
    claim: Claim<'_>,
    m: &MailRecord,
    outcome: Result<String, SendError>,
) -> Result<(), String> {
    let to = format!("{} <{}>", m.to_name, m.to_address);
    let attempts = u32::try_from(m.attempts).unwrap_or(0) + 1;
    let (status, answer, line) = match &outcome {
        Ok(answer) => (
            MailStatus::Sent,
            answer.clone(),
            format!("sent to {to}: {answer}"),
        ),
        Err(SendError::Temporary(a)) if attempts < settings.mail.attempts => {
            let wait =
                Duration::from_secs_f64(settings.mail.retry_secs * 2f64.powi(attempts as i32 - 1))
                    .min(MAX_BACKOFF);
            let line = format!(
                "not yet sent to {to} (attempt {attempts}): {a}; again in {:.0} s",
                wait.as_secs_f64()
            );
            store
                .set_mail_status(m.id, MailStatus::Queued, Some(a))
                .await
                .map_err(|e| e.to_string())?;
            let _ = store.log_job(claim, &line).await;
            tokio::time::sleep(wait).await;
            return Ok(());
        }
        Err(e) => (
            MailStatus::Failed,
            e.answer().to_string(),
            format!("not sent to {to}: {}", e.answer()),
        ),
    };
    store
        .set_mail_status(m.id, status, Some(&answer))
        .await
        .map_err(|e| e.to_string())?;
    let _ = store.log_job(claim, &line).await;
    Ok(())
}

/// What to do with an interrupted mail job: messages that were at the
/// server become uncertain (never sent again by themselves).
pub async fn recover(store: &Store, job: &JobRecord) -> Result<(), StoreError> {
    let n = store.mark_uncertain_mail(job.id).await?;
    if n > 0 {
        tracing::warn!(
            job = job.id,
            messages = n,
            "mail interrupted at the server: marked uncertain"
        );
    }
    Ok(())
}
