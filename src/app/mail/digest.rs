//! The digest for a lab's staff: who needs help now, by the board's rule,
//! from what the control database recorded (any replica can make it).

use super::*;
use crate::mail::HelpLine;

/// The lab's databases on servers found down within the last three minutes.
async fn unreachable(store: &Store, lab: &crate::ident::LabId) -> Result<Vec<String>, StoreError> {
    let down = store.servers_down().await?;
    if down.is_empty() {
        return Ok(vec![]);
    }
    Ok(store
        .databases(lab)
        .await?
        .into_iter()
        .filter(|d| down.contains(d.server.as_str()))
        .map(|d| d.name.to_string())
        .collect())
}

/// Who needs help in `lab` now: the people of each database with a session
/// open and no progress for `STUCK_MINUTES` (its deadline not passed, its
/// server not down), the longest stuck first. The sessions are those the
/// latest scoring round saw.
pub(super) async fn needing_help(
    store: &Store,
    lab: &crate::lab::Lab,
    base: &str,
) -> Result<Vec<HelpLine>, StoreError> {
    let now = chrono::Utc::now();
    // After its deadline a database is not scored any more: its sessions
    // as last recorded say nothing.
    let deadlines = crate::app::evidence::deadlines(store, lab).await?;
    // Nor is a database whose server is down: nobody can work in it.
    let unreachable = unreachable(store, &lab.id).await?;
    let stuck: Vec<(String, i64)> = store
        .open_sessions(&lab.id)
        .await?
        .into_iter()
        .filter(|(db, _, _)| deadlines.get(db).is_none_or(|d| *d > now))
        .filter(|(db, _, _)| !unreachable.contains(db))
        .filter_map(|(db, since, progress)| {
            crate::scoring::board::stuck_minutes(true, progress, Some(since), now).map(|m| (db, m))
        })
        .collect();
    if stuck.is_empty() {
        return Ok(vec![]);
    }
    let dbs: Vec<String> = stuck.iter().map(|(db, _)| db.clone()).collect();
    let scores = store.task_scores_of(&lab.id, &dbs).await?;
    let people = store.participants(&lab.id).await?;
    let mut out = vec![];
    for (db, minutes) in &stuck {
        let mine: Vec<_> = scores.iter().filter(|s| &s.database == db).collect();
        let points = mine
            .iter()
            .filter(|s| s.passed)
            .map(|s| s.points.max(0) as u32)
            .sum();
        let open_task = lab
            .tasks
            .iter()
            .find(|t| !mine.iter().any(|s| s.task == t.id && s.passed))
            .map(|t| {
                match mine
                    .iter()
                    .find(|s| s.task == t.id)
                    .and_then(|s| s.reason.as_deref())
                {
                    Some(why) => format!("{}: {}", t.title, super::render::clip(why)),
                    None => t.title.clone(),
                }
            });
        for p in people.iter().filter(|p| p.database.as_str() == db) {
            out.push(HelpLine {
                name: p.name.clone(),
                username: p.username.to_string(),
                minutes: *minutes,
                points,
                open_task: open_task.clone(),
                url: format!("{base}/labs/{}/people/{}", lab.id, p.username),
            });
        }
    }
    out.sort_by(|a, b| b.minutes.cmp(&a.minutes).then(a.username.cmp(&b.username)));
    Ok(out)
}

/// Queues the digests that are due: for each lab with `mail.digest` in
/// which someone needs help now, one message to each of its addresses per
/// period (`every`), whichever replica comes first. How many labs' digests
/// it queued.
pub async fn send_digests(settings: &Settings, store: &Store) -> Result<usize, StoreError> {
    if !settings.mail.enabled() {
        return Ok(0);
    }
    let base = public_base(settings);
    let mut queued = 0;
    for spec in store.lab_specs().await? {
        let lab = &spec.lab;
        let Some(rule) = &lab.mail.digest else {
            continue;
        };
        let people = needing_help(store, lab, &base).await?;
        if people.is_empty() {
            continue;
        }
        let period = chrono::Utc::now().timestamp() / rule.every_secs.max(1) as i64;
        let values = [
            ("lab", lab.title.clone()),
            ("count", people.len().to_string()),
        ];
        let subject = subject_for(&lab.mail, "digest", &values, || {
            crate::mail::digest_subject(&lab.title, people.len())
        });
        let mails: Vec<NewMail<'_>> = rule
            .to
            .iter()
            .map(|address| NewMail {
                kind: MailKind::Digest,
                username: None,
                about: Some(period),
                to_name: address,
                to_address: address,
                subject: &subject,
            })
            .collect();
        if let Some(job) = super::auto::queue_once(store, &lab.id, &mails).await? {
            tracing::info!(lab = %lab.id, job, people = people.len(), "digest of who needs help queued");
            queued += 1;
        }
    }
    Ok(queued)
}

/// `30 minutes`, `2 hours`, `1 day`: a period in words.
fn period_words(secs: u64) -> String {
    let (n, unit) = match secs {
        s if s % 86_400 == 0 => (s / 86_400, "day"),
        s if s % 3600 == 0 => (s / 3600, "hour"),
        s => (s.div_ceil(60), "minute"),
    };
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

/// The digest to `to` as it is sent now: who needs help at this moment;
/// skipped when nobody does any more, or the lab no longer sends it there.
pub(super) async fn render_digest(
    settings: &Settings,
    store: &Store,
    lab: &crate::lab::Lab,
    to: &str,
) -> Result<Rendered, SendError> {
    let Some(rule) = lab
        .mail
        .digest
        .as_ref()
        .filter(|r| r.to.iter().any(|a| a == to))
    else {
        return Err(SendError::Skipped(
            "the lab no longer sends its digest to this address".into(),
        ));
    };
    let base = public_base(settings);
    let people = needing_help(store, lab, &base)
        .await
        .map_err(|e| SendError::Temporary(e.to_string()))?;
    if people.is_empty() {
        return Err(SendError::Skipped("nobody needs help any more".into()));
    }
    let board_url = format!("{base}/labs/{}/board", lab.id);
    let lines: Vec<String> = people
        .iter()
        .map(|p| {
            format!(
                "- {} ({}): {} minutes without progress, {} points; {}",
                p.name, p.username, p.minutes, p.points, p.url
            )
        })
        .collect();
    let values = [
        ("lab", lab.title.clone()),
        ("count", people.len().to_string()),
        ("people", lines.join("\n")),
        ("board_url", board_url.clone()),
    ];
    if let Some(m) = own(&lab.mail, "digest", &values) {
        return Ok(m);
    }
    crate::mail::digest(&crate::mail::Digest {
        lab_title: &lab.title,
        max_points: lab.tasks.iter().map(|t| t.points).sum(),
        people: &people,
        stuck_minutes: crate::scoring::board::STUCK_MINUTES,
        every: &period_words(rule.every_secs),
        board_url: &board_url,
    })
    .map_err(|e| SendError::Permanent(format!("the message cannot be made: {e}")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn periods_in_words() {
        assert_eq!(super::period_words(1800), "30 minutes");
        assert_eq!(super::period_words(3600), "1 hour");
        assert_eq!(super::period_words(7200), "2 hours");
        assert_eq!(super::period_words(86_400), "1 day");
        assert_eq!(super::period_words(330), "6 minutes");
    }
}
