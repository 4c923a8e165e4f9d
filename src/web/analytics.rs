//! A lab's analytics page for staff: the same figures as `pglab stats`,
//! with charts drawn on the server as SVG (no script, readable in print).

use super::labs::{load_lab, LabPath};
use super::session::Staff;
use super::{AppState, Nav, WebError};
use crate::app::analytics::{lab_stats, LabStats};
use askama::Template;
use axum::extract::State;
use axum::response::Html;
use axum::routing::get;
use axum::Router;

/// Width of the charts' plot area, in SVG units.
const PLOT: f64 = 300.0;

/// One task's row with its chart geometry.
pub struct Row {
    pub title: String,
    pub passing: usize,
    pub percent: u32,
    pub bar: f64,
    pub median: String,
    /// x of each database's time to the first pass.
    pub dots: Vec<f64>,
    pub broke_again: usize,
}

#[derive(Template)]
#[template(path = "analytics.html")]
struct AnalyticsPage {
    nav: Option<Nav>,
    lab: String,
    title: String,
    stats: LabStats,
    rows: Vec<Row>,
    /// Minutes at the right end of the time axis.
    max_minutes: f64,
}

fn rows(stats: &LabStats, max_minutes: f64) -> Vec<Row> {
    stats
        .tasks
        .iter()
        .map(|t| Row {
            title: t.title.clone(),
            passing: t.passing,
            percent: (t.pass_rate * 100.0).round() as u32,
            bar: (t.pass_rate * PLOT).round(),
            median: t
                .median_minutes_to_pass
                .map_or_else(|| "–".to_string(), |m| format!("{m:.1} min")),
            dots: t
                .minutes_to_pass
                .iter()
                .map(|m| (m / max_minutes * PLOT).round())
                .collect(),
            broke_again: t.broke_again,
        })
        .collect()
}

async fn page(
    State(state): State<AppState>,
    Staff(s): Staff,
    LabPath(lab): LabPath,
) -> Result<Html<String>, WebError> {
    let loaded = load_lab(&state, &lab).await?;
    let stats = lab_stats(&state.store, &loaded.lab).await?;
    let max_minutes = stats
        .tasks
        .iter()
        .flat_map(|t| t.minutes_to_pass.iter().copied())
        .fold(1.0_f64, f64::max)
        .ceil();
    Ok(Html(
        AnalyticsPage {
            nav: Nav::of(&s),
            lab: lab.to_string(),
            title: loaded.lab.title,
            rows: rows(&stats, max_minutes),
            stats,
            max_minutes,
        }
        .render()?,
    ))
}

pub fn router() -> Router<AppState> {
    Router::new().route("/labs/{lab}/analytics", get(page))
}
