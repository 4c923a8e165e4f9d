//! Moving participants' databases between Postgres servers: `pglab move`
//! queues one move, `pglab drain` one per database of a server. A move is
//! a job of the durable queue (any pglab process runs it; one interrupted
//! by a crash is run again from where it stopped): the target is made
//! ready (roles, template), the database copied there while it is closed
//! on the source, the placement switched, then the source dropped. Until
//! the switch the participant's database is the source's; after it, the
//! target's, and their page shows the new psql command.

use crate::control::{Claim, DatabaseRecord, JobKind, JobRecord, NewJob, ServerName, Store};
use crate::ident::{LabId, PgName, Username};
use crate::provision::{self, placement, relocate, Placement};
use crate::settings::{PgServerSettings, Settings};
use anyhow::{anyhow, bail};

/// Why a move could not be queued.
#[derive(Debug, thiserror::Error)]
pub enum StartMoveError {
    #[error("{0}")]
    Refused(String),
    #[error("a move of {0} is already waiting or running")]
    Busy(PgName),
    #[error(transparent)]
    Provision(#[from] provision::ProvisionError),
    #[error(transparent)]
    Store(#[from] crate::control::StoreError),
}

/// A move that was queued.
#[derive(Debug, Clone, serde::Serialize)]
pub struct QueuedMove {
    pub job: i64,
    pub lab: LabId,
    pub database: PgName,
    pub from: String,
    pub to: String,
}

/// Queues moving `user`'s database of `lab` to server `to`.
pub async fn start_move(
    settings: &Settings,
    store: &Store,
    queue: &super::Queue,
    (lab, user): (&LabId, &Username),
    to: &str,
    by: &str,
) -> Result<QueuedMove, StartMoveError> {
    let Some(p) = store
        .participants(lab)
        .await?
        .into_iter()
        .find(|p| &p.username == user)
    else {
        return Err(StartMoveError::Refused(format!(
            "{user} is not a participant of lab {lab}"
        )));
    };
    let rec = database(store, lab, p.database.as_str()).await?;
    if rec.server.as_str() == to {
        return Err(StartMoveError::Refused(format!(
            "{} is on server {to} already",
            rec.name
        )));
    }
    let bytes = source_size(settings, &rec)
        .await
        .map_err(StartMoveError::Refused)?;
    if let Some(why) = placement::refusal(settings, store, lab, to, Some(bytes)).await? {
        return Err(StartMoveError::Refused(format!("cannot move to {why}")));
    }
    let queued = enqueue(store, lab, &rec, to, by).await?;
    queue.queued();
    Ok(queued)
}

/// Queues moving every database on `server` to the others (least-loaded
/// first, within their capacity); the server gets no new ones meanwhile
/// only if it is down or full (take it out of the config after the drain).
pub async fn start_drain(
    settings: &Settings,
    store: &Store,
    queue: &super::Queue,
    server: &str,
    by: &str,
) -> Result<Vec<QueuedMove>, StartMoveError> {
    if settings.server(server).is_none() {
        return Err(StartMoveError::Refused(format!(
            "server {server:?} is not in the config"
        )));
    }
    let databases = store.databases_on(server).await?;
    let targets = placement::drain_targets(settings, store, server, &databases).await?;
    let mut queued = vec![];
    for ((lab, rec), to) in databases.iter().zip(targets) {
        match enqueue(store, lab, rec, &to, by).await {
            Ok(q) => queued.push(q),
            Err(StartMoveError::Busy(_)) => {}
            Err(e) => return Err(e),
        }
    }
    queue.queued();
    Ok(queued)
}

/// The size of a database on its server, or why it cannot be read.
async fn source_size(settings: &Settings, rec: &DatabaseRecord) -> Result<u64, String> {
    let server = settings
        .server(&rec.server)
        .ok_or_else(|| format!("server {} is not in the config", rec.server))?;
    let sizes = placement::database_sizes(server).await.map_err(|e| {
        format!("the database's server does not answer ({e}): it cannot be moved now")
    })?;
    sizes
        .get(rec.name.as_str())
        .copied()
        .ok_or_else(|| format!("{} is missing on server {}", rec.name, rec.server))
}

async fn database(store: &Store, lab: &LabId, db: &str) -> Result<DatabaseRecord, StartMoveError> {
    store
        .databases(lab)
        .await?
        .into_iter()
        .find(|d| d.name.as_str() == db)
        .ok_or_else(|| StartMoveError::Refused(format!("{db} is not a database of lab {lab}")))
}

async fn enqueue(
    store: &Store,
    lab: &LabId,
    rec: &DatabaseRecord,
    to: &str,
    by: &str,
) -> Result<QueuedMove, StartMoveError> {
    let key = crate::control::database_key(lab, rec.name.as_str());
    if store.move_pending(&key).await? {
        return Err(StartMoveError::Busy(rec.name.clone()));
    }
    let from = rec.server.to_string();
    let job = NewJob {
        kind: JobKind::Move,
        lab,
        lock_key: key,
        title: format!("Move of {} from {from} to {to}", rec.name),
        started_by: by,
        params: serde_json::json!({ "database": rec.name.as_str(), "from": from, "to": to }),
        max_attempts: 3,
    };
    let id = store
        .enqueue_job(&job, i64::MAX)
        .await?
        .ok_or_else(|| StartMoveError::Busy(rec.name.clone()))?;
    tracing::info!(%lab, database = %rec.name, from, to, by, job = id, "move queued");
    Ok(QueuedMove {
        job: id,
        lab: lab.clone(),
        database: rec.name.clone(),
        from,
        to: to.to_string(),
    })
}

/// Runs a claimed move job and records its end.
pub async fn run_move_job(settings: &Settings, store: &Store, job: &JobRecord, claim: Claim<'_>) {
    let (summary, error) = match move_database(settings, store, job).await {
        Ok(summary) => (summary, None),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "move failed");
            (vec![], Some(format!("{e:#}")))
        }
    };
    match store.finish_job(claim, &summary, error.as_deref()).await {
        Ok(true) => {}
        Ok(false) => tracing::warn!("the move's job was taken over meanwhile"),
        Err(e) => tracing::error!(error = %e, "could not record the end of a move"),
    }
}

/// What a move job names.
struct Params<'s> {
    db: PgName,
    from: &'s PgServerSettings,
    to: &'s PgServerSettings,
}

fn params<'s>(settings: &'s Settings, job: &JobRecord) -> anyhow::Result<Params<'s>> {
    let text =
        |name: &str| -> anyhow::Result<String> { super::snapshots::param::<String>(job, name) };
    let server = |name: String| {
        settings
            .server(&name)
            .ok_or_else(|| anyhow!("server {name} is not in the config"))
    };
    Ok(Params {
        db: PgName::from_catalog(text("database")?),
        from: server(text("from")?)?,
        to: server(text("to")?)?,
    })
}

/// Longest a move may copy: a database that takes longer (or a student's
/// code that makes its restore sleep) fails the move; it stays where it was.
const COPY_LIMIT: std::time::Duration = std::time::Duration::from_secs(3600);
/// Longest a move waits for an apply of its lab to end.
const APPLY_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

async fn move_database(
    settings: &Settings,
    store: &Store,
    job: &JobRecord,
) -> anyhow::Result<Vec<String>> {
    let p = params(settings, job)?;
    let rec = database(store, &job.lab, p.db.as_str()).await?;
    if rec.server.as_str() == p.to.name {
        // Switched by an earlier attempt, which stopped before the end.
        return finish(settings, store, job, &rec, &p).await;
    }
    if rec.server.as_str() != p.from.name {
        bail!(
            "{} is on server {} now, not on {}: nothing was done",
            p.db,
            rec.server,
            p.from.name
        );
    }
    let bytes = source_size(settings, &rec)
        .await
        .map_err(anyhow::Error::msg)?;
    if let Some(why) =
        placement::refusal(settings, store, &job.lab, &p.to.name, Some(bytes)).await?
    {
        bail!("cannot move to {why}; nothing was done");
    }
    let mut summary = prepare_target(settings, store, &job.lab, &rec, &p).await?;
    let moving = moving(store, job, &rec).await?;
    let folder = settings.data_dir.join("moved").join(job.lab.as_str());
    let copied = async {
        let file = tokio::time::timeout(COPY_LIMIT, relocate::copy(p.from, p.to, &moving, &folder))
            .await
            .map_err(|_| {
                anyhow!(
                    "the copy did not end within {} minutes",
                    COPY_LIMIT.as_secs() / 60
                )
            })??;
        if !store
            .switch_database(&job.lab, &rec.name, &p.from.name, &p.to.name)
            .await?
        {
            bail!(
                "{} was moved or removed by somebody else meanwhile",
                rec.name
            );
        }
        Ok(file)
    };
    let file = match copied.await {
        Ok(file) => file,
        Err(e) => {
            // Not switched (checked: an error may hide a commit): the
            // database stays where it was, open again.
            let placed = database(store, &job.lab, p.db.as_str()).await;
            if placed.is_ok_and(|d| d.server.as_str() == p.from.name) {
                let _ = relocate::drop_copy(p.to, &moving).await;
                if let Err(r) = give_access(store, &job.lab, &rec, p.from).await {
                    tracing::error!(error = %format!("{r:#}"), "could not open the source again after a failed move");
                }
            }
            return Err(e.context(format!("moving {} to {}", rec.name, p.to.name)));
        }
    };
    summary.push(format!(
        "{} copied to server {} (its dump is kept: {})",
        rec.name,
        p.to.name,
        file.display()
    ));
    summary.extend(finish(settings, store, job, &rec, &p).await?);
    Ok(summary)
}

/// What `job` moves, as the provisioning code names it.
async fn moving<'r>(
    store: &Store,
    job: &JobRecord,
    rec: &'r DatabaseRecord,
) -> anyhow::Result<relocate::Moving<'r>> {
    let lab = super::snapshots::lab(store, &job.lab).await?;
    Ok(relocate::Moving {
        db: &rec.name,
        owner: &rec.owner,
        search_path: provision::postgres::search_path(&lab.schemas()),
        job: job.id,
    })
}

/// After the switch: the database open to its participants on the new
/// server, the source gone, the monitoring files rewritten.
async fn finish(
    settings: &Settings,
    store: &Store,
    job: &JobRecord,
    rec: &DatabaseRecord,
    p: &Params<'_>,
) -> anyhow::Result<Vec<String>> {
    give_access(store, &job.lab, rec, p.to).await?;
    let mut summary = vec![format!(
        "{} is placed on {} now: its participants connect there",
        rec.name, p.to.name
    )];
    summary.extend(drop_source(settings, store, &job.lab, p).await?);
    let options = super::labs::default_generate_options(settings);
    if let Err(e) = super::labs::write_generated(settings, store, &job.lab, None, &options).await {
        summary.push(format!(
            "the monitoring files could not be written again: {e}"
        ));
    }
    Ok(summary)
}

/// The database on `server` given to its participants as it should be:
/// under its deadline's closing policy if one was applied, else open to
/// its owner like a cloned database.
async fn give_access(
    store: &Store,
    lab: &LabId,
    rec: &DatabaseRecord,
    server: &PgServerSettings,
) -> anyhow::Result<()> {
    let policy = store
        .final_state(lab, rec.name.as_str())
        .await?
        .map(|f| f.policy)
        .filter(|p| *p != crate::lab::AfterDeadline::KeepOpen);
    match policy {
        Some(policy) => {
            crate::evidence::deadline::enforce(server, rec.name.as_str(), &rec.owner, policy, false)
                .await?
        }
        None => relocate::open_to_owner(server, &rec.name, &rec.owner).await?,
    }
    Ok(())
}

/// The lab's apply lock, waited for up to `APPLY_WAIT`.
async fn apply_lock(store: &Store, lab: &LabId) -> anyhow::Result<crate::control::ApplyLock> {
    let since = std::time::Instant::now();
    loop {
        if let Some(lock) = store.lock_apply(lab).await? {
            return Ok(lock);
        }
        if since.elapsed() > APPLY_WAIT {
            bail!(
                "lab {lab} was being applied for {} minutes: move again when that has ended",
                APPLY_WAIT.as_secs() / 60
            );
        }
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
}

/// The target's baseline, the lab's template and the roles the database
/// needs there, made by the provisioning code as an apply would.
async fn prepare_target(
    settings: &Settings,
    store: &Store,
    lab: &LabId,
    rec: &DatabaseRecord,
    p: &Params<'_>,
) -> anyhow::Result<Vec<String>> {
    let loaded = super::labs::stored_lab(settings, store, lab)
        .await?
        .ok_or_else(|| anyhow!("lab {lab} is gone"))?;
    let members = store
        .participants(lab)
        .await?
        .into_iter()
        .filter(|m| m.database == rec.name)
        .map(|m| m.username)
        .collect();
    let placement = Placement {
        db: rec.name.clone(),
        owner: rec.owner.clone(),
        server: p.to.name.clone(),
        members,
    };
    // As an apply does, and never beside one of the same lab.
    let mut lock = apply_lock(store, lab).await?;
    let prepared = lock
        .guard(async {
            let plan = provision::plan_target(settings, store, loaded, placement).await?;
            provision::apply(settings, store, &plan, |_, _| {}).await?;
            Ok::<_, provision::ProvisionError>(plan.changes.iter().map(|c| c.to_string()).collect())
        })
        .await;
    lock.release().await;
    Ok(prepared??)
}

/// The source database and what belonged to it there, gone.
async fn drop_source(
    settings: &Settings,
    store: &Store,
    lab: &LabId,
    p: &Params<'_>,
) -> anyhow::Result<Vec<String>> {
    let kept = store
        .kept_previous(lab, &p.db, &ServerName::new(p.from.name.as_str()))
        .await?;
    let previous: Vec<String> = kept.iter().map(|(_, name)| name.clone()).collect();
    let replaced = settings.data_dir.join("replaced").join(lab.as_str());
    let done = relocate::drop_source(p.from, &p.db, &previous, &replaced).await?;
    for (id, _) in kept {
        store
            .forget_previous(id, "dumped and dropped when the database moved")
            .await?;
    }
    Ok(done)
}

/// A move interrupted once too often: if it never switched, what it left
/// on the target is removed and the source is open again.
pub async fn give_up(settings: &Settings, store: &Store, job: &JobRecord) -> anyhow::Result<()> {
    let p = params(settings, job)?;
    let rec = database(store, &job.lab, p.db.as_str()).await?;
    if rec.server.as_str() == p.from.name {
        relocate::drop_copy(p.to, &moving(store, job, &rec).await?).await?;
        give_access(store, &job.lab, &rec, p.from).await?;
    }
    Ok(())
}

/// How long a participant's page says that their database moved.
const MOVED_NOTICE_DAYS: i64 = 14;

/// What the participant's page says of a move of their database: one
/// queued or running, or one in the last two weeks.
pub async fn notice(
    store: &Store,
    m: &crate::control::Membership,
) -> Result<Option<String>, crate::control::StoreError> {
    let key = crate::control::database_key(&m.lab, m.database.as_str());
    if let Some(job) = store.active_job(&key).await? {
        if job.kind == JobKind::Move {
            return Ok(Some(
                "Your database is being moved to another server right now: psql sessions in it were ended and it opens again when the move is done (a minute or a few); then connect with the command shown here, which will change.".into(),
            ));
        }
    }
    Ok(m.moved
        .as_ref()
        .filter(|(_, at)| chrono::Utc::now() - *at < chrono::Duration::days(MOVED_NOTICE_DAYS))
        .map(|(from, at)| {
            format!(
                "Your database moved from server {from} to another server on {} UTC, with all its content: connect with the command above; the old one no longer works.",
                at.format("%Y-%m-%d %H:%M")
            )
        }))
}
