//! Labs: checking that a lab's files load, applying a lab with its
//! participants, and writing its monitoring files.

use crate::control::{Claim, JobKind, JobRecord, JobStatus, NewJob, Store, StoreError};
use crate::generate::{self, GenerateError, GenerateOptions};
use crate::ident::LabId;
use crate::lab::{LoadedLab, Participants};
use crate::provision::{self, ApplyReport, Change, Plan, ProvisionError};
use crate::settings::{PgServerSettings, Settings};
use std::path::{Path, PathBuf};

/// Where the generated Prometheus config looks for the SQL exporter, pglab
/// and itself, unless told otherwise.
pub fn default_generate_options(settings: &Settings) -> GenerateOptions {
    GenerateOptions {
        exporter_address: "127.0.0.1:9237".into(),
        pglab_address: settings.listen.to_string(),
        prometheus_address: "127.0.0.1:9090".into(),
    }
}

/// Monitoring files as written.
pub struct Written {
    pub folder: PathBuf,
    /// Relative to `folder`.
    pub files: Vec<PathBuf>,
}

/// Writes the monitoring files of `lab` into `out` (default:
/// `<data_dir>/generated`).
pub async fn write_generated(
    settings: &Settings,
    store: &Store,
    lab: &LabId,
    out: Option<&Path>,
    opts: &GenerateOptions,
) -> Result<Written, GenerateError> {
    let folder = out.map_or_else(|| settings.data_dir.join("generated"), Path::to_path_buf);
    let generated = generate::generate(settings, store, lab, opts).await?;
    generated.write(&folder)?;
    let files = generated.files.into_iter().map(|(p, _)| p).collect();
    Ok(Written { folder, files })
}

/// A lab as the control database holds it, with its reference and starter
/// written under `<data_dir>/labs/<id>/sources/<digest>/` (once per
/// content): what an apply builds from, in any pglab process. `None` when
/// there is no such lab.
pub async fn stored_lab(
    settings: &Settings,
    store: &Store,
    id: &LabId,
) -> anyhow::Result<Option<LoadedLab>> {
    let Some(loaded) = store.lab(id).await? else {
        return Ok(None);
    };
    let files = store.lab_sources(id).await?;
    if files.is_empty() {
        // Recorded by a pglab before version 5 of the control database:
        // built from where the lab named its files, if they are still there.
        return Ok(Some(loaded));
    }
    let dir = settings
        .data_dir
        .join("labs")
        .join(id.as_str())
        .join("sources")
        .join(&loaded.sources_digest);
    crate::lab::write_sources(&dir, &files)?;
    Ok(Some(LoadedLab {
        lab: loaded.lab.with_sources_in(&dir, &files),
        ..loaded
    }))
}

/// Loads a lab's reference and starter into scratch databases of `server`
/// and drops them: the lab's SQL works (`pglab lab check`, the upload page).
pub async fn check_lab_loads(server: &PgServerSettings, lab: &LoadedLab) -> anyhow::Result<()> {
    let admin = crate::pgconn::connect(server, "postgres").await?;
    provision::postgres::ensure_baseline(server, &admin).await?;
    provision::build::build_lab(server, &admin, &lab.lab, false).await?;
    Ok(())
}

/// The mutation report of a lab (`pglab lab check --mutants`, the upload
/// page): its reference and datasets loaded into scratch databases of
/// `server`, the mutants of its view and query checks run there with the
/// scoring's `limits`, and the databases dropped.
pub async fn mutation_report(
    server: &PgServerSettings,
    lab: &LoadedLab,
    limits: &crate::scoring::checks::Limits,
) -> anyhow::Result<crate::mutants::report::Report> {
    let admin = crate::pgconn::connect(server, "postgres").await?;
    provision::postgres::ensure_baseline(server, &admin).await?;
    let dbs = provision::build::check_build(server, &admin, &lab.lab).await?;
    let report = async {
        let reference = crate::pgconn::connect(server, &dbs.reference).await?;
        let mut datasets = vec![];
        for (i, db) in dbs.datasets.iter().enumerate() {
            let name = provision::build::dataset_name(&lab.lab, i);
            datasets.push((name, crate::pgconn::connect(server, db).await?));
        }
        let on = crate::mutants::report::Databases {
            reference: &reference,
            datasets: datasets.iter().map(|(n, c)| (n.clone(), c)).collect(),
        };
        anyhow::Ok(crate::mutants::report::report(&on, &lab.lab, limits).await?)
    }
    .await;
    dbs.drop_all(server, &admin).await?;
    report
}

/// What applying a lab did.
pub struct Applied {
    pub report: ApplyReport,
    /// Where the monitoring files went, or why they could not be written
    /// (the apply itself succeeded either way).
    pub generated: Result<PathBuf, String>,
}

impl Applied {
    /// The lines a face shows after the progress lines.
    pub fn summary(&self, plan: &Plan) -> Vec<String> {
        let mut lines: Vec<String> = plan.notices.iter().map(|n| format!("! {n}")).collect();
        lines.extend(
            self.report
                .dumps
                .iter()
                .map(|d| format!("dumped before dropping: {}", d.display())),
        );
        lines.push(match &self.generated {
            Ok(out) => format!("monitoring files written to {}", out.display()),
            Err(e) => format!("! monitoring files not written: {e}"),
        });
        lines.push(format!(
            "lab {}: {} participants, {} changes applied",
            plan.lab.lab.id,
            plan.participants.0.len(),
            self.report.applied
        ));
        lines
    }
}

/// Applies a planned lab (provisioning, then the control database's
/// records), then writes its monitoring files; `progress` hears of each
/// change as it is made.
pub async fn apply_lab(
    settings: &Settings,
    store: &Store,
    plan: &Plan,
    progress: impl FnMut(usize, &Change),
) -> Result<Applied, ProvisionError> {
    let id = &plan.lab.lab.id;
    let Some(mut lock) = store.lock_apply(id).await? else {
        return Err(ProvisionError::Input(format!(
            "lab {id} is being applied right now (from the web app or another pglab apply); run this again when that has ended"
        )));
    };
    let applied = lock
        .guard(provision::apply(settings, store, plan, progress))
        .await;
    lock.release().await;
    let report = applied??;
    let generated = write_generated(
        settings,
        store,
        &plan.lab.lab.id,
        None,
        &default_generate_options(settings),
    )
    .await
    .map(|w| w.folder)
    .map_err(|e| e.to_string());
    super::mail::after_apply(settings, store, &plan.lab.lab).await;
    Ok(Applied { report, generated })
}

/// Jobs applying the same lab run one at a time.
fn apply_key(lab: &LabId) -> String {
    format!("apply:{lab}")
}

/// Why an apply could not be queued.
#[derive(Debug, thiserror::Error)]
pub enum StartApplyError {
    #[error(
        "{title} is still {status} for lab {lab} (started by {by}); wait until it ends: /jobs/{id}"
    )]
    Busy {
        title: String,
        status: JobStatus,
        lab: LabId,
        by: String,
        id: i64,
    },
    #[error("lab {0} is being applied by others right now; try again")]
    Contended(LabId),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Queues applying `lab` (as the control database holds it) with the
/// complete list `participants`; any pglab process's workers run it. The
/// job's id, or who is applying the lab already.
pub async fn start_apply(
    store: &Store,
    queue: &super::Queue,
    lab: &LabId,
    participants: &Participants,
    user: &str,
) -> Result<i64, StartApplyError> {
    let job = NewJob {
        kind: JobKind::Apply,
        lab,
        lock_key: apply_key(lab),
        title: format!("Apply of lab {lab}"),
        started_by: user,
        params: serde_json::json!({ "participants": participants.to_csv() }),
        max_attempts: 2,
    };
    // Twice: the job in the way may end between the two statements.
    for _ in 0..2 {
        if let Some(id) = store.enqueue_job(&job, 1).await? {
            queue.queued();
            tracing::info!(%lab, user, job = id, "apply queued");
            return Ok(id);
        }
        if let Some(active) = store.active_job(&job.lock_key).await? {
            return Err(StartApplyError::Busy {
                title: active.title,
                status: active.status,
                lab: lab.clone(),
                by: active.started_by,
                id: active.id,
            });
        }
    }
    Err(StartApplyError::Contended(lab.clone()))
}

/// Runs a claimed apply job: plans again from the stored lab and the list
/// the job carries (the state may have moved since the plan was shown),
/// applies with progress lines in the job's log, and records the end.
pub async fn run_apply_job(settings: &Settings, store: &Store, job: &JobRecord, claim: Claim<'_>) {
    let (summary, error) = match apply_job(settings, store, job, claim).await {
        Ok(summary) => (summary, None),
        Err(e) if super::jobs::requeued_after_lost_lock(store, job, claim, &e).await => return,
        Err(e) => {
            tracing::error!(error = %e, "apply failed");
            (vec![], Some(e.to_string()))
        }
    };
    match store.finish_job(claim, &summary, error.as_deref()).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!("the apply's job was taken over meanwhile: its end is not recorded here")
        }
        Err(e) => tracing::error!(error = %e, "could not record the end of an apply"),
    }
}

async fn apply_job(
    settings: &Settings,
    store: &Store,
    job: &JobRecord,
    claim: Claim<'_>,
) -> anyhow::Result<Vec<String>> {
    let csv = job.params["participants"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("job {} carries no participant list", job.id))?;
    let wanted = Participants::parse("participants", csv)?;
    let lab = stored_lab(settings, store, &job.lab)
        .await?
        .ok_or_else(|| anyhow::anyhow!("lab {} is gone", job.lab))?;
    let plan = provision::plan(settings, store, lab, wanted, false).await?;
    let total = i32::try_from(plan.changes.len()).unwrap_or(i32::MAX);
    store.job_progress(claim, 0, total, &[]).await?;
    // Progress is written by a task of its own, in order, while the apply
    // goes on; the end waits until every line is stored.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, String)>();
    let writer = {
        let store = store.clone();
        let (id, worker) = (claim.job, claim.worker.to_string());
        tokio::spawn(async move {
            while let Some((done, line)) = rx.recv().await {
                let mut lines = vec![line];
                let mut done = done;
                while let Ok((d, l)) = rx.try_recv() {
                    done = d;
                    lines.push(l);
                }
                let done = i32::try_from(done).unwrap_or(i32::MAX);
                let claim = Claim {
                    job: id,
                    worker: &worker,
                };
                if let Err(e) = store.job_progress(claim, done, total, &lines).await {
                    tracing::warn!(error = %e, "could not record an apply's progress");
                }
            }
        })
    };
    let applied = apply_lab(settings, store, &plan, |i, change| {
        let _ = tx.send((i, format!("[{i}/{total}] {change}")));
    })
    .await;
    drop(tx);
    let _ = writer.await;
    Ok(applied?.summary(&plan))
}
