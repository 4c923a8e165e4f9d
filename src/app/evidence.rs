//! Evidence on time, in every pglab process: a ticker that queues the
//! periodic snapshots (each database at its own moment of the interval, so
//! that a class is not dumped at once) and the final state of each
//! database whose deadline passed, also when pglab was not running then.
//! The jobs themselves are in `app::snapshots`. It also deletes expired
//! exports.

use super::Queue;
use crate::control::{DatabaseRecord, JobKind, NewJob, Store, StoreError};
use crate::evidence::deadline;
use crate::ident::{LabId, Username};
use crate::lab::{Lab, SnapshotRule};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

/// How often each process looks for due snapshots and deadlines.
pub const TICK: Duration = Duration::from_secs(5);
/// A final state whose job failed is tried again after this long.
const FINAL_RETRY_SECS: i64 = 300;

/// Per process: the interval each database was last looked at in, so that
/// the control database is asked once per interval, not once per tick.
type Seen = HashMap<(LabId, String), i64>;

pub fn start(
    settings: std::sync::Arc<crate::settings::Settings>,
    store: Store,
    queue: Queue,
) -> tokio::task::AbortHandle {
    let started = Utc::now();
    tokio::spawn(async move {
        let mut seen = Seen::new();
        loop {
            match tick(&store, started, &mut seen).await {
                Ok(0) => {}
                Ok(_) => queue.queued(),
                Err(e) => tracing::warn!(error = %e, "scheduling snapshots and final states"),
            }
            if super::mail::automatic(&settings, &store).await > 0 {
                queue.queued();
            }
            if let Err(e) = super::exports::expire(&settings, &store).await {
                tracing::warn!(error = %e, "deleting expired exports");
            }
            tokio::time::sleep(TICK).await;
        }
    })
    .abort_handle()
}

/// Queues what is due now; returns how many jobs it queued. `started`:
/// when this process started (a deadline before it passed while pglab was
/// not running).
pub async fn tick(
    store: &Store,
    started: DateTime<Utc>,
    seen: &mut Seen,
) -> Result<usize, StoreError> {
    let now = Utc::now();
    let mut queued = 0;
    for spec in store.lab_specs().await? {
        let lab = &spec.lab;
        if lab.snapshots.is_none() && lab.deadline.is_none() {
            continue;
        }
        let dbs = store.databases(&lab.id).await?;
        if let Some(rule) = lab.snapshots {
            queued += schedule_snapshots(store, lab, rule, &dbs, now, seen).await?;
        }
        if lab.deadline.is_some() {
            queued += schedule_finals(store, lab, &dbs, now, started).await?;
        }
    }
    Ok(queued)
}

/// Where in each interval a database's snapshot falls: spread evenly by a
/// hash of its name.
fn phase(lab: &LabId, db: &str, every: u64) -> i64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{lab}/{db}").as_bytes());
    let n = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
    (n % every.max(1)) as i64
}

/// The interval `db` is in at `now`.
pub fn period(lab: &LabId, db: &str, every: Duration, now: DateTime<Utc>) -> i64 {
    let every = every.as_secs().max(1);
    (now.timestamp() - phase(lab, db, every)).div_euclid(every as i64)
}

async fn schedule_snapshots(
    store: &Store,
    lab: &Lab,
    rule: SnapshotRule,
    dbs: &[DatabaseRecord],
    now: DateTime<Utc>,
    seen: &mut Seen,
) -> Result<usize, StoreError> {
    let mut queued = 0;
    for db in dbs {
        let p = period(&lab.id, &db.name, rule.every, now);
        let key = (lab.id.clone(), db.name.to_string());
        if seen.get(&key) == Some(&p) {
            continue;
        }
        let job = NewJob {
            kind: JobKind::Snapshot,
            lab: &lab.id,
            lock_key: crate::control::database_key(&lab.id, &db.name),
            title: format!("Snapshot of {}", db.name),
            started_by: "pglab",
            params: serde_json::json!({ "database": db.name.as_str(), "kind": "periodic" }),
            max_attempts: 2,
        };
        if store
            .schedule_snapshot(&lab.id, &db.name, p, &job)
            .await?
            .is_some()
        {
            queued += 1;
        }
        seen.insert(key, p);
    }
    Ok(queued)
}

/// The people working in each database.
async fn members(
    store: &Store,
    lab: &LabId,
) -> Result<BTreeMap<String, Vec<Username>>, StoreError> {
    let mut out: BTreeMap<String, Vec<Username>> = BTreeMap::new();
    for p in store.participants(lab).await? {
        out.entry(p.database.to_string())
            .or_default()
            .push(p.username);
    }
    Ok(out)
}

/// Each database's deadline (the lab's, or a member's extension).
pub async fn deadlines(
    store: &Store,
    lab: &Lab,
) -> Result<BTreeMap<String, DateTime<Utc>>, StoreError> {
    let ext: BTreeMap<Username, DateTime<Utc>> = store
        .extensions(&lab.id)
        .await?
        .into_iter()
        .map(|e| (e.username, e.until))
        .collect();
    let members = members(store, &lab.id).await?;
    let mut out = BTreeMap::new();
    for db in store.databases(&lab.id).await? {
        let people: Vec<&Username> = members
            .get(db.name.as_str())
            .into_iter()
            .flatten()
            .collect();
        if let Some(d) = deadline::database_deadline(lab.deadline, &people, &ext) {
            out.insert(db.name.to_string(), d);
        }
    }
    Ok(out)
}

async fn schedule_finals(
    store: &Store,
    lab: &Lab,
    dbs: &[DatabaseRecord],
    now: DateTime<Utc>,
    started: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let finals = store.final_states(&lab.id).await?;
    // Done: taken and its policy applied. A final state whose policy is not
    // applied yet (its job died between the two) gets a job that applies it.
    let done: BTreeSet<&str> = finals
        .iter()
        .filter(|f| f.enforced)
        .map(|f| f.database.as_str())
        .collect();
    if dbs.iter().all(|d| done.contains(d.name.as_str())) {
        return Ok(0);
    }
    let mut due = deadlines(store, lab).await?;
    for f in finals.iter().filter(|f| !f.enforced) {
        due.insert(f.database.clone(), f.deadline);
    }
    let mut queued = 0;
    for db in dbs.iter().filter(|d| !done.contains(d.name.as_str())) {
        let Some(&at) = due.get(db.name.as_str()).filter(|d| **d <= now) else {
            continue;
        };
        let key = crate::control::database_key(&lab.id, &db.name);
        let failed_recently = store
            .last_job_at(JobKind::Final, &key)
            .await?
            .is_some_and(|t| (now - t).num_seconds() < FINAL_RETRY_SECS);
        if failed_recently && store.active_job(&key).await?.is_none() {
            continue;
        }
        let late_reason = (started > at).then(|| {
            format!(
                "pglab was not running at the deadline; taken when it started again at {}",
                started.format("%Y-%m-%d %H:%M:%S UTC")
            )
        });
        let job = NewJob {
            kind: JobKind::Final,
            lab: &lab.id,
            lock_key: key,
            title: format!("Final state of {}", db.name),
            started_by: "pglab",
            params: serde_json::json!({
                "database": db.name.as_str(),
                "deadline": at,
                "late_reason": late_reason,
            }),
            max_attempts: 3,
        };
        if store.enqueue_job(&job, 1).await?.is_some() {
            queued += 1;
        }
    }
    Ok(queued)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn databases_fall_at_different_moments_of_an_interval() {
        let lab = LabId::parse("dbs").unwrap();
        let every = Duration::from_secs(1800);
        let phases: BTreeSet<i64> = (0..50)
            .map(|i| phase(&lab, &format!("dbs_u{i}"), every.as_secs()))
            .collect();
        assert!(phases.len() > 40, "{phases:?}");
        assert!(phases.iter().all(|p| (0..1800).contains(p)));
        let t = chrono::TimeZone::timestamp_opt(&Utc, 1_800_000_000, 0).unwrap();
        let p = period(&lab, "dbs_u1", every, t);
        assert_eq!(
            period(&lab, "dbs_u1", every, t + chrono::Duration::seconds(1800)),
            p + 1
        );
    }
}
