//! Participants: what one needs to reach their database, and a new
//! initial password when theirs is lost.

use crate::control::Store;
use crate::ident::{LabId, PgName, Username};
use crate::provision::{self, ldap};
use crate::settings::{PgServerSettings, Settings};

/// The `psql` command `user` logs in to `database` with.
pub fn psql_command(server: &PgServerSettings, user: &Username, database: &PgName) -> String {
    let host = server.public_host.as_deref().unwrap_or(&server.host);
    format!("psql -h {host} -p {} -U {user} -d {database}", server.port)
}

/// Gives `user`, a participant of `lab`, a new initial password (shown on
/// the credential slips until handed out); `false` when they take no part
/// in the lab. The password is kept before LDAP gets it, so that a
/// password in force is never one pglab lost.
pub async fn reset_password(
    settings: &Settings,
    store: &Store,
    lab: &LabId,
    user: &Username,
) -> Result<bool, ResetError> {
    let takes_part = store
        .participants(lab)
        .await?
        .iter()
        .any(|p| &p.username == user);
    if !takes_part {
        return Ok(false);
    }
    let password = provision::initial_password();
    store.set_initial_password(user, &password).await?;
    let mut dir = ldap::Directory::connect(&settings.ldap).await?;
    let result = dir.set_password(user, &password).await;
    dir.close().await;
    result?;
    Ok(true)
}

#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    #[error(transparent)]
    Store(#[from] crate::control::StoreError),
    #[error(transparent)]
    Ldap(#[from] ldap::LdapError),
}

/// Dumps of reset databases kept per database (older ones are removed).
pub const KEPT_RESET_DUMPS: usize = 5;
/// A participant resets their database at most this often.
pub const STUDENT_RESET_EVERY_MINUTES: i64 = 10;
/// A database larger than this is reset without a dump (the disk is the
/// lab's, not the student's to fill).
pub const RESET_DUMP_MAX_BYTES: i64 = 2 << 30;

/// Who asks for a reset: a participant may do it once per
/// `STUDENT_RESET_EVERY_MINUTES`; the lab master any time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetBy {
    Participant,
    LabMaster,
}

/// Why a reset could not be queued.
#[derive(Debug, thiserror::Error)]
pub enum StartResetError {
    #[error("a reset or hand-in of this database is already waiting; wait until it is done")]
    Busy,
    #[error("this database was reset less than {STUDENT_RESET_EVERY_MINUTES} minutes ago; try again later")]
    TooSoon,
    #[error("this database was closed at its deadline; ask your lab master")]
    Closed,
    #[error(transparent)]
    Store(#[from] crate::control::StoreError),
}

/// Queues putting `database` of `lab` back to the lab's starter state (the
/// current content dumped first, for the lab master). `by` asked for it.
pub async fn start_reset(
    store: &Store,
    queue: &super::Queue,
    lab: &LabId,
    database: &PgName,
    by: &str,
    who: ResetBy,
) -> Result<i64, StartResetError> {
    let key = crate::control::database_key(lab, database);
    if who == ResetBy::Participant {
        let last = store
            .last_job_at(crate::control::JobKind::Reset, &key)
            .await?;
        let every = chrono::Duration::minutes(STUDENT_RESET_EVERY_MINUTES);
        if last.is_some_and(|t| chrono::Utc::now() - t < every) {
            return Err(StartResetError::TooSoon);
        }
        if super::deadlines::closed(store, lab, database).await? {
            return Err(StartResetError::Closed);
        }
    }
    let job = crate::control::NewJob {
        kind: crate::control::JobKind::Reset,
        lab,
        lock_key: key,
        title: format!("Reset of {database}"),
        started_by: by,
        params: serde_json::json!({ "database": database.as_str() }),
        max_attempts: 3,
    };
    // One reset waiting per database at most, and none while hand-ins wait.
    let id = store
        .enqueue_job(&job, 1)
        .await?
        .ok_or(StartResetError::Busy)?;
    queue.queued();
    tracing::info!(%lab, %database, by, job = id, "reset queued");
    Ok(id)
}

/// Runs a claimed reset job and records its end.
pub async fn run_reset_job(
    settings: &Settings,
    store: &Store,
    job: &crate::control::JobRecord,
    claim: crate::control::Claim<'_>,
) {
    let (summary, error) = match reset(settings, store, job).await {
        Ok(summary) => (summary, None),
        Err(e) if super::jobs::requeued_after_lost_lock(store, job, claim, &e).await => return,
        Err(e) => {
            tracing::error!(error = %e, "reset failed");
            (vec![], Some(format!("{e:#}")))
        }
    };
    match store.finish_job(claim, &summary, error.as_deref()).await {
        Ok(true) => {}
        Ok(false) => tracing::warn!("the reset's job was taken over meanwhile"),
        Err(e) => tracing::error!(error = %e, "could not record the end of a reset"),
    }
}

/// Dump (if the database exists: a retry after a crash may find it
/// dropped), drop, and clone the lab's template again, closed to others and
/// with its search path, owned by the same role.
async fn reset(
    settings: &Settings,
    store: &Store,
    job: &crate::control::JobRecord,
) -> anyhow::Result<Vec<String>> {
    use crate::provision::postgres as pg;
    let name = job.params["database"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("job {} names no database", job.id))?;
    let record = store
        .databases(&job.lab)
        .await?
        .into_iter()
        .find(|d| d.name.as_str() == name)
        .ok_or_else(|| anyhow::anyhow!("database {name} is no longer in lab {}", job.lab))?;
    let lab = store
        .lab(&job.lab)
        .await?
        .ok_or_else(|| anyhow::anyhow!("lab {} is gone", job.lab))?
        .lab;
    let server = settings
        .server(&record.server)
        .ok_or_else(|| anyhow::anyhow!("server {} is not in the config", record.server))?;
    // Not while the lab is applied (a prune could drop the database).
    let Some(mut lock) = store.lock_apply(&job.lab).await? else {
        anyhow::bail!(
            "lab {} is being applied right now: reset again when that has ended",
            job.lab
        );
    };
    let reset = lock
        .guard(async {
            let admin = crate::pgconn::connect(server, "postgres").await?;
            let mut summary = vec![];
            summary.extend(put_away(settings, server, &admin, job, &record.name).await?);
            let template =
                pg::template_info(server, &admin, &PgName::template_db(&job.lab)).await?;
            let search_path = pg::search_path(&lab.schemas());
            pg::clone_database(
                server,
                &admin,
                &template,
                &record.name,
                &record.owner,
                &search_path,
            )
            .await?;
            summary.push(format!("{} is the lab's starter again", record.name));
            Ok::<_, anyhow::Error>(summary)
        })
        .await;
    lock.release().await;
    reset?
}

/// The database before a reset: dumped for the lab master (unless it is
/// too large) and dropped; what the summary says about it.
async fn put_away(
    settings: &Settings,
    server: &PgServerSettings,
    admin: &tokio_postgres::Client,
    job: &crate::control::JobRecord,
    db: &PgName,
) -> anyhow::Result<Option<String>> {
    use crate::provision::postgres as pg;
    let folder = settings.data_dir.join("reset").join(job.lab.as_str());
    let size: Option<i64> = admin
        .query_opt(
            "SELECT pg_database_size(oid) FROM pg_database WHERE datname = $1",
            &[&db.as_str()],
        )
        .await?
        .map(|r| r.get(0));
    Ok(match size {
        // A retry after a crash may find it dropped already.
        None => None,
        Some(bytes) if bytes > RESET_DUMP_MAX_BYTES => {
            pg::close_for_admin(server, admin, db).await?;
            pg::drop_database(server, admin, db).await?;
            Some(format!(
                "not dumped: {} is larger than the {} a reset keeps",
                crate::app::human_size(bytes as u64),
                crate::app::human_size(RESET_DUMP_MAX_BYTES as u64)
            ))
        }
        Some(_) => {
            // The job's id keeps two resets in the same second apart.
            let name = format!("{db}-job{}", job.id);
            let dump =
                crate::provision::prune::dump_then_drop(server, admin, db, &name, &folder).await?;
            remove_old_dumps(&folder, db.as_str());
            Some(format!("the database before the reset: {}", dump.display()))
        }
    })
}

/// Keeps the newest `KEPT_RESET_DUMPS` dumps of `db` in `folder`.
fn remove_old_dumps(folder: &std::path::Path, db: &str) {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return;
    };
    let prefix = format!("{db}-");
    let mut dumps: Vec<std::path::PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".dump"))
        })
        .collect();
    // Oldest first (by modification time).
    dumps.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    let old = dumps.len().saturating_sub(KEPT_RESET_DUMPS);
    for p in &dumps[..old] {
        if let Err(e) = std::fs::remove_file(p) {
            tracing::warn!(file = %p.display(), error = %e, "could not remove an old reset dump");
        }
    }
}

/// One moment of a participant's timeline.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Event {
    pub at: chrono::DateTime<chrono::Utc>,
    /// `passed`, `broke`, `failed`, `connected`, `left`, `hand-in`.
    pub kind: &'static str,
    pub what: String,
}

/// A database's timeline, oldest first: each task's passes and breaks
/// (from the task history), and, for staff, the periods with sessions and
/// the hand-ins.
pub async fn timeline(
    store: &Store,
    lab: &crate::lab::Lab,
    database: &PgName,
    for_staff: bool,
) -> Result<Vec<Event>, crate::control::StoreError> {
    let title = |task: &str| {
        lab.tasks
            .iter()
            .find(|t| t.id == task)
            .map_or_else(|| task.to_string(), |t| t.title.clone())
    };
    let mut events = vec![];
    let mut passed_before = std::collections::BTreeSet::new();
    for c in store.task_history(&lab.id, database).await? {
        let kind = match (c.passed, passed_before.contains(&c.task)) {
            (true, _) => "passed",
            (false, true) => "broke",
            (false, false) => "failed",
        };
        if c.passed {
            passed_before.insert(c.task.clone());
        } else {
            passed_before.remove(&c.task);
        }
        // The first "not yet" of a task is where every task starts.
        if kind == "failed" && c.class.as_deref() == Some("wrong") {
            continue;
        }
        let why = c.class.map(|k| format!(" ({k})")).unwrap_or_default();
        events.push(Event {
            at: c.at,
            kind,
            what: format!("{}{why}", title(&c.task)),
        });
    }
    if for_staff {
        for s in store.session_history(&lab.id, database).await? {
            events.push(Event {
                at: s.started_at,
                kind: "connected",
                what: "a session began".into(),
            });
            if let Some(end) = s.ended_at {
                events.push(Event {
                    at: end,
                    kind: "left",
                    what: "the last session ended".into(),
                });
            }
        }
        for h in store.database_submissions(&lab.id, database).await? {
            events.push(Event {
                at: h.uploaded_at,
                kind: "hand-in",
                what: format!(
                    "#{} by {} ({}): {}{}",
                    h.id,
                    h.uploaded_by,
                    h.format,
                    h.status,
                    if h.late { ", late" } else { "" }
                ),
            });
        }
    }
    events.sort_by_key(|e| e.at);
    Ok(events)
}

/// The participants of a lab as the control database holds them, as the
/// list an apply takes (to which new rows are added).
pub fn current_list(records: &[crate::control::ParticipantRecord]) -> crate::lab::Participants {
    crate::lab::Participants(
        records
            .iter()
            .map(|r| crate::lab::Participant {
                username: r.username.clone(),
                name: r.name.clone(),
                email: r.email.clone(),
                group: r.group.clone(),
                server: r.pinned.clone(),
            })
            .collect(),
    )
}

/// What applying `lab` with the complete list `wanted` would change;
/// `None` when there is no such lab. Nothing is changed.
pub async fn plan(
    settings: &Settings,
    store: &Store,
    lab: &LabId,
    wanted: crate::lab::Participants,
) -> Result<Option<provision::Plan>, provision::ProvisionError> {
    let Some(loaded) = store.lab(lab).await? else {
        return Ok(None);
    };
    provision::plan(settings, store, loaded, wanted, false)
        .await
        .map(Some)
}
