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
    pub cells: Vec<Cell>,
    pub points: u32,
    pub status: RowState,
    pub status_text: String,
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

fn status(
    p: &crate::scoring::ParticipantBoard,
    tasks: usize,
    now: DateTime<Utc>,
    public: bool,
) -> (RowState, String) {
    if let Some(e) = &p.error {
        // The error names servers and databases: for staff only.
        if public {
            return (RowState::Help, "needs help: cannot be checked".into());
        }
        return (
            RowState::Help,
            format!("needs help: cannot be checked ({e})"),
        );
    }
    let Some(done) = p.tasks.as_ref() else {
        return (RowState::Idle, "not checked yet".into());
    };
    if tasks > 0 && done.iter().all(|t| t.passed) {
        return (RowState::Done, "done".into());
    }
    match p.stuck_minutes(now) {
        Some(m) => (
            RowState::Help,
            format!("needs help: no progress for {m} min"),
        ),
        None if p.connected > 0 => (RowState::Working, "working".into()),
        _ if p.last_activity.is_none() => (RowState::Idle, "not started".into()),
        _ => (RowState::Idle, "not connected".into()),
    }
}

pub fn summarize(board: &LabBoard, now: DateTime<Utc>) -> LabStats {
    let max = board.max_points().max(1);
    let n = board.participants.len();
    let mut total = 0u64;
    let (mut finished, mut needs_help) = (0, 0);
    for p in &board.participants {
        total += u64::from(p.points()) * 100 / u64::from(max);
        match status(p, board.tasks.len(), now, true).0 {
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
}

impl BoardView {
    pub fn new(
        board: &LabBoard,
        at: Option<DateTime<Utc>>,
        public: bool,
        now: DateTime<Utc>,
    ) -> Self {
        let mut rows: Vec<Row> = board
            .participants
            .iter()
            .map(|p| {
                let (status, status_text) = status(p, board.tasks.len(), now, public);
                let cells = board
                    .tasks
                    .iter()
                    .enumerate()
                    .map(|(i, t)| {
                        let state = p.tasks.as_ref().and_then(|ts| ts.get(i));
                        Cell {
                            passed: state.is_some_and(|s| s.passed),
                            checked: state.is_some(),
                            title: match state {
                                Some(s) if s.passed => format!("{}: passed", t.title),
                                Some(s) if public => {
                                    format!("{}: not yet ({} points)", t.title, s.points)
                                }
                                Some(s) => format!(
                                    "{}: not yet{}",
                                    t.title,
                                    s.reason
                                        .as_deref()
                                        .map(|r| format!(" ({r})"))
                                        .unwrap_or_default()
                                ),
                                None => format!("{}: not checked yet", t.title),
                            },
                        }
                    })
                    .collect();
                Row {
                    who: if public {
                        p.pseudonym.clone()
                    } else {
                        p.username.clone()
                    },
                    cells,
                    points: p.points(),
                    status,
                    status_text,
                }
            })
            .collect();
        if public {
            // By pseudonym: the order of usernames would hint at who is who.
            rows.sort_by(|a, b| a.who.cmp(&b.who));
        }
        BoardView {
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

/// Renders the grid of a lab (the benchmark calls this too).
pub fn render_grid(
    board: &LabBoard,
    at: Option<DateTime<Utc>>,
    public: bool,
) -> Result<String, askama::Error> {
    BoardView::new(board, at, public, Utc::now()).render()
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
}

#[derive(serde::Deserialize)]
struct BoardQuery {
    #[serde(default)]
    projector: bool,
}

/// The lab's board and a version that changes with every round. Before the
/// first round the board has the lab's tasks and nobody in it yet.
async fn lab_board(
    state: &AppState,
    lab: &LabId,
    public: bool,
) -> Result<(LabBoard, Option<DateTime<Utc>>, String), WebError> {
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
        "\"{}-{}\"",
        snapshot
            .at
            .map_or(0, |t| t.timestamp_nanos_opt().unwrap_or(0)),
        u8::from(public)
    );
    Ok((board, snapshot.at, version))
}

async fn page(
    state: &AppState,
    nav: Option<Nav>,
    id: &LabId,
    public: bool,
    projector: bool,
) -> Result<Response, WebError> {
    let (board, at, version) = lab_board(state, id, public).await?;
    let prefix = if public { "/public" } else { "" };
    Ok(Html(
        BoardPage {
            nav,
            lab: id.to_string(),
            title: board.title.clone(),
            grid: render_grid(&board, at, public)?,
            grid_url: format!("{prefix}/labs/{id}/board/grid"),
            version,
            grafana: if public {
                None
            } else {
                grafana_link(state, id)
            },
            public,
            projector,
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
) -> Result<Response, WebError> {
    let (board, at, version) = lab_board(state, id, public).await?;
    let cache = [
        (header::ETAG, version.clone()),
        (header::CACHE_CONTROL, "no-cache".to_string()),
    ];
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        == Some(version.as_str())
    {
        return Ok((StatusCode::NOT_MODIFIED, cache).into_response());
    }
    Ok((cache, Html(render_grid(&board, at, public)?)).into_response())
}

async fn staff_page(
    State(state): State<AppState>,
    Staff(s): Staff,
    LabPath(lab): LabPath,
    Query(q): Query<BoardQuery>,
) -> Result<Response, WebError> {
    page(&state, Nav::of(&s), &lab, false, q.projector).await
}

async fn staff_grid(
    State(state): State<AppState>,
    _staff: Staff,
    headers: HeaderMap,
    LabPath(lab): LabPath,
) -> Result<Response, WebError> {
    grid(&state, &headers, &lab, false).await
}

async fn public_page(
    State(state): State<AppState>,
    LabPath(lab): LabPath,
    Query(q): Query<BoardQuery>,
) -> Result<Response, WebError> {
    page(&state, None, &lab, true, q.projector).await
}

async fn public_grid(
    State(state): State<AppState>,
    headers: HeaderMap,
    LabPath(lab): LabPath,
) -> Result<Response, WebError> {
    grid(&state, &headers, &lab, true).await
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/labs/{lab}/board", get(staff_page))
        .route("/labs/{lab}/board/grid", get(staff_grid))
        .route("/public/labs/{lab}/board", get(public_page))
        .route("/public/labs/{lab}/board/grid", get(public_grid))
}
