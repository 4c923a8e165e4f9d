//! The mail job: each message taken, made, sent and recorded in turn.

use super::render::{render, JobData};
use super::*;

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
            let doubled = settings.mail.retry_secs * 2f64.powi(attempts.clamp(1, 30) as i32 - 1);
            let wait = Duration::from_secs_f64(doubled.min(MAX_BACKOFF.as_secs_f64()));
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
