//! What the class benchmarks measure processes and boards with: CPU seconds
//! and memory from `/proc`, percentiles, the board grid's cells.

use std::path::Path;
use std::time::Duration;

/// CPU seconds in a `/proc/<pid>/stat` line: utime, stime, cutime, cstime
/// (fields 14 to 17, after the name), or only the first two.
fn stat_cpu(stat: &str, with_children: bool) -> f64 {
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: f64 = rest
        .split_whitespace()
        .skip(11)
        .take(if with_children { 4 } else { 2 })
        .filter_map(|v| v.parse::<f64>().ok())
        .sum();
    f / 100.0
}

/// CPU seconds of process `pid` and its ended children.
pub fn pid_cpu(pid: u32) -> f64 {
    stat_cpu(
        &std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default(),
        true,
    )
}

/// CPU seconds of this process.
pub fn own_cpu() -> f64 {
    stat_cpu(
        &std::fs::read_to_string("/proc/self/stat").unwrap_or_default(),
        true,
    )
}

/// CPU seconds of the Postgres server whose data folder is in `data`: the
/// postmaster with its ended children, and every live one.
pub fn postgres_cpu(data: &Path) -> f64 {
    let Some(pid) = postmaster(data) else {
        return 0.0;
    };
    let mut total = pid_cpu(pid);
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            total += stat_cpu(&stat, false);
        }
    }
    total
}

/// The postmaster's process id of the first data folder found in `dir`.
fn postmaster(dir: &Path) -> Option<u32> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let p = entry.path();
        if p.file_name().is_some_and(|n| n == "postmaster.pid") {
            return std::fs::read_to_string(&p)
                .ok()?
                .lines()
                .next()?
                .parse()
                .ok();
        }
        if p.is_dir() {
            if let Some(pid) = postmaster(&p) {
                return Some(pid);
            }
        }
    }
    None
}

/// Resident memory of process `pid` ("self" for this one), MB.
pub fn rss_mb(pid: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// p50, p95 and the largest, in seconds (NaN when there is none).
pub fn percentiles(mut v: Vec<Duration>) -> (f64, f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    v.sort();
    let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1].as_secs_f64();
    (at(0.5), at(0.95), v[v.len() - 1].as_secs_f64())
}

/// The cell of task `task` (0-based) per participant shown on a board
/// grid: who -> passed.
pub fn grid_cells(html: &str, task: usize) -> std::collections::HashMap<String, bool> {
    let mut out = std::collections::HashMap::new();
    for row in html.split("<tr class=\"st-").skip(1) {
        let Some(th) = row.split("<th scope=\"row\">").nth(1) else {
            continue;
        };
        let Some(cell) = th.split_once("</th>") else {
            continue;
        };
        let who = match cell.0.split_once('>') {
            Some((_, rest)) if cell.0.starts_with("<a") => rest.trim_end_matches("</a>"),
            _ => cell.0,
        };
        let passed = cell
            .1
            .split("<td class=\"cell ")
            .nth(task + 1)
            .is_some_and(|c| c.starts_with("pass"));
        out.insert(who.to_string(), passed);
    }
    out
}

/// Asks a board grid with the ETag of the last answer: the cells of task
/// `task` when it changed (the ETag kept), `None` when not (or no answer).
pub async fn changed_grid(
    http: &reqwest::Client,
    url: &str,
    etag: &mut String,
    task: usize,
) -> Option<std::collections::HashMap<String, bool>> {
    let r = http
        .get(url)
        .header("If-None-Match", &*etag)
        .send()
        .await
        .ok()?;
    if r.status() != 200 {
        return None;
    }
    *etag = r
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    Some(grid_cells(&r.text().await.unwrap_or_default(), task))
}
