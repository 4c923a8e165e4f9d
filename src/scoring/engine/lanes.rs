//! Evaluating a round's changed databases: per server a usual lane of
//! `concurrency_per_server` databases at once and a slow lane of one for
//! databases whose checks timed out or ran long lately, so that hostile
//! databases cannot take the lanes everybody else's scores use; each
//! database within its time budget, the whole within the round's deadline.

use super::{Job, LabCache};
use crate::control::ServerName;
use crate::provision::in_database;
use crate::scoring::checks::{self, Limits};
use crate::scoring::evaluate::{self, TaskOutcome};
use crate::settings::{PgServerSettings, Settings};
use futures_util::StreamExt;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What one database's evaluation gave, how long it took, and what was
/// written into its `pglab` schema (`None`: nothing needed writing).
pub(super) type Evaluated = (
    Job,
    Result<Vec<TaskOutcome>, String>,
    Duration,
    Option<Result<in_database::Written, String>>,
);

/// Evaluates `jobs`; past the round's deadline, what is done is kept and
/// the databases still running are dropped (their sessions are ended) and
/// stay "changed" for the next round.
pub(super) async fn run(
    settings: &Settings,
    labs: &BTreeMap<String, LabCache>,
    limits: Limits,
    jobs: Vec<Job>,
) -> Vec<Evaluated> {
    let per_server = settings.scoring.concurrency_per_server.max(1);
    let round_deadline = tokio::time::sleep(Duration::from_secs(
        settings.scoring.round_deadline_secs.max(1),
    ));
    let mut by_lane: BTreeMap<(ServerName, bool), Vec<Job>> = BTreeMap::new();
    for j in jobs {
        by_lane
            .entry((j.server.clone(), j.slow))
            .or_default()
            .push(j);
    }
    let runs = by_lane.into_iter().map(|((server, slow), jobs)| {
        let s = settings
            .server(server.as_str())
            .expect("placed on a configured server");
        futures_util::stream::iter(jobs)
            .map(move |job| score_one(s, labs, limits, job))
            .buffer_unordered(if slow { 1 } else { per_server })
            .boxed()
    });
    let mut results = Vec::new();
    let mut all = futures_util::stream::select_all(runs);
    tokio::pin!(round_deadline);
    loop {
        tokio::select! {
            next = all.next() => match next {
                Some(r) => results.push(r),
                None => break,
            },
            _ = &mut round_deadline => {
                tracing::warn!("a scoring round reached its deadline; the rest waits for the next round");
                break;
            }
        }
    }
    results
}

/// One database, within its budget: each check is ended from outside after
/// its limit, and the database as a whole gets that for every check.
async fn score_one(
    server: &PgServerSettings,
    labs: &BTreeMap<String, LabCache>,
    limits: Limits,
    job: Job,
) -> Evaluated {
    let started = Instant::now();
    let cache = &labs[job.lab.as_str()];
    let Some(expected) = &cache.expected else {
        let why = "the lab's reference database cannot be read".to_string();
        return (job, Err(why), started.elapsed(), None);
    };
    let checks: usize = cache.lab.tasks.iter().map(|t| t.checks.len()).sum();
    // A run on a hidden dataset may wait for its turn and then take twice
    // the statement timeout (its views, then its query), and a second more.
    let hidden: usize = expected
        .iter()
        .flatten()
        .map(|e| match e {
            checks::Expected::Rows(_, wants) => wants.len(),
            _ => 0,
        })
        .sum();
    let most = (limits.statement_timeout + checks::GRACE + Duration::from_secs(2))
        * (checks as u32 + 1)
        + (limits.statement_timeout * 4 + Duration::from_secs(2)) * hidden as u32;
    let scored = tokio::time::timeout(
        most,
        evaluate::score_database(
            server,
            job.db.as_str(),
            job.owner.as_str(),
            &cache.lab,
            expected,
            &limits,
        ),
    )
    .await;
    let result = match scored {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!("scoring took longer than {} s", most.as_secs())),
    };
    let took = started.elapsed();
    let written = match &result {
        Ok(outcomes) => write_progress(server, cache, &job, outcomes).await,
        Err(_) => None,
    };
    (job, result, took, written)
}

/// The database's own `pglab.progress` rows, when they changed (or the
/// database or lab is new to them), in the same lane as the evaluation.
async fn write_progress(
    server: &PgServerSettings,
    cache: &LabCache,
    job: &Job,
    outcomes: &[TaskOutcome],
) -> Option<Result<in_database::Written, String>> {
    let db = cache.dbs.get(job.db.as_str());
    let tasks_too = db.and_then(|d| d.written_for) != Some((job.oid, cache.key.1));
    let same = db.and_then(|d| d.outcomes.as_deref()) == Some(outcomes);
    if same && !tasks_too {
        return None;
    }
    let progress = in_database::Progress {
        lab: &cache.lab,
        tasks: outcomes
            .iter()
            .map(|o| in_database::TaskState {
                passed: o.passed,
                points: o.points,
                reason: o.reason.as_deref(),
                hint: o.hint.as_deref(),
            })
            .collect(),
        checked_at: chrono::Utc::now(),
    };
    let written = in_database::write(server, &job.db, &progress, tasks_too).await;
    Some(written.map_err(|e| crate::pgconn::db_message(&e)))
}
