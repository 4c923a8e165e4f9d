//! The live board: participants x tasks, a "needs help" column, updated in
//! place by polling a server-rendered fragment (304 while nothing changed).
//! Staff see usernames; the public variant (lab option `public_board`)
//! shows pseudonyms and needs no login.

use super::labs::{grafana_link, LabPath};
use super::{AppState, Nav, WebError};
use crate::ident::LabId;
use crate::scoring::LabBoard;
use crate::web::session::Staff;
use askama::Template;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Utc};

pub struct Cell {
    pub passed: bool,
    pub checked: bool,
    pub title: String,
}

pub struct Row {
    pub who: String,
    /// The participant's page (staff boards with names only).
    pub link: Option<String>,
    pub cells: Vec<Cell>,
    pub points: u32,
    pub status: RowState,
    /// Where the participant is: done, working, not connected, ...
    pub status_text: String,
    /// Why they need help, when they do.
    pub help: Option<String>,
}

/// Who looks at a board: a staff member at their desk (names, reasons,
/// links to participant pages), a projector in the room (pseudonyms unless
/// the lab master asks for names, no reasons), or anyone (public board).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Audience {
    pub names: bool,
    pub reasons: bool,
}

impl Audience {
    pub const STAFF: Audience = Audience {
        names: true,
        reasons: true,
    };
    pub const PUBLIC: Audience = Audience {
        names: false,
        reasons: false,
    };
}

/// Where a participant stands, for the board's last column and its colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowState {
    Idle,
    Working,
    Done,
    Help,
}

impl std::fmt::Display for RowState {
    /// The CSS class suffix (`st-<state>`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RowState::Idle => "idle",
            RowState::Working => "working",
            RowState::Done => "done",
            RowState::Help => "help",
        })
    }
}

/// Counts for the labs list.
pub struct LabStats {
    pub average_percent: u32,
    pub finished: usize,
    pub needs_help: usize,
}

/// Where a participant stands, what to call it, and why they need help
/// (the same rule as the `PglabParticipantStuck` alert; an error's text
/// only for staff).
pub(super) fn status(
    p: &crate::scoring::ParticipantBoard,
    tasks: usize,
    now: DateTime<Utc>,
    reasons: bool,
) -> (RowState, &'static str, Option<String>) {
    let presence = if p.server_down {
        "server down"
    } else if p.connected > 0 {
        "working"
    } else if p.last_activity.is_none() {
        "not started"
    } else {
        "not connected"
    };
    if let Some(e) = &p.error {
        let why = if reasons {
            format!("cannot be checked ({e})")
        } else {
            "cannot be checked".to_string()
        };
        return (RowState::Help, presence, Some(why));
    }
    let Some(done) = p.tasks.as_ref() else {
        return (RowState::Idle, "not checked yet", None);
    };
    if tasks > 0 && done.iter().all(|t| t.passed) {
        return (RowState::Done, "done", None);
    }
    match p.stuck_minutes(now) {
        Some(m) => (
            RowState::Help,
            presence,
            Some(format!("no progress for {m} min")),
        ),
        None if p.connected > 0 => (RowState::Working, presence, None),
        None => (RowState::Idle, presence, None),
    }
}

pub fn summarize(board: &LabBoard, now: DateTime<Utc>) -> LabStats {
    let max = board.max_points().max(1);
    let n = board.participants.len();
    let mut total = 0u64;
    let (mut finished, mut needs_help) = (0, 0);
    for p in &board.participants {
        total += u64::from(p.points()) * 100 / u64::from(max);
        match status(p, board.tasks.len(), now, false).0 {
            RowState::Done => finished += 1,
            RowState::Help => needs_help += 1,
            RowState::Idle | RowState::Working => {}
        }
    }
    LabStats {
        average_percent: (total / n.max(1) as u64) as u32,
        finished,
        needs_help,
    }
}

/// The grid, rendered for the page and for every update.
#[derive(Template)]
#[template(path = "board_grid.html")]
pub struct BoardView {
    pub tasks: Vec<(String, u32)>,
    pub rows: Vec<Row>,
    pub max_points: u32,
    pub at: String,
    pub stats: LabStats,
    /// The LDAP directory did not answer in the latest round.
    pub ldap_down: bool,
}

impl BoardView {
    pub fn new(
        board: &LabBoard,
        at: Option<DateTime<Utc>>,
        audience: Audience,
        now: DateTime<Utc>,
    ) -> Self {
        let mut rows: Vec<Row> = board
            .participants
            .iter()
            .map(|p| {
                let (status, status_text, help) =
                    status(p, board.tasks.len(), now, audience.reasons);
                Row {
                    who: if audience.names {
                        p.username.clone()
                    } else {
                        p.pseudonym.clone()
                    },
                    link: (audience.names && audience.reasons)
                        .then(|| format!("/labs/{}/people/{}", board.id, p.username)),
                    cells: cells(board, p, audience),
                    points: p.points(),
                    status,
                    status_text: status_text.to_string(),
                    help,
                }
            })
            .collect();
        if !audience.names {
            // By pseudonym: the order of usernames would hint at who is who.
            rows.sort_by(|a, b| a.who.cmp(&b.who));
        }
        BoardView {
            ldap_down: false,
            tasks: board
                .tasks
                .iter()
                .map(|t| (t.title.clone(), t.points))
                .collect(),
            rows,
            max_points: board.max_points(),
            at: at.map_or_else(
                || "no round yet".into(),
                |t| t.format("%H:%M:%S UTC").to_string(),
            ),
            stats: summarize(board, now),
        }
    }
}

/// One participant's cells, with the task and (for staff) the reason in
/// each cell's tooltip.
fn cells(board: &LabBoard, p: &crate::scoring::ParticipantBoard, audience: Audience) -> Vec<Cell> {
    board
        .tasks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let state = p.tasks.as_ref().and_then(|ts| ts.get(i));
            let reason = state
                .and_then(|s| s.reason.as_deref())
                .filter(|_| audience.reasons)
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            Cell {
                passed: state.is_some_and(|s| s.passed),
                checked: state.is_some(),
                title: match state {
                    Some(s) if s.passed => format!("{}: passed", t.title),
                    Some(_) => format!("{}: not yet{reason}", t.title),
                    None => format!("{}: not checked yet", t.title),
                },
            }
        })
        .collect()
}

/// Renders the grid of a lab (the benchmark calls this too).
pub fn render_grid(
    board: &LabBoard,
    at: Option<DateTime<Utc>>,
    audience: Audience,
    ldap_down: bool,
) -> Result<String, askama::Error> {
    let mut view = BoardView::new(board, at, audience, Utc::now());
    view.ldap_down = ldap_down;
    view.render()
}

#[derive(Template)]
#[template(path = "board.html")]
struct BoardPage {
    nav: Option<Nav>,
    lab: String,
    title: String,
    grid: String,
    grid_url: String,
    version: String,
    grafana: Option<String>,
    public: bool,
    projector: bool,
    /// Whether the grid shows real names.
    names: bool,
}

#[derive(serde::Deserialize)]
struct BoardQuery {
    #[serde(default)]
    projector: bool,
    /// On a projector: real names instead of pseudonyms.
    #[serde(default)]
    names: bool,
}

impl BoardQuery {
    /// Who a staff member's board is for: their desk, or the room.
    fn audience(&self) -> Audience {
        if self.projector {
            Audience {
                names: self.names,
                reasons: false,
            }
        } else {
            Audience::STAFF
        }
    }

    /// The same view's address suffix, for the grid the page polls.
    fn suffix(&self) -> &'static str {
        match (self.projector, self.names) {
            (false, _) => "",
            (true, false) => "?projector=true",
            (true, true) => "?projector=true&names=true",
        }
    }
}

/// The lab's board and a version that changes with every round (and with
/// the audience). Before the first round the board has the lab's tasks and
/// nobody in it yet.
async fn lab_board(
    state: &AppState,
    lab: &LabId,
    public: bool,
    audience: Audience,
) -> Result<(LabBoard, Option<DateTime<Utc>>, String, bool), WebError> {
    let snapshot = state.board.get();
    let board = match snapshot.labs.iter().find(|l| l.id == lab.as_str()) {
        Some(b) => b.clone(),
        None => {
            let loaded = state.store.lab(lab).await?.ok_or(WebError::NotFound)?;
            LabBoard::of(&loaded.lab, vec![])
        }
    };
    if public && !board.public_board {
        return Err(WebError::NotFound);
    }
    let version = format!(
        "\"{}-{}{}\"",
        snapshot
            .at
            .map_or(0, |t| t.timestamp_nanos_opt().unwrap_or(0)),
        u8::from(audience.names),
        u8::from(audience.reasons)
    );
    Ok((board, snapshot.at, version, snapshot.ldap_error.is_some()))
}

/// A board page: `public` is the public board (no login), `q` the view.
async fn page(
    state: &AppState,
    nav: Option<Nav>,
    id: &LabId,
    public: bool,
    q: &BoardQuery,
) -> Result<Response, WebError> {
    let audience = if public {
        Audience::PUBLIC
    } else {
        q.audience()
    };
    let (board, at, version, ldap_down) = lab_board(state, id, public, audience).await?;
    let prefix = if public { "/public" } else { "" };
    let suffix = if public { "" } else { q.suffix() };
    Ok(Html(
        BoardPage {
            nav,
            lab: id.to_string(),
            title: board.title.clone(),
            grid: render_grid(&board, at, audience, ldap_down)?,
            grid_url: format!("{prefix}/labs/{id}/board/grid{suffix}"),
            version,
            grafana: if public {
                None
            } else {
                grafana_link(state, id)
            },
            public,
            projector: q.projector,
            names: audience.names,
        }
        .render()?,
    )
    .into_response())
}

async fn grid(
    state: &AppState,
    headers: &HeaderMap,
    id: &LabId,
    public: bool,
    audience: Audience,
) -> Result<Response, WebError> {
    let (board, at, version, ldap_down) = lab_board(state, id, public, audience).await?;
    let privacy = if public {
        "no-cache"
    } else {
        "private, no-cache"
    };
    let cache = [
        (header::ETAG, version.clone()),
        (header::CACHE_CONTROL, privacy.to_string()),
    ];
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        == Some(version.as_str())
    {
        return Ok((StatusCode::NOT_MODIFIED, cache).into_response());
    }
    Ok((cache, Html(render_grid(&board, at, audience, ldap_down)?)).into_response())
}

async fn staff_page(
    State(state): State<AppState>,
    Staff(s): Staff,
    LabPath(lab): LabPath,
    Query(q): Query<BoardQuery>,
) -> Result<Response, WebError> {
    page(&state, Nav::of(&s), &lab, false, &q).await
}

async fn staff_grid(
    State(state): State<AppState>,
    _staff: Staff,
    headers: HeaderMap,
    LabPath(lab): LabPath,
    Query(q): Query<BoardQuery>,
) -> Result<Response, WebError> {
    grid(&state, &headers, &lab, false, q.audience()).await
}

async fn public_page(
    State(state): State<AppState>,
    LabPath(lab): LabPath,
    Query(q): Query<BoardQuery>,
) -> Result<Response, WebError> {
    page(&state, None, &lab, true, &q).await
}

async fn public_grid(
    State(state): State<AppState>,
    headers: HeaderMap,
    LabPath(lab): LabPath,
) -> Result<Response, WebError> {
    grid(&state, &headers, &lab, true, Audience::PUBLIC).await
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/labs/{lab}/board", get(staff_page))
        .route("/labs/{lab}/board/grid", get(staff_grid))
        .route("/public/labs/{lab}/board", get(public_page))
        .route("/public/labs/{lab}/board/grid", get(public_grid))
}
