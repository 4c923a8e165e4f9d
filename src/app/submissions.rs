//! Taking an upload: the lab's rules (deadline on the server's clock, late
//! policy, replace), the body streamed to disk with the size limit enforced
//! as it arrives, the preflight, then a queued job.

use super::jobs::Queue;
use crate::control::{NewSubmission, ParticipantDatabase, Store};
use crate::ident::{LabId, Username};
use crate::lab::submissions::{LatePolicy, SubmissionRules, MAX_PENDING};
use crate::settings::Settings;
use axum::body::Bytes;
use chrono::{DateTime, Utc};
use futures_util::{Stream, StreamExt};
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Accepted {
    pub id: i64,
    pub format: String,
    pub size: u64,
    pub late: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("lab {0} does not take submissions")]
    Closed(String),
    #[error("you take no part in lab {0}")]
    NotParticipant(String),
    #[error("the deadline was {0}; this lab does not accept late submissions")]
    Late(String),
    #[error("your database was already restored from a dump, and this lab does not replace it")]
    AlreadyHandedIn,
    #[error("{0} of your hand-ins are still waiting or running; upload again when they are done")]
    Busy(i64),
    #[error("the file is larger than this lab's limit of {0}; the upload was stopped there")]
    TooLarge(String),
    #[error("the upload was interrupted ({0}); nothing was stored")]
    Interrupted(String),
    #[error("{0}")]
    Refused(String),
    #[error("storing the upload: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] crate::control::StoreError),
}

pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["bytes", "kB", "MB", "GB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Removes the upload (and what was unpacked of it) unless it was kept.
struct Upload {
    path: PathBuf,
    keep: bool,
}

impl Drop for Upload {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
            let _ = std::fs::remove_dir_all(crate::submissions::detect::unpacked_dir(&self.path));
        }
    }
}

/// Writes the stream to `path`; stops as soon as `max` bytes are passed.
/// Returns the size and the file, written but not yet synced.
async fn receive<S, E>(
    body: &mut S,
    path: &Path,
    max: u64,
) -> Result<(u64, tokio::fs::File), UploadError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    // Writes of 1 MB: each write of a file is a trip to tokio's blocking
    // threads, and the network hands the body over in much smaller pieces.
    let mut out =
        tokio::io::BufWriter::with_capacity(1 << 20, tokio::fs::File::create(path).await?);
    let mut size: u64 = 0;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| UploadError::Interrupted(e.to_string()))?;
        size += chunk.len() as u64;
        if size > max {
            return Err(UploadError::TooLarge(human_size(max)));
        }
        out.write_all(&chunk).await?;
    }
    out.flush().await?;
    Ok((size, out.into_inner()))
}

/// Hands in `user`'s upload into lab `lab`; `now` is the server's time of
/// arrival, which decides lateness.
#[tracing::instrument(skip_all, fields(lab = %lab, user = %user))]
pub async fn hand_in<S, E>(
    settings: &Settings,
    store: &Store,
    queue: &Queue,
    lab: &LabId,
    user: &Username,
    now: DateTime<Utc>,
    body: &mut S,
) -> Result<Accepted, UploadError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let a = admit(store, lab, user, now).await?;
    let (database, server_name) = (&a.place.database, &a.place.server);
    let pending = store.pending_submissions(lab, database).await?;
    let _place = queue
        .receive(format!("{lab}/{database}"), pending, MAX_PENDING)
        .ok_or(UploadError::Busy(MAX_PENDING))?;
    let server = settings.server(server_name.as_str()).ok_or_else(|| {
        UploadError::Refused(format!("server {server_name} is not in the config"))
    })?;
    let dir = settings.data_dir.join("submissions").join(lab.as_str());
    tokio::fs::create_dir_all(&dir).await?;
    let mut upload = Upload {
        path: dir.join(crate::random::token()),
        keep: false,
    };
    let (size, file) = receive(body, &upload.path, a.rules.max_bytes).await?;
    // The file is on disk before the job row says so (a job that outlives
    // a crash of the machine finds the whole file); the preflight reads it
    // meanwhile.
    let (synced, pre) = tokio::join!(
        file.sync_all(),
        crate::submissions::detect::preflight(
            server,
            &upload.path,
            &a.rules.formats,
            database.as_str()
        )
    );
    let pre = pre.map_err(UploadError::Refused)?;
    synced?;
    let file = upload.path.display().to_string();
    let id = store
        .insert_submission(
            &NewSubmission {
                lab,
                database,
                server: server_name,
                owner: &a.place.owner,
                group: a.place.group.as_ref(),
                uploaded_by: user,
                size: size as i64,
                format: pre.format,
                file: &file,
                late: a.late,
                contents: pre.contents.as_deref(),
            },
            MAX_PENDING,
        )
        .await?
        .ok_or(UploadError::Busy(MAX_PENDING))?;
    upload.keep = true;
    queue.queued();
    let (format, late) = (pre.format.name(), a.late);
    tracing::info!(id, size, format, late, "submission queued");
    Ok(Accepted {
        id,
        format: format.to_string(),
        size,
        late,
    })
}

/// What the lab's rules allow for this upload, decided before its body is
/// read.
struct Admitted {
    rules: SubmissionRules,
    place: ParticipantDatabase,
    late: bool,
}

/// The lab's rules: it takes dumps, `user` takes part, the deadline (on
/// the server's clock) and whether a restored database may be replaced.
async fn admit(
    store: &Store,
    lab: &LabId,
    user: &Username,
    now: DateTime<Utc>,
) -> Result<Admitted, UploadError> {
    // Participation first: someone outside a lab learns nothing of it,
    // not even whether it exists.
    let place = store
        .database_of(lab, user)
        .await?
        .ok_or_else(|| UploadError::NotParticipant(lab.to_string()))?;
    let spec = store
        .lab(lab)
        .await?
        .ok_or_else(|| UploadError::NotParticipant(lab.to_string()))?
        .lab;
    let rules = spec
        .submissions
        .clone()
        .ok_or_else(|| UploadError::Closed(lab.to_string()))?;
    let deadline = rules.deadline(spec.deadline);
    let late = deadline.is_some_and(|d| now > d);
    if late && rules.late == LatePolicy::Reject {
        return Err(UploadError::Late(deadline.map_or_else(String::new, |d| {
            d.format("%Y-%m-%d %H:%M:%S UTC").to_string()
        })));
    }
    if !rules.replace && store.has_restored(lab, &place.database).await? {
        return Err(UploadError::AlreadyHandedIn);
    }
    if super::deadlines::closed(store, lab, &place.database).await? {
        return Err(UploadError::Refused(
            "your database was closed at its deadline (the lab's after_deadline); ask your lab master"
                .into(),
        ));
    }
    Ok(Admitted { rules, place, late })
}
