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

/// Takes the final state of the job's database: the lab's `after_deadline`
/// policy first (no session of the student's can then hold a lock that
/// stalls it), then a snapshot and the score of that same moment, recorded
/// with how late it was and why. A final state taken already has its
/// policy applied again (the job that took it may have died before).
pub(super) async fn take_final(
    settings: &Settings,
    store: &Store,
    job: &JobRecord,
) -> anyhow::Result<Vec<String>> {
    let db: String = param(job, "database")?;
    let late_reason: Option<String> = param(job, "late_reason")?;
    let lab = lab(store, &job.lab).await?;
    let (rec, server) = place(settings, store, &job.lab, &db).await?;
    if let Some(f) = store.final_state(&job.lab, &db).await? {
        deadline::enforce(server, &db, &rec.owner, f.policy, false).await?;
        store.mark_enforced(f.id).await?;
        return Ok(vec![format!(
            "the final state was taken at {}; after the deadline: {}",
            when(f.taken_at),
            f.policy.name()
        )]);
    }
    // The deadline may have moved since the job was queued.
    let due = super::evidence::deadlines(store, &lab)
        .await?
        .get(&db)
        .copied();
    let Some(due) = due.filter(|d| *d <= Utc::now()) else {
        let at = due.map_or_else(|| "away".to_string(), |d| format!("to {}", when(d)));
        return Ok(vec![format!(
            "the deadline of {db} moved {at}: nothing taken now"
        )]);
    };
    deadline::enforce(server, &db, &rec.owner, lab.after_deadline, false).await?;
    let state = final_state_now(settings, server, job, (&db, &rec.owner), &lab).await?;
    let (snap, snapshot_error) = match state.taken {
        Ok(t) => (
            Some(record(settings, store, (&job.lab, &db), SnapshotKind::Final, &t).await?),
            None,
        ),
        Err(e) => (None, Some(format!("{e}"))),
    };
    let taken_at = state.at;
    let tasks = final_tasks(&lab, &state.outcomes);
    let late = deadline::is_late(due, taken_at);
    let reason = late.then(|| late_why(late_reason, due, taken_at));
    let new = NewFinal {
        lab: &job.lab,
        database: &db,
        deadline: due,
        taken_at,
        late,
        reason: reason.as_deref(),
        snapshot_id: snap.as_ref().map(|s| s.id),
        tasks: &tasks,
        max_points: lab.tasks.iter().map(|t| t.points as i32).sum(),
        policy: lab.after_deadline,
        snapshot_error: snapshot_error.as_deref(),
    };
    let Some(id) = store.record_final(&new).await? else {
        return Ok(vec![
            "not recorded: another worker was first, or the deadline moved".into(),
        ]);
    };
    store.mark_enforced(id).await?;
    let points: u32 = tasks.iter().map(|t| t.points).sum();
    let from = snap.as_ref().map_or_else(
        || format!("no snapshot ({})", snapshot_error.as_deref().unwrap_or("")),
        describe,
    );
    let mut summary = vec![
        format!(
            "final score {points} of {} points, from {from}",
            new.max_points
        ),
        format!("after the deadline: {}", lab.after_deadline.name()),
    ];
    summary.extend(reason.map(|r| format!("late: {r}")));
    Ok(summary)
}

/// The final snapshot and score; when the dump fails (a student's lock
/// held it up, their DDL changed a table under it), their sessions are
/// ended and it is taken once more.
async fn final_state_now(
    settings: &Settings,
    server: &crate::settings::PgServerSettings,
    job: &JobRecord,
    (db, owner): (&str, &crate::ident::PgName),
    lab: &crate::lab::Lab,
) -> anyhow::Result<deadline::Final> {
    let limits = Limits::of(&settings.scoring);
    let expected = evaluate::expectations(server, lab, &limits).await?;
    let folder = snapshot::folder(&settings.data_dir, job.lab.as_str(), db);
    let mut tries = 0;
    loop {
        tries += 1;
        let name = deadline::snapshot_name(job.id, "final");
        let state = deadline::take_final(
            server,
            (db, owner),
            (lab, &expected, &limits),
            (&folder, &name),
        )
        .await?;
        match &state.taken {
            Err(e) if e.is_dump_failure() && tries == 1 => {
                tracing::info!(db, error = %e, "the final snapshot failed: sessions ended, tried again");
                let admin = crate::pgconn::connect(server, "postgres").await?;
                deadline::end_participant_sessions(&admin, db, &server.admin_user).await?;
            }
            _ => return Ok(state),
        }
    }
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

/// Whether `database` was closed at its deadline (`read-only` or `lock`):
/// its participant may not replace it (a reset, a hand-in) with one they
/// own again.
pub async fn closed(store: &Store, lab: &LabId, database: &str) -> Result<bool, StoreError> {
    Ok(store
        .final_state(lab, database)
        .await?
        .is_some_and(|f| f.policy != crate::lab::AfterDeadline::KeepOpen))
}

/// After a database was replaced (a lab master's reset or restore), its
/// deadline policy applies to the new one too.
pub async fn reenforce(settings: &Settings, store: &Store, lab: &LabId, database: &str) {
    let applied = async {
        let Some(f) = store.final_state(lab, database).await? else {
            return Ok::<_, anyhow::Error>(());
        };
        let (rec, server) = place(settings, store, lab, database).await?;
        deadline::enforce(server, database, &rec.owner, f.policy, false).await?;
        Ok(())
    };
    if let Err(e) = applied.await {
        tracing::error!(%lab, database, error = %format!("{e:#}"), "the deadline policy could not be applied again");
    }
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
