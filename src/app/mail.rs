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
    let spec = store.lab(lab).await?.ok_or(MailError::NoSuchLab)?.lab;
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

/// The message `m` as it is sent now; `Err` (a permanent failure) when it
/// can no longer be made.
/// What the messages of one job share, read once per job.
#[derive(Default)]
struct JobData {
    lab: Option<crate::lab::Lab>,
    people: Option<Vec<crate::control::ParticipantRecord>>,
    deadlines: Option<std::collections::BTreeMap<String, chrono::DateTime<chrono::Utc>>>,
}

impl JobData {
    async fn lab(&mut self, store: &Store, id: &LabId) -> Result<&crate::lab::Lab, SendError> {
        if self.lab.is_none() {
            let loaded = store.lab(id).await.map_err(temporary)?;
            self.lab = Some(
                loaded
                    .ok_or_else(|| SendError::Permanent("the lab is gone".into()))?
                    .lab,
            );
        }
        Ok(self.lab.as_ref().expect("just read"))
    }

    async fn people(
        &mut self,
        store: &Store,
        id: &LabId,
    ) -> Result<&[crate::control::ParticipantRecord], SendError> {
        if self.people.is_none() {
            self.people = Some(store.participants(id).await.map_err(temporary)?);
        }
        Ok(self.people.as_deref().expect("just read"))
    }

    async fn deadline_of(
        &mut self,
        store: &Store,
        id: &LabId,
        db: &str,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, SendError> {
        if self.deadlines.is_none() {
            let lab = self.lab(store, id).await?.clone();
            self.deadlines = Some(
                super::evidence::deadlines(store, &lab)
                    .await
                    .map_err(temporary)?,
            );
        }
        Ok(self.deadlines.as_ref().and_then(|d| d.get(db).copied()))
    }
}

async fn render(
    settings: &Settings,
    store: &Store,
    job: &JobRecord,
    lab_title: &str,
    m: &MailRecord,
    data: &mut JobData,
) -> Result<Rendered, SendError> {
    match m.kind {
        MailKind::Credentials => {
            let user = m.username.as_deref().unwrap_or_default();
            let c = store
                .credential_of(&job.lab, user)
                .await
                .map_err(|e| SendError::Temporary(e.to_string()))?
                .ok_or_else(|| {
                    SendError::Permanent(format!("{user} no longer takes part in the lab"))
                })?;
            if c.password_set != m.about {
                return Err(SendError::Permanent(
                    "the password was reset after this message was queued: nothing sent (mail the new one)"
                        .into(),
                ));
            }
            let password = c.initial_password.clone().ok_or_else(|| {
                SendError::Permanent(
                    "the initial password is no longer kept (the participant changed it): nothing sent"
                        .into(),
                )
            })?;
            let login_url = job.params["login_url"].as_str().unwrap_or_default();
            let lab = data.lab(store, &job.lab).await?;
            credentials_message(settings, lab, &c, &password, login_url)
                .map_err(SendError::Permanent)
        }
        MailKind::Reminder => render_reminder(settings, store, job, lab_title, m, data).await,
        MailKind::HandIn => render_hand_in(settings, store, job, m, data).await,
        other => Err(SendError::Permanent(format!(
            "{other} messages are not made by this pglab"
        ))),
    }
}

fn temporary(e: StoreError) -> SendError {
    SendError::Temporary(e.to_string())
}

fn unmade(e: askama::Error) -> SendError {
    SendError::Permanent(format!("the message cannot be made: {e}"))
}

/// A reminder as it is sent now: the participant's deadline and progress.
async fn render_reminder(
    settings: &Settings,
    store: &Store,
    job: &JobRecord,
    lab_title: &str,
    m: &MailRecord,
    data: &mut JobData,
) -> Result<Rendered, SendError> {
    let gone = || SendError::Permanent("the participant is gone".into());
    let user = m.username.as_deref().unwrap_or_default();
    let db = data
        .people(store, &job.lab)
        .await?
        .iter()
        .find(|p| p.username.as_str() == user)
        .ok_or_else(gone)?
        .database
        .to_string();
    let deadline = data
        .deadline_of(store, &job.lab, &db)
        .await?
        .ok_or_else(|| SendError::Permanent("the lab has no deadline any more".into()))?;
    let lab = data.lab(store, &job.lab).await?;
    let scores = store
        .task_scores_of(&job.lab, std::slice::from_ref(&db))
        .await
        .map_err(temporary)?;
    let (tasks, points) = progress(lab, &scores);
    let left = (deadline - chrono::Utc::now()).num_seconds().max(0) as u64;
    let deadline_text = deadline.format("%Y-%m-%d %H:%M UTC").to_string();
    let login_url = format!("{}/login", public_base(settings));
    let max_points: u32 = lab.tasks.iter().map(|t| t.points).sum();
    let open: Vec<String> = tasks
        .iter()
        .filter(|t| !t.passed)
        .map(|t| match &t.reason {
            Some(why) => format!("- {} ({} points): {why}", t.title, t.points),
            None => format!("- {} ({} points)", t.title, t.points),
        })
        .collect();
    let values = [
        ("name", m.to_name.clone()),
        ("lab", lab.title.clone()),
        ("deadline", deadline_text.clone()),
        ("left", before(left)),
        ("points", points.to_string()),
        ("max_points", max_points.to_string()),
        ("open_tasks", open.join("\n")),
        ("login_url", login_url.clone()),
    ];
    if let Some(m) = own(&lab.mail, "reminder", &values) {
        return Ok(m);
    }
    crate::mail::reminder(&crate::mail::Reminder {
        name: &m.to_name,
        lab_title,
        deadline: &deadline_text,
        left: &before(left),
        points,
        max_points,
        tasks: &tasks,
        login_url: &login_url,
    })
    .map_err(unmade)
}

/// Each task of `lab` with its result in `scores`, and the points passed.
fn progress(
    lab: &crate::lab::Lab,
    scores: &[crate::control::StoredTask],
) -> (Vec<crate::mail::TaskLine>, u32) {
    let tasks = lab
        .tasks
        .iter()
        .map(|t| {
            let s = scores.iter().find(|s| s.task == t.id);
            crate::mail::TaskLine {
                title: t.title.clone(),
                points: t.points,
                passed: s.is_some_and(|s| s.passed),
                reason: s.and_then(|s| s.reason.clone()),
            }
        })
        .collect();
    let points = scores
        .iter()
        .filter(|s| s.passed)
        .map(|s| s.points.max(0) as u32)
        .sum();
    (tasks, points)
}

fn clip(text: &str) -> String {
    match text.char_indices().nth(ISSUE_CHARS) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// A hand-in's result as it is sent now.
async fn render_hand_in(
    settings: &Settings,
    store: &Store,
    job: &JobRecord,
    m: &MailRecord,
    data: &mut JobData,
) -> Result<Rendered, SendError> {
    let id = m.about.unwrap_or_default();
    let sub = store
        .submission(id)
        .await
        .map_err(temporary)?
        .ok_or_else(|| SendError::Permanent(format!("hand-in {id} is gone")))?;
    let lab = data.lab(store, &job.lab).await?;
    let issues: Vec<crate::mail::IssueLine> = sub
        .errors
        .iter()
        .take(ISSUES_MAILED)
        .map(|e| crate::mail::IssueLine {
            message: clip(&e.message),
            line: e.line,
            // Not the statement: it is the uploader's own text, and the
            // message goes to the whole group (the page shows it).
            statement: None,
        })
        .collect();
    let succeeded = sub.status == crate::control::JobStatus::Succeeded;
    let url = format!("{}/submissions/{id}", public_base(settings));
    let errors: Vec<String> = issues
        .iter()
        .map(|i| match i.line {
            Some(l) => format!("- line {l}: {}", i.message),
            None => format!("- {}", i.message),
        })
        .collect();
    let values = [
        ("name", m.to_name.clone()),
        ("lab", lab.title.clone()),
        ("id", id.to_string()),
        ("uploaded_by", sub.uploaded_by.to_string()),
        (
            "result",
            if succeeded { "restored" } else { "failed" }.to_string(),
        ),
        ("errors", errors.join("\n")),
        ("url", url.clone()),
    ];
    if let Some(m) = own(&lab.mail, "hand_in", &values) {
        return Ok(m);
    }
    crate::mail::hand_in(&crate::mail::HandIn {
        name: &m.to_name,
        lab_title: &lab.title,
        id,
        uploaded_by: sub.uploaded_by.as_str(),
        succeeded,
        late: sub.late,
        issues: &issues,
        issue_count: sub.errors.len(),
        url: &url,
    })
    .map_err(unmade)
}

/// Queues `mails` of `lab` as one job started by pglab itself; each goes
/// to its participant once (`about`). The job, if anything was queued.
async fn queue_once(
    store: &Store,
    lab: &LabId,
    title: String,
    mails: &[NewMail<'_>],
) -> Result<Option<i64>, StoreError> {
    if mails.is_empty() {
        return Ok(None);
    }
    let job = NewJob {
        kind: JobKind::Mail,
        lab,
        lock_key: "mail".into(),
        title,
        started_by: "pglab",
        params: serde_json::json!({}),
        max_attempts: 5,
    };
    match store.queue_mail(&job, mails, false).await? {
        Some((id, n)) => Ok((n > 0).then_some(id)),
        None => {
            tracing::warn!(%lab, messages = mails.len(), "mail not queued: too many mail jobs wait");
            Ok(None)
        }
    }
}

/// Queues the result of hand-in `id` to the people of its database, when
/// its lab says so (`mail.hand_ins`) and mail is configured.
pub async fn hand_in_result(settings: &Settings, store: &Store, id: i64) -> Result<(), StoreError> {
    if !settings.mail.enabled() {
        return Ok(());
    }
    let Some(sub) = store.submission(id).await? else {
        return Ok(());
    };
    let Some(lab) = store.lab(&sub.lab).await? else {
        return Ok(());
    };
    if !lab.lab.mail.hand_ins || !sub.status.ended() {
        return Ok(());
    }
    let people: Vec<_> = store
        .participants(&sub.lab)
        .await?
        .into_iter()
        .filter(|p| p.database == sub.database && !p.email.trim().is_empty())
        .collect();
    // A group is not flooded by one member's hand-ins.
    if let Some(first) = people.first() {
        let hour_ago = chrono::Utc::now() - chrono::Duration::hours(1);
        let recent = store
            .mail_count_since(
                &sub.lab,
                MailKind::HandIn,
                first.username.as_str(),
                hour_ago,
            )
            .await?;
        if recent >= HAND_IN_MAILS_PER_HOUR {
            tracing::info!(lab = %sub.lab, hand_in = id, "hand-in result not mailed: {HAND_IN_MAILS_PER_HOUR} in the last hour");
            return Ok(());
        }
    }
    let succeeded = sub.status == crate::control::JobStatus::Succeeded;
    let subjects: Vec<String> = people
        .iter()
        .map(|p| {
            let values = [
                ("lab", lab.lab.title.clone()),
                ("name", p.name.clone()),
                ("id", id.to_string()),
                (
                    "result",
                    if succeeded { "restored" } else { "failed" }.to_string(),
                ),
            ];
            subject_for(&lab.lab.mail, "hand_in", &values, || {
                crate::mail::hand_in_subject(&lab.lab.title, id, succeeded)
            })
        })
        .collect();
    let mails: Vec<NewMail<'_>> = people
        .iter()
        .zip(&subjects)
        .map(|(p, subject)| NewMail {
            kind: MailKind::HandIn,
            username: Some(p.username.as_str()),
            about: Some(id),
            to_name: &p.name,
            to_address: p.email.trim(),
            subject,
        })
        .collect();
    let title = format!("Result of hand-in {id} by mail");
    if let Some(job) = queue_once(store, &sub.lab, title, &mails).await? {
        tracing::info!(lab = %sub.lab, hand_in = id, job, "hand-in result mail queued");
    }
    Ok(())
}

/// Queues the reminders that are due: for each lab with `mail.reminders`
/// and a deadline, to each participant not finished whose database's
/// deadline is that close (and not past); each reminder once, and of
/// several due at once only the nearest. How many jobs it queued.
pub async fn remind(settings: &Settings, store: &Store) -> Result<usize, StoreError> {
    if !settings.mail.enabled() {
        return Ok(0);
    }
    let mut queued = 0;
    for spec in store.lab_specs().await? {
        let lab = &spec.lab;
        if lab.mail.reminders_secs.is_empty() || lab.deadline.is_none() {
            continue;
        }
        let due = due_reminders(store, lab).await?;
        if due.is_empty() {
            continue;
        }
        let dbs: Vec<String> = due.iter().map(|(db, _, _)| db.clone()).collect();
        let scores = store.task_scores_of(&lab.id, &dbs).await?;
        let max: i64 = lab.tasks.iter().map(|t| i64::from(t.points)).sum();
        let unfinished: Vec<&(String, u64, u64)> = due
            .iter()
            .filter(|(db, _, _)| {
                let points: i64 = scores
                    .iter()
                    .filter(|s| &s.database == db && s.passed)
                    .map(|s| i64::from(s.points))
                    .sum();
                points < max
            })
            .collect();
        let people = store.participants(&lab.id).await?;
        let sent = store.mailed_abouts(&lab.id, MailKind::Reminder).await?;
        // (participant, rule, subject) of each reminder not queued yet.
        let mut each = vec![];
        for (db, secs, left) in &unfinished {
            for p in people.iter().filter(|p| {
                p.database.as_str() == db
                    && !p.email.trim().is_empty()
                    && !sent.contains(&(p.username.to_string(), *secs as i64))
            }) {
                let values = [
                    ("lab", lab.title.clone()),
                    ("name", p.name.clone()),
                    ("left", before(*left)),
                ];
                let subject = subject_for(&lab.mail, "reminder", &values, || {
                    crate::mail::reminder_subject(&lab.title, &before(*left))
                });
                each.push((p, *secs, subject));
            }
        }
        let mails: Vec<NewMail<'_>> = each
            .iter()
            .map(|(p, secs, subject)| NewMail {
                kind: MailKind::Reminder,
                username: Some(p.username.as_str()),
                about: Some(*secs as i64),
                to_name: &p.name,
                to_address: p.email.trim(),
                subject,
            })
            .collect();
        let title = format!("Deadline reminders of lab {} by mail", lab.id);
        if let Some(job) = queue_once(store, &lab.id, title, &mails).await? {
            tracing::info!(lab = %lab.id, job, "reminders queued");
            queued += 1;
        }
    }
    Ok(queued)
}

/// The databases of `lab` with a reminder due now: the nearest rule whose
/// time came, before a deadline not passed yet; with the seconds left.
async fn due_reminders(
    store: &Store,
    lab: &crate::lab::Lab,
) -> Result<Vec<(String, u64, u64)>, StoreError> {
    let now = chrono::Utc::now();
    Ok(super::evidence::deadlines(store, lab)
        .await?
        .into_iter()
        .filter(|(_, d)| *d > now)
        .filter_map(|(db, d)| {
            let left = (d - now).num_seconds().max(0) as u64;
            lab.mail
                .reminders_secs
                .iter()
                .copied()
                .filter(|s| *s >= left)
                .min()
                .map(|s| (db, s, left))
        })
        .collect())
}

/// `in 24 hours`, `in 30 minutes`: how long before the deadline.
fn before(secs: u64) -> String {
    if secs >= 7200 {
        format!("in {} hours", (secs + 1800) / 3600)
    } else {
        format!("in {} minutes", (secs + 30) / 60)
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
    let mut data = JobData::default();
    let mut server_failures = 0;
    while let Some(m) = store.next_mail(job.id).await.map_err(|e| e.to_string())? {
        // Taken before anything is made or sent: a worker that lost the
        // job sends nothing, and every attempt counts.
        if !store
            .take_mail(m.id, claim)
            .await
            .map_err(|e| e.to_string())?
        {
            return Err("the job was taken over by another worker; stopped here".into());
        }
        let m = MailRecord {
            attempts: m.attempts + 1,
            ..m
        };
        let outcome = match render(settings, store, job, &title, &m, &mut data).await {
            Ok(message) => mailer.send(&m.to_address, &m.to_name, &message, m.id).await,
            Err(e) => Err(e),
        };
        let server_down = match &outcome {
            Err(SendError::Server(why)) => Some(why.clone()),
            _ => None,
        };
        record(settings, store, claim, &m, outcome).await?;
        match server_down {
            Some(why) => {
                server_failures += 1;
                if server_failures >= settings.mail.attempts {
                    give_up(store, claim, job, &why).await?;
                    return Err(format!("the SMTP server: {why}"));
                }
            }
            None => server_failures = 0,
        }
    }
    Ok(())
}

/// The server cannot be reached or logged in to, again and again: every
/// message not sent yet fails with that reason, and their passwords may be
/// mailed again (nothing was sent).
async fn give_up(
    store: &Store,
    claim: Claim<'_>,
    job: &JobRecord,
    why: &str,
) -> Result<(), String> {
    let answer = format!("not sent: the SMTP server: {why}");
    while let Some(m) = store.next_mail(job.id).await.map_err(|e| e.to_string())? {
        failed(store, &m, &answer).await?;
    }
    let _ = store.log_job(claim, &answer).await;
    Ok(())
}

/// `m` failed for good; a credentials message gives its password back (it
/// did not arrive).
async fn failed(store: &Store, m: &MailRecord, answer: &str) -> Result<(), String> {
    store
        .set_mail_status(m.id, MailStatus::Failed, Some(answer))
        .await
        .map_err(|e| e.to_string())?;
    if let (MailKind::Credentials, Some(user), Some(about)) = (m.kind, &m.username, m.about) {
        store
            .release_mailed(user, about)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Records what became of one attempt of `m` (taken: `sending`, its
/// attempts counted); after a temporary failure with attempts left, waits
/// (doubling) and queues it again.
async fn record(
    settings: &Settings,
    store: &Store,
    claim: Claim<'_>,
    m: &MailRecord,
    outcome: Result<String, SendError>,
) -> Result<(), String> {
    let to = format!("{} <{}>", m.to_name, m.to_address);
    let attempts = u32::try_from(m.attempts).unwrap_or(1);
    let line = match &outcome {
        Ok(answer) => {
            store
                .set_mail_status(m.id, MailStatus::Sent, Some(answer))
                .await
                .map_err(|e| e.to_string())?;
            return Ok(()); // every message is on the delivery log
        }
        Err(SendError::Temporary(a) | SendError::Server(a))
            if attempts < settings.mail.attempts =>
        {
            let wait =
                Duration::from_secs_f64(settings.mail.retry_secs * 2f64.powi(attempts as i32 - 1))
                    .min(MAX_BACKOFF);
            store
                .set_mail_status(m.id, MailStatus::Queued, Some(a))
                .await
                .map_err(|e| e.to_string())?;
            let _ = store
                .log_job(
                    claim,
                    &format!(
                        "not yet sent to {to} (attempt {attempts}): {a}; again in {:.0} s",
                        wait.as_secs_f64()
                    ),
                )
                .await;
            tokio::time::sleep(wait).await;
            return Ok(());
        }
        Err(SendError::Uncertain(a)) => {
            store
                .set_mail_status(m.id, MailStatus::Uncertain, Some(a))
                .await
                .map_err(|e| e.to_string())?;
            format!("may or may not have reached {to}: {a}")
        }
        Err(e) => {
            let answer = match e {
                SendError::Server(a) => format!("not sent: the SMTP server: {a}"),
                other => other.answer().to_string(),
            };
            failed(store, m, &answer).await?;
            format!("not sent to {to}: {answer}")
        }
    };
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
