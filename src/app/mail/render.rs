//! Messages as they are sent: made from templates with what is true
//! then (the password, the progress, the hand-in).

use super::auto::before;
use super::*;

/// The message `m` as it is sent now; `Err` (a permanent failure) when it
/// can no longer be made.
/// What the messages of one job share, read once per job.
#[derive(Default)]
pub(super) struct JobData {
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
                crate::app::evidence::deadlines(store, &lab)
                    .await
                    .map_err(temporary)?,
            );
        }
        Ok(self.deadlines.as_ref().and_then(|d| d.get(db).copied()))
    }
}

pub(super) async fn render(
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
        MailKind::Digest => {
            let lab = data.lab(store, &job.lab).await?;
            super::digest::render_digest(settings, store, lab, &m.to_address).await
        }
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

pub(super) fn clip(text: &str) -> String {
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
    // The errors quote the dump's own text: they go to the one who
    // uploaded it, the rest of the group gets the result and the link.
    let uploader = m.username.as_deref() == Some(sub.uploaded_by.as_str());
    let issues: Vec<crate::mail::IssueLine> = sub
        .errors
        .iter()
        .take(if uploader { ISSUES_MAILED } else { 0 })
        .map(|e| crate::mail::IssueLine {
            // The first line: the server's error, without DETAIL or HINT
            // lines (a dump can write those).
            message: clip(e.message.lines().next().unwrap_or_default()),
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
