//! The final state of a database at its deadline (a job), and moving a
//! participant's deadline.

use super::snapshots::{describe, lab, param, place, record, when};
use crate::control::{FinalTask, JobRecord, NewFinal, SnapshotKind, Store, StoreError};
use crate::evidence::{deadline, snapshot, EvidenceError};
use crate::ident::{LabId, Username};
use crate::scoring::checks::Limits;
use crate::scoring::evaluate;
use crate::settings::Settings;
use chrono::{DateTime, Utc};

/// Takes the final state of the job's database: a snapshot and the score
/// of that same moment, recorded with how late it was and why, then the
/// lab's `after_deadline` policy.
pub(super) async fn take_final(
    settings: &Settings,
    store: &Store,
    job: &JobRecord,
) -> anyhow::Result<Vec<String>> {
    let db: String = param(job, "database")?;
    let due: DateTime<Utc> = param(job, "deadline")?;
    let late_reason: Option<String> = param(job, "late_reason")?;
    if let Some(f) = store.final_state(&job.lab, &db).await? {
        return Ok(vec![format!(
            "the final state was taken already, at {}",
            when(f.taken_at)
        )]);
    }
    let lab = lab(store, &job.lab).await?;
    let (rec, server) = place(settings, store, &job.lab, &db).await?;
    let limits = Limits::of(&settings.scoring);
    let expected = evaluate::expectations(server, &lab, &limits).await?;
    let folder = snapshot::folder(&settings.data_dir, job.lab.as_str(), &db);
    let name = deadline::snapshot_name(job.id, "final");
    let (taken, outcomes) = deadline::take_final(
        server,
        (&db, &rec.owner),
        (&lab, &expected, &limits),
        (&folder, &name),
    )
    .await?;
    let snap = record(
        settings,
        store,
        (&job.lab, &db),
        SnapshotKind::Final,
        &taken,
    )
    .await?;
    let tasks = final_tasks(&lab, &outcomes);
    let late = deadline::is_late(due, taken.taken_at);
    let reason = late.then(|| late_why(late_reason, due, taken.taken_at));
    let new = NewFinal {
        lab: &job.lab,
        database: &db,
        deadline: due,
        taken_at: taken.taken_at,
        late,
        reason: reason.as_deref(),
        snapshot_id: Some(snap.id),
        tasks: &tasks,
        max_points: lab.tasks.iter().map(|t| t.points as i32).sum(),
        policy: lab.after_deadline,
    };
    if store.record_final(&new).await?.is_none() {
        return Ok(vec![
            "another worker recorded the final state meanwhile".into()
        ]);
    }
    deadline::enforce(server, &db, &rec.owner, lab.after_deadline, false).await?;
    let points: u32 = tasks.iter().map(|t| t.points).sum();
    let mut summary = vec![
        format!(
            "final score {points} of {} points, from {}",
            new.max_points,
            describe(&snap)
        ),
        format!("after the deadline: {}", lab.after_deadline.name()),
    ];
    summary.extend(reason.map(|r| format!("late: {r}")));
    Ok(summary)
}

fn final_tasks(lab: &crate::lab::Lab, outcomes: &[evaluate::TaskOutcome]) -> Vec<FinalTask> {
    lab.tasks
        .iter()
        .zip(outcomes)
        .map(|(t, o)| FinalTask {
            task: t.id.clone(),
            passed: o.passed,
            points: o.points,
            reason: o.reason.clone(),
        })
        .collect()
}

/// Why a final state was taken late: pglab was not running (known when the
/// job was queued), or the job waited.
fn late_why(known: Option<String>, due: DateTime<Utc>, taken: DateTime<Utc>) -> String {
    known.unwrap_or_else(|| {
        format!(
            "taken {} s after the deadline: the job waited in the queue",
            (taken - due).num_seconds()
        )
    })
}

/// Why an extension was refused.
#[derive(Debug, thiserror::Error)]
pub enum ExtendError {
    #[error("{0} does not take part in this lab")]
    NotParticipant(String),
    #[error("this lab has no deadline to extend")]
    NoDeadline,
    #[error("the new deadline {0} is not after the lab's deadline")]
    NotLater(String),
    #[error("no such lab")]
    NoSuchLab,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the database could not be opened again: {0}")]
    Reopen(#[from] EvidenceError),
}

/// What an extension did.
#[derive(Debug)]
pub struct Extended {
    pub database: String,
    /// The final state taken before, now replaced (its policy undone).
    pub reopened: bool,
}

/// Moves `user`'s deadline in `lab` to `until`; a final state already taken
/// is set aside (a new one is taken at the new deadline) and the database
/// opened again.
pub async fn extend(
    settings: &Settings,
    store: &Store,
    lab_id: &LabId,
    user: &Username,
    until: DateTime<Utc>,
    by: &str,
) -> Result<Extended, ExtendError> {
    let lab = store.lab(lab_id).await?.ok_or(ExtendError::NoSuchLab)?.lab;
    let lab_deadline = lab.deadline.ok_or(ExtendError::NoDeadline)?;
    if until <= lab_deadline {
        return Err(ExtendError::NotLater(when(until)));
    }
    let place = store
        .database_of(lab_id, user)
        .await?
        .ok_or_else(|| ExtendError::NotParticipant(user.to_string()))?;
    let db = place.database.to_string();
    let superseded = store.extend(lab_id, user, &db, until, by).await?;
    if let Some(f) = &superseded {
        if let Some(server) = settings.server(&place.server) {
            deadline::enforce(server, &db, &place.owner, f.policy, true).await?;
        }
    }
    tracing::info!(lab = %lab_id, %user, until = %until, by, reopened = superseded.is_some(), "deadline extended");
    Ok(Extended {
        database: db,
        reopened: superseded.is_some(),
    })
}

/// A new deadline as people write it: an RFC 3339 time, or `+DURATION`
/// after the lab's deadline (`+90m`, `+24h`, `+2d`).
pub fn parse_until(
    text: &str,
    lab_deadline: Option<DateTime<Utc>>,
) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Some(rest) = text.strip_prefix('+') {
        let d = crate::lab::evidence::parse_duration(rest)
            .ok_or_else(|| format!("{rest:?} is not a duration like 90m, 24h or 2d"))?;
        let base = lab_deadline.ok_or("the lab has no deadline to count from")?;
        return chrono::Duration::from_std(d)
            .map(|d| base + d)
            .map_err(|e| e.to_string());
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| format!("{text:?} is not a time like 2026-12-02T18:00:00+01:00, nor +24h"))
}

/// The recorded final state's score, for people: `7 of 10`.
pub fn final_points(f: &crate::control::FinalState) -> String {
    format!("{} of {}", f.points, f.max_points)
}

/// What staff (and, in part, the participant) see of a database's
/// evidence: its deadline, snapshots and final state.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Evidence {
    pub database: String,
    /// The deadline that applies to this database (extensions included).
    pub deadline: Option<DateTime<Utc>>,
    /// The participant's own extension, if any.
    pub extension: Option<crate::control::Extension>,
    pub after_deadline: crate::lab::AfterDeadline,
    pub snapshot_rule: Option<crate::lab::SnapshotRule>,
    pub final_state: Option<crate::control::FinalState>,
    pub snapshots: Vec<crate::control::SnapshotRecord>,
}

/// The evidence of `user`'s database in `lab`.
pub async fn evidence(
    store: &Store,
    lab: &crate::lab::Lab,
    user: &Username,
    database: &str,
) -> Result<Evidence, StoreError> {
    let deadlines = super::evidence::deadlines(store, lab).await?;
    let extension = store
        .extensions(&lab.id)
        .await?
        .into_iter()
        .find(|e| &e.username == user);
    Ok(Evidence {
        database: database.to_string(),
        deadline: deadlines.get(database).copied(),
        extension,
        after_deadline: lab.after_deadline,
        snapshot_rule: lab.snapshots,
        final_state: store.final_state(&lab.id, database).await?,
        snapshots: store.snapshots(&lab.id, database).await?,
    })
}
