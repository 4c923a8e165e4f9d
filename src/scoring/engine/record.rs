//! Keeping what an evaluation found: the cache of each database (outcomes,
//! rest after timeouts, progress), and in the control database the tasks
//! whose state changed.

use super::{DbCache, Engine, Job};
use crate::control::{Store, StoredTask};
use crate::provision::in_database;
use crate::scoring::activity::Activity;
use crate::scoring::evaluate::{self, TaskOutcome};
use chrono::{DateTime, Utc};
use std::time::{Duration, Instant};

impl Engine {
    /// Keeps what one database's evaluation found (and saves what changed).
    pub(super) async fn record(
        &mut self,
        job: &Job,
        result: Result<Vec<TaskOutcome>, String>,
        took: Duration,
        a: &Activity,
        now: DateTime<Utc>,
    ) {
        let (interval, max_rest) = (
            Duration::from_secs(self.settings.scoring.interval_secs.max(1)),
            Duration::from_secs(self.settings.scoring.max_backoff_secs),
        );
        let lab = self.labs.get_mut(job.lab.as_str()).expect("lab cached");
        let tasks: Vec<String> = lab.lab.tasks.iter().map(|t| t.id.clone()).collect();
        let cache = lab.dbs.entry(job.db.to_string()).or_default();
        cache.last_scored = Some(Instant::now());
        cache.last_took = took;
        let mut outcomes = match result {
            Ok(outcomes) => outcomes,
            Err(e) => {
                cache.note_timeouts(e.starts_with("scoring took longer"), interval, max_rest);
                tracing::warn!(lab = %job.lab, db = %job.db, error = %e, "cannot score a database");
                self.health.check_failed("unreachable");
                cache.error = Some(e);
                cache.signature = None;
                return;
            }
        };
        // A lock held by the student is no reason to rest.
        let timed_out = outcomes
            .iter()
            .any(|o| matches!(o.class, Some("timeout" | evaluate::SKIPPED)));
        cache.note_timeouts(timed_out, interval, max_rest);
        // A task not checked this time (its session used up, a hidden
        // dataset not reachable) is checked again after the rest, even if
        // the database does not change.
        let skipped = outcomes.iter().any(|o| o.class == Some(evaluate::SKIPPED));
        // Tasks not checked this time keep what they had.
        for (i, o) in outcomes.iter_mut().enumerate() {
            if o.class == Some(evaluate::SKIPPED) {
                if let Some(old) = cache.outcomes.as_ref().and_then(|old| old.get(i)) {
                    *o = old.clone();
                }
            }
        }
        for class in outcomes.iter().filter_map(|o| o.class) {
            self.health.check_failed(class);
        }
        let points = |os: &[TaskOutcome]| {
            (
                os.iter().map(|o| o.points).sum::<u32>(),
                os.iter().filter(|o| o.passed).count(),
            )
        };
        let (before, before_passed) = match cache.outcomes.as_deref() {
            Some(old) => points(old),
            None => cache.stored.unwrap_or((0, 0)),
        };
        let (after, after_passed) = points(&outcomes);
        if after > before || after_passed > before_passed {
            cache.last_progress = Some(now);
        }
        let old = cache.outcomes.take().unwrap_or_default();
        save_changes(&self.store, job, &tasks, &old, &outcomes, cache, a, now).await;
        cache.signature = (!skipped).then(|| a.signature.clone());
        // Rows written before this signature are in it, or never count.
        cache.own_writes = None;
        cache.error = None;
        cache.outcomes = Some(outcomes);
    }
}

impl Engine {
    /// Keeps what was written into the database's `pglab` schema: the rows
    /// the change detection will see as pglab's own, and for which database
    /// and lab version the task list is there.
    pub(super) fn note_written(
        &mut self,
        job: &Job,
        written: Option<Result<in_database::Written, String>>,
    ) {
        let Some(written) = written else { return };
        let Some(lab) = self.labs.get_mut(job.lab.as_str()) else {
            return;
        };
        let version = lab.key.1;
        let Some(cache) = lab.dbs.get_mut(job.db.as_str()) else {
            return;
        };
        match written {
            Ok(rows) => {
                cache.own_writes = rows;
                cache.written_for = Some((job.oid, version));
            }
            Err(e) => {
                tracing::warn!(db = %job.db, error = %e, "cannot write pglab.progress");
                cache.own_writes = None;
            }
        }
    }
}

/// Opens or closes the database's session period when participants
/// connected or left since the last round (or this process has not seen
/// the database yet).
pub(super) async fn sessions(
    store: &Store,
    lab: &crate::ident::LabId,
    db: &str,
    cache: &mut DbCache,
    a: &Activity,
) {
    let now = a.connected > 0;
    if cache.connected == Some(now) {
        return;
    }
    let saved = if now {
        let since = a.connected_since.unwrap_or_else(Utc::now);
        store.session_opened(lab, db, since).await
    } else {
        store.session_closed(lab, db, Utc::now()).await
    };
    match saved {
        Ok(()) => cache.connected = Some(now),
        Err(e) => tracing::warn!(error = %e, "cannot record a session period"),
    }
}

/// Stores the tasks whose state changed (learning first-pass times) and the
/// database's progress and activity times.
#[allow(clippy::too_many_arguments)]
async fn save_changes(
    store: &Store,
    job: &Job,
    tasks: &[String],
    old: &[TaskOutcome],
    outcomes: &[TaskOutcome],
    cache: &mut DbCache,
    a: &Activity,
    now: DateTime<Utc>,
) {
    for (i, (task, o)) in tasks.iter().zip(outcomes).enumerate() {
        if old.get(i) == Some(o) {
            continue;
        }
        let stored = StoredTask {
            database: job.db.to_string(),
            task: task.clone(),
            passed: o.passed,
            points: o.points as i32,
            reason: o.reason.clone(),
            first_passed_at: None,
        };
        let change = crate::control::TaskChange {
            task: task.clone(),
            at: now,
            passed: o.passed,
            points: o.points as i32,
            class: (!o.passed).then(|| o.class.unwrap_or("wrong").to_string()),
        };
        if let Err(e) = store.record_task_change(&job.lab, &job.db, &change).await {
            tracing::warn!(error = %e, "cannot record a task's history");
        }
        match store.save_task(&job.lab, &stored, now).await {
            Ok(Some(at)) => {
                cache.first_passed.insert(task.clone(), at);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot save a score"),
        }
    }
    if let Err(e) = store
        .save_progress(
            &job.lab,
            job.db.as_str(),
            cache.last_progress,
            a.last_activity,
        )
        .await
    {
        tracing::warn!(error = %e, "cannot save progress");
    }
}
