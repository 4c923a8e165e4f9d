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
const PLOT: f64 = 200.0;

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
    /// SVG polyline points of the number passing over the lab's time.
    pub trend: String,
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

/// The step line of `series` across the lab's time span, scaled to
/// `databases` (SVG coordinates: 0..PLOT wide, 0..16 high).
fn trend(
    series: &[(chrono::DateTime<chrono::Utc>, usize)],
    span: (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>),
    databases: usize,
) -> String {
    let (start, end) = span;
    let width = (end - start).num_seconds().max(1) as f64;
    let x = |t: chrono::DateTime<chrono::Utc>| {
        ((t - start).num_seconds() as f64 / width * PLOT).round()
    };
    let y = |n: usize| (15.0 - n as f64 / databases.max(1) as f64 * 14.0).round();
    let mut points = vec![format!("0,{}", y(0))];
    let mut last = 0;
    for (at, n) in series {
        points.push(format!("{},{}", x(*at), y(last)));
        points.push(format!("{},{}", x(*at), y(*n)));
        last = *n;
    }
    points.push(format!("{PLOT},{}", y(last)));
    points.join(" ")
}

fn rows(stats: &LabStats, max_minutes: f64) -> Vec<Row> {
    let times = stats
        .tasks
        .iter()
        .flat_map(|t| t.passing_over_time.iter().map(|(at, _)| *at));
    let start = times.clone().min().unwrap_or_else(chrono::Utc::now);
    let span = (start, chrono::Utc::now().max(start));
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
            trend: trend(&t.passing_over_time, span, stats.databases),
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
