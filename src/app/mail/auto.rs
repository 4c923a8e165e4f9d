//! Mail pglab sends by itself: deadline reminders and hand-in results.

use super::*;

/// Queues `mails` of `lab` in the lab's waiting automatic job, or a new
/// one started by pglab itself; each goes to its participant once
/// (`about`). The job, if anything was queued.
pub(super) async fn queue_once(
    store: &Store,
    lab: &LabId,
    mails: &[NewMail<'_>],
) -> Result<Option<i64>, StoreError> {
    if mails.is_empty() {
        return Ok(None);
    }
    let job = NewJob {
        kind: JobKind::Mail,
        lab,
        lock_key: "mail".into(),
        title: format!("Mail pglab sends by itself for lab {lab}"),
        started_by: "pglab",
        params: serde_json::json!({ "auto": true }),
        max_attempts: 5,
    };
    match store.queue_mail(&job, mails, Queueing::Automatic).await? {
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
    if let Some(job) = queue_once(store, &sub.lab, &mails).await? {
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
        if let Some(job) = queue_once(store, &lab.id, &mails).await? {
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
    Ok(crate::app::evidence::deadlines(store, lab)
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
pub(super) fn before(secs: u64) -> String {
    if secs >= 7200 {
        format!("in {} hours", (secs + 1800) / 3600)
    } else {
        format!("in {} minutes", (secs + 30) / 60)
    }
}

/// Queues again the hand-in results of the last day that never reached a
/// server (it was down), 10 minutes after; how many hand-ins.
pub async fn retry_unsent(settings: &Settings, store: &Store) -> Result<usize, StoreError> {
    if !settings.mail.enabled() {
        return Ok(0);
    }
    let ids = store.unsent_hand_in_results().await?;
    for id in &ids {
        hand_in_result(settings, store, *id).await?;
    }
    Ok(ids.len())
}
