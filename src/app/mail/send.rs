//! The mail job: each message taken, made, sent and recorded in turn. A
//! message that must wait for another attempt does not hold the queue: the
//! job sends what is ready, then goes back to the queue until the first
//! waiting message may go, and other mail jobs run meanwhile.

use super::render::{render, JobData};
use super::*;
use crate::control::MailOutcome;

/// How a claimed mail job stopped short of its end.
enum Stop {
    /// It waits in the queue for its next attempt.
    Waits,
    /// It was no longer this worker's: the one that has it ends it.
    TakenOver,
    /// It ends failed: every message not sent yet is unsent, with why.
    Failed(String),
    /// The control database failed under it: it is tried again later (an
    /// attempt of the job), its messages kept as they are.
    Store(String),
}

/// Runs a claimed mail job: each queued message in order, to its end (or
/// back to the queue while messages wait for their next attempt).
pub async fn run_mail_job(settings: &Settings, store: &Store, job: &JobRecord, claim: Claim<'_>) {
    let error = match send_all(settings, store, job, claim).await {
        Ok(()) => None,
        Err(Stop::Waits) => return,
        Err(Stop::TakenOver) => {
            tracing::warn!(
                job = job.id,
                "the mail job was taken over by another worker: stopped here"
            );
            return;
        }
        Err(Stop::Failed(why)) => Some(why),
        Err(Stop::Store(why)) if job.attempts < job.max_attempts => {
            let note = format!("the control database failed: {why}; again in a minute");
            let later = chrono::Utc::now() + chrono::Duration::seconds(60);
            if let Err(e) = store.wait_job(claim, later, &note, true).await {
                // The sweeper takes the job up once its heartbeat stops.
                tracing::warn!(job = job.id, error = %e, "could not put a mail job back: left to the sweeper");
            }
            return;
        }
        Err(Stop::Store(why)) => Some(format!("the control database failed: {why}")),
    };
    give_up(store, claim, error.as_deref()).await;
}

/// Ends mail job `claim` (`error`: failed), in one transaction: a message
/// the server had is uncertain, every message not sent is unsent and gives
/// its password back. The sweeper ends a job interrupted too often so too.
pub async fn give_up(store: &Store, claim: Claim<'_>, error: Option<&str>) {
    match store.end_mail_job(claim, error).await {
        Ok(true) => {}
        Ok(false) => tracing::warn!(job = claim.job, "the mail job was no longer this worker's"),
        Err(e) => {
            tracing::error!(job = claim.job, error = %e, "could not record the end of a mail job")
        }
    }
}

fn stored(e: StoreError) -> Stop {
    Stop::Store(e.to_string())
}

async fn send_all(
    settings: &Settings,
    store: &Store,
    job: &JobRecord,
    claim: Claim<'_>,
) -> Result<(), Stop> {
    let mailer = Mailer::new(&settings.mail).map_err(Stop::Failed)?;
    let title = store
        .lab(&job.lab)
        .await
        .map_err(stored)?
        .map_or_else(|| job.lab.to_string(), |l| l.lab.title);
    let mut data = JobData::default();
    loop {
        let Some(m) = store.next_mail(job.id).await.map_err(stored)? else {
            return wait_or_end(store, job, claim).await;
        };
        // Taken before anything is made or sent: a worker that lost the
        // job sends nothing, and every attempt counts.
        if !store.take_mail(m.id, claim).await.map_err(stored)? {
            return Err(Stop::TakenOver);
        }
        let m = MailRecord {
            attempts: m.attempts + 1,
            ..m
        };
        let made = render(settings, store, job, &title, &m, &mut data).await;
        let subject = made.as_ref().ok().map(|r| r.subject.clone());
        let outcome = match made {
            Ok(message) => mailer.send(&m.to_address, &m.to_name, &message, m.id).await,
            Err(e) => Err(e),
        };
        if let Err(SendError::Server(why)) = &outcome {
            if m.attempts >= settings.mail.attempts as i32 {
                // Never at the server: back in the queue, so that the end
                // of the job makes it unsent with the rest.
                let retry = MailOutcome::Retry {
                    answer: why,
                    at: chrono::Utc::now(),
                    whole_job: false,
                };
                store
                    .mail_outcome(m.id, claim, &retry, None)
                    .await
                    .map_err(stored)?;
                return Err(Stop::Failed(format!("the SMTP server: {why}")));
            }
        }
        record(settings, store, claim, &m, outcome, subject.as_deref()).await?;
    }
}

/// Nothing is ready to send: the job ends when nothing is queued, or waits
/// in the queue until its first message may go.
async fn wait_or_end(store: &Store, job: &JobRecord, claim: Claim<'_>) -> Result<(), Stop> {
    let Some(at) = store.next_mail_at(job.id).await.map_err(stored)? else {
        return Ok(());
    };
    let note = format!(
        "waiting until {} for the next attempt",
        at.format("%Y-%m-%d %H:%M:%S UTC")
    );
    if store
        .wait_job(claim, at, &note, false)
        .await
        .map_err(stored)?
    {
        Err(Stop::Waits)
    } else {
        Err(Stop::TakenOver)
    }
}

/// The wait before attempt `attempts + 1`: `mail.retry_secs`, doubling.
fn backoff(settings: &Settings, attempts: u32) -> Duration {
    let doubled = settings.mail.retry_secs * 2f64.powi(attempts.clamp(1, 30) as i32 - 1);
    Duration::from_secs_f64(doubled.min(MAX_BACKOFF.as_secs_f64()))
}

/// Records what became of one attempt of `m` (taken: `sending`, its
/// attempts counted), with the subject as it was made; after a temporary
/// failure with attempts left, it waits (doubling) in the queue.
async fn record(
    settings: &Settings,
    store: &Store,
    claim: Claim<'_>,
    m: &MailRecord,
    outcome: Result<String, SendError>,
    subject: Option<&str>,
) -> Result<(), Stop> {
    let to = format!("{} <{}>", m.to_name, m.to_address);
    let attempts = u32::try_from(m.attempts).unwrap_or(1);
    let refused = match &outcome {
        Err(SendError::Server(a)) => format!("not sent: the SMTP server: {a}"),
        Err(e) => e.answer().to_string(),
        Ok(_) => String::new(),
    };
    let (result, line) = match &outcome {
        Ok(answer) => (MailOutcome::Sent(answer), None),
        Err(e @ (SendError::Temporary(a) | SendError::Server(a)))
            if attempts < settings.mail.attempts =>
        {
            let wait = backoff(settings, attempts);
            let retry = MailOutcome::Retry {
                answer: a,
                at: chrono::Utc::now()
                    + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::zero()),
                whole_job: matches!(e, SendError::Server(_)),
            };
            let line = format!(
                "not yet sent to {to} (attempt {attempts}): {a}; again in {:.0} s",
                wait.as_secs_f64()
            );
            (retry, Some(line))
        }
        Err(SendError::Uncertain(a)) => (
            MailOutcome::Uncertain(a),
            Some(format!("may or may not have reached {to}: {a}")),
        ),
        Err(SendError::Skipped(a)) => (
            MailOutcome::Unsent(a),
            Some(format!("not sent to {to}: {a}")),
        ),
        Err(_) => (
            MailOutcome::Failed(&refused),
            Some(format!("not sent to {to}: {refused}")),
        ),
    };
    store
        .mail_outcome(m.id, claim, &result, subject)
        .await
        .map_err(stored)?;
    if let Some(line) = line {
        let _ = store.log_job(claim, &line).await;
    }
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
