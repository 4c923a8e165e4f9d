//! The shapes the API answers with and takes, described for the OpenAPI
//! document. They are the API's contract: built from the application's
//! records here, so that a change inside pglab does not change what
//! scripts read.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// An error (`application/problem+json`, RFC 9457).
#[derive(Serialize, ToSchema)]
pub struct ProblemBody {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    /// Stable: `unauthorized`, `unknown_token`, `revoked_token`,
    /// `expired_token`, `shared_token`, `insufficient_scope`, `forbidden`,
    /// `not_found`, `bad_request`, `invalid_lab`, `too_large`,
    /// `unsupported_media_type`, `conflict`, `rate_limited`,
    /// `too_many_attempts`, `server_error`.
    pub code: String,
    /// Words for people.
    pub message: String,
    /// The field of the request the problem is about.
    pub field: Option<String>,
    /// For `invalid_lab`: every problem with its line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problems: Option<Vec<LabProblem>>,
}

/// Addresses of related resources (absolute), by name: `self`, `page`
/// (the web app's page), and others the resource has.
#[derive(Serialize, ToSchema, Default)]
#[serde(transparent)]
pub struct Links(pub BTreeMap<String, String>);

impl Links {
    /// The address of `name` (empty when it has none).
    pub fn get(&self, name: &str) -> String {
        self.0.get(name).cloned().unwrap_or_default()
    }
}

/// A file, as bytes.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct Binary(#[allow(dead_code)] Vec<u8>);

/// A page of a list of `$item`s; `next_cursor` is given back as `cursor`
/// for the next page, `null` on the last one.
macro_rules! page_of {
    ($($name:ident => $item:ident),+ $(,)?) => {$(
        #[doc = concat!("A page of ", stringify!($item), "s; `next_cursor` is given back as `cursor` for the next page, `null` on the last one.")]
        #[derive(Serialize, ToSchema)]
        pub struct $name {
            pub items: Vec<$item>,
            #[schema(required)]
            pub next_cursor: Option<String>,
        }
    )+};
}

page_of!(
    LabPage => LabItem,
    ParticipantPage => ParticipantItem,
    EventPage => Event,
    CredentialPage => Credential,
    SubmissionPage => Submission,
    ExportPage => Export,
    SnapshotPage => Snapshot,
);

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Items per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or `degraded` when the control database does not answer.
    pub status: String,
    pub version: String,
}

#[derive(Serialize, ToSchema)]
pub struct LabItem {
    pub id: String,
    pub title: String,
    pub participants: i64,
    pub databases: i64,
    pub links: Links,
}

#[derive(Serialize, ToSchema)]
pub struct TaskItem {
    pub id: String,
    pub title: String,
    pub points: u32,
    /// Markdown.
    pub description: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct LabDetail {
    pub id: String,
    pub title: String,
    pub deadline: Option<DateTime<Utc>>,
    /// `keep`, `read-only` or `closed`.
    pub after_deadline: String,
    pub max_points: u32,
    pub tasks: Vec<TaskItem>,
    /// The lab as YAML, as it was stored (with the checks' SQL and hints):
    /// for lab masters' tokens only, `null` for staff.
    pub yaml: Option<String>,
    pub links: Links,
}

/// A lab to check or store: its YAML, and the files it names (reference,
/// starter, data) by name, as text.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LabUpload {
    pub yaml: String,
    #[serde(default)]
    pub files: BTreeMap<String, String>,
}

/// A problem with a lab, at a line of its YAML (0: not about a line).
#[derive(Serialize, ToSchema, Clone, Debug)]
pub struct LabProblem {
    pub line: usize,
    pub field: String,
    pub message: String,
}

#[derive(Serialize, ToSchema)]
pub struct LabChecked {
    pub id: String,
    pub title: String,
    pub tasks: usize,
    pub max_points: u32,
    /// Whether storing it would replace a lab of the same id.
    pub exists: bool,
}

#[derive(Serialize, ToSchema)]
pub struct TaskScore {
    pub task: String,
    pub passed: bool,
    pub points: u32,
    /// Why the check fails.
    pub reason: Option<String>,
    pub hint: Option<String>,
    pub first_passed: Option<DateTime<Utc>>,
}

/// The score taken at the deadline.
#[derive(Serialize, ToSchema)]
pub struct FinalScore {
    pub points: i32,
    pub max_points: i32,
    pub deadline: DateTime<Utc>,
    pub taken_at: DateTime<Utc>,
    pub late: bool,
    pub tasks: Vec<TaskScore>,
}

#[derive(Serialize, ToSchema)]
pub struct ScoreItem {
    pub username: String,
    pub database: String,
    pub server: String,
    pub points: u32,
    /// `null` until the database was checked once.
    pub tasks: Option<Vec<TaskScore>>,
    /// Why the database could not be checked in the latest round.
    pub error: Option<String>,
    /// Its Postgres server did not answer in the latest round: `tasks` are
    /// the last ones found.
    pub stale: bool,
    /// The score at the deadline, once taken.
    #[serde(rename = "final")]
    pub final_score: Option<FinalScore>,
    pub links: Links,
}

#[derive(Serialize, ToSchema)]
pub struct Scores {
    pub lab: String,
    pub max_points: u32,
    /// When the latest scoring round began: the scores show every change
    /// made before this time.
    pub checked_at: Option<DateTime<Utc>>,
    pub items: Vec<ScoreItem>,
    pub next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ParticipantItem {
    pub username: String,
    pub name: String,
    pub email: String,
    pub group: Option<String>,
    pub database: String,
    pub links: Links,
}

#[derive(Serialize, ToSchema)]
pub struct ParticipantDetail {
    pub username: String,
    pub name: String,
    pub email: String,
    pub group: Option<String>,
    pub database: String,
    pub server: String,
    /// The command the participant logs in with.
    pub psql: String,
    /// The deadline that applies (extensions included).
    pub deadline: Option<DateTime<Utc>>,
    pub score: Option<ScoreItem>,
    pub links: Links,
}

/// Participants to add (`add`, the default), or the complete list
/// (`replace`: those not in it are removed at the apply), as CSV with the
/// columns `username,name,email,group`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ParticipantsChange {
    pub csv: String,
    #[serde(default)]
    pub mode: ChangeMode,
}

#[derive(Deserialize, ToSchema, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ChangeMode {
    #[default]
    Add,
    Replace,
}

#[derive(Serialize, ToSchema)]
pub struct PlanOut {
    /// What an apply would change, one sentence each.
    pub changes: Vec<String>,
    pub notices: Vec<String>,
    /// Participants after the change.
    pub participants: usize,
}

#[derive(Serialize, ToSchema)]
pub struct Job {
    pub id: i64,
    /// `apply`, `restore`, `reset`, `snapshot`, `export`.
    pub kind: String,
    pub lab: String,
    pub title: String,
    pub started_by: String,
    /// `queued`, `running`, `succeeded`, `failed`.
    pub status: String,
    pub attempts: i32,
    pub max_attempts: i32,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub done: i32,
    pub total: i32,
    pub summary: Vec<String>,
    pub error: Option<String>,
    /// The latest lines of the job's log.
    pub log: Vec<String>,
    pub links: Links,
}

#[derive(Serialize, ToSchema)]
pub struct Event {
    pub at: DateTime<Utc>,
    /// `passed`, `broke`, `failed`, `connected`, `left`, `hand-in`.
    pub kind: String,
    pub what: String,
}

#[derive(Serialize, ToSchema)]
pub struct TaskStats {
    pub task: String,
    pub title: String,
    pub passing: usize,
    /// 0 to 1.
    pub pass_rate: f64,
    pub median_minutes_to_pass: Option<f64>,
    pub broke_again: usize,
}

#[derive(Serialize, ToSchema)]
pub struct Analytics {
    pub lab: String,
    pub databases: usize,
    /// Hardest first.
    pub tasks: Vec<TaskStats>,
    pub without_progress: Vec<String>,
    pub handins: usize,
    pub handins_failed: usize,
}

#[derive(Serialize, ToSchema)]
pub struct Credential {
    pub username: String,
    pub name: String,
    pub email: String,
    pub database: String,
    pub server: String,
    /// The initial password; `null` once the participant changed it or it
    /// was forgotten.
    pub password: Option<String>,
    pub psql: String,
}

#[derive(Serialize, ToSchema)]
pub struct Forgotten {
    /// Initial passwords forgotten.
    pub forgotten: usize,
}

#[derive(Serialize, ToSchema)]
pub struct RestoreIssue {
    pub message: String,
    pub statement: Option<String>,
    pub toc: Option<String>,
    pub line: Option<usize>,
}

#[derive(Serialize, ToSchema)]
pub struct Submission {
    pub id: i64,
    pub lab: String,
    pub database: String,
    pub uploaded_by: String,
    pub uploaded_at: DateTime<Utc>,
    pub size: i64,
    /// `custom`, `tar`, `directory` or `plain`.
    pub format: String,
    pub late: bool,
    /// `queued`, `running`, `succeeded`, `failed`.
    pub status: String,
    pub attempts: i32,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// What went wrong in the restore, first first.
    pub errors: Vec<RestoreIssue>,
    pub note: Option<String>,
    pub links: Links,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ExportRequest {
    /// Optional parts, comma-separated: `dumps`, `snapshots`, `logs`, `bom`.
    #[serde(default)]
    pub with: String,
}

#[derive(Serialize, ToSchema)]
pub struct Export {
    pub id: i64,
    pub lab: String,
    /// `queued`, `running`, `ready`, `failed`, `expired`.
    pub status: String,
    pub done: i32,
    pub total: i32,
    pub options: serde_json::Value,
    /// Bytes expected.
    pub estimate: i64,
    pub size: Option<i64>,
    pub error: Option<String>,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub links: Links,
}

#[derive(Serialize, ToSchema)]
pub struct Snapshot {
    pub id: i64,
    pub database: String,
    pub n: i32,
    /// `periodic`, `manual`, `final`, `reset`.
    pub kind: String,
    pub taken_at: DateTime<Utc>,
    pub size: i64,
    pub sha256: String,
    pub links: Links,
}

/// A hand-in taken: its restore runs as a job.
#[derive(Serialize, ToSchema)]
pub struct HandIn {
    pub id: i64,
    pub status: String,
    pub format: String,
    pub size: u64,
    pub late: bool,
    pub links: Links,
}

#[derive(Serialize, ToSchema)]
pub struct PasswordReset {
    pub username: String,
    /// The new initial password (also on the credentials list until the
    /// participant changes it).
    pub password: String,
    pub psql: String,
}

/// A student's own progress in a lab.
#[derive(Serialize, ToSchema)]
pub struct Progress {
    pub lab: String,
    pub username: String,
    pub database: String,
    pub points: u32,
    pub max_points: u32,
    pub tasks: Vec<TaskScore>,
    pub checked_at: Option<DateTime<Utc>>,
    pub deadline: Option<DateTime<Utc>>,
    #[serde(rename = "final")]
    pub final_score: Option<FinalScore>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// `copy`: a new database `<db>_snap_<n>` the participant can read;
    /// `own`: into the participant's database (its state now is kept as a
    /// snapshot first).
    pub target: RestoreTargetName,
}

#[derive(Deserialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum RestoreTargetName {
    Copy,
    Own,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtensionRequest {
    /// The participant's new deadline: RFC 3339, `YYYY-MM-DD HH:MM` (UTC),
    /// or `+2h` / `+3d` after the lab's deadline.
    pub until: String,
}

#[derive(Serialize, ToSchema)]
pub struct Extended {
    pub database: String,
    pub until: DateTime<Utc>,
    /// Whether a final state already taken was set aside and the database
    /// opened again.
    pub reopened: bool,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct MailCredentialsRequest {
    /// Only these usernames (default: every participant not mailed yet).
    #[serde(default)]
    pub to: Vec<String>,
    /// Say who would get what (and show the first message); send nothing.
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Serialize, ToSchema)]
pub struct MailRecipient {
    pub username: String,
    pub name: String,
    pub email: String,
}

#[derive(Serialize, ToSchema)]
pub struct MailSkipped {
    pub username: String,
    pub why: String,
}

#[derive(Serialize, ToSchema)]
pub struct MailPreview {
    pub subject: String,
    pub text: String,
}

#[derive(Serialize, ToSchema)]
pub struct MailQueued {
    /// The mail job (`null` for a dry run, or when nobody is to get one).
    pub job: Option<i64>,
    pub recipients: Vec<MailRecipient>,
    pub skipped: Vec<MailSkipped>,
    /// For a dry run: the first message as it would be sent.
    pub preview: Option<MailPreview>,
    pub links: Links,
}

#[derive(Serialize, ToSchema)]
pub struct Mail {
    pub id: i64,
    pub job: i64,
    /// `credentials`, `reminder`, `hand_in`, `digest`.
    pub kind: String,
    pub username: Option<String>,
    pub to_name: String,
    pub to_address: String,
    pub subject: String,
    /// `queued`, `sending`, `sent`, `failed`, `uncertain` (pglab stopped
    /// while the server had it: it may or may not have arrived).
    pub status: String,
    pub attempts: i32,
    /// The server's last answer.
    pub answer: Option<String>,
    pub updated_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

page_of!(MailPage => Mail);
