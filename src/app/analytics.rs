//! Analytics for staff (`pglab stats`, the lab's analytics page): per task
//! how many pass, how long the first pass took from the first session, how
//! many passed and broke again; who has no progress; hand-ins.

use crate::control::{JobStatus, Store, StoreError};
use crate::ident::LabId;
use crate::lab::Lab;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, serde::Serialize)]
pub struct TaskStats {
    pub task: String,
    pub title: String,
    /// Databases passing it now.
    pub passing: usize,
    /// Of all databases of the lab, 0 to 1.
    pub pass_rate: f64,
    /// Median minutes from the first session to the first pass.
    pub median_minutes_to_pass: Option<f64>,
    /// Minutes to the first pass of each database that passed (sorted).
    pub minutes_to_pass: Vec<f64>,
    /// Databases in which the task passed and later broke.
    pub broke_again: usize,
    /// How many databases passed it from each change on (a step function
    /// over the lab's history, oldest first).
    pub passing_over_time: Series,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LabStats {
    pub lab: LabId,
    pub databases: usize,
    /// Hardest first (lowest pass rate).
    pub tasks: Vec<TaskStats>,
    /// Usernames whose database passes no task.
    pub without_progress: Vec<String>,
    pub handins: usize,
    pub handins_failed: usize,
}

fn median(sorted: &[f64]) -> Option<f64> {
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => Some(sorted[n / 2]),
        n => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// A series of how many databases pass a task, from each change on.
type Series = Vec<(chrono::DateTime<chrono::Utc>, usize)>;

/// From the lab's history: which (database, task) passed and later broke,
/// and per task how many databases passed it after each change.
fn from_history(
    history: &[(String, crate::control::TaskChange)],
) -> (BTreeSet<(String, String)>, BTreeMap<String, Series>) {
    let mut passed_once: BTreeSet<(String, String)> = BTreeSet::new();
    let mut broke: BTreeSet<(String, String)> = BTreeSet::new();
    let mut passing_now: BTreeSet<(String, String)> = BTreeSet::new();
    let mut over_time: BTreeMap<String, Series> = BTreeMap::new();
    for (db, c) in history {
        let key = (db.clone(), c.task.clone());
        if c.passed {
            passed_once.insert(key.clone());
            passing_now.insert(key);
        } else {
            if passed_once.contains(&key) {
                broke.insert(key.clone());
            }
            passing_now.remove(&key);
        }
        let count = passing_now.iter().filter(|(_, t)| *t == c.task).count();
        let series = over_time.entry(c.task.clone()).or_default();
        // Every task starts at 0 passing: only changes are points.
        if series.last().map_or(0, |(_, n)| *n) != count {
            series.push((c.at, count));
        }
    }
    (broke, over_time)
}

pub async fn lab_stats(store: &Store, lab: &Lab) -> Result<LabStats, StoreError> {
    let people = store.participants(&lab.id).await?;
    let databases: BTreeSet<String> = people.iter().map(|p| p.database.to_string()).collect();
    let scores = store.task_scores(&lab.id).await?;
    let first_session = store.first_sessions(&lab.id).await?;
    let history = store.lab_task_history(&lab.id).await?;
    let (broke, mut over_time) = from_history(&history);
    let mut tasks: Vec<TaskStats> = lab
        .tasks
        .iter()
        .map(|t| {
            let of_task = scores.iter().filter(|s| s.task == t.id);
            let passing = of_task.clone().filter(|s| s.passed).count();
            let mut minutes: Vec<f64> = of_task
                .filter_map(|s| {
                    let first = s.first_passed_at?;
                    let start = first_session.get(&s.database)?;
                    let m = (first - *start).num_seconds() as f64 / 60.0;
                    (m >= 0.0).then_some(m)
                })
                .collect();
            minutes.sort_by(f64::total_cmp);
            TaskStats {
                task: t.id.clone(),
                title: t.title.clone(),
                passing,
                pass_rate: passing as f64 / databases.len().max(1) as f64,
                median_minutes_to_pass: median(&minutes),
                minutes_to_pass: minutes,
                broke_again: broke.iter().filter(|(_, task)| *task == t.id).count(),
                passing_over_time: over_time.remove(&t.id).unwrap_or_default(),
            }
        })
        .collect();
    tasks.sort_by(|a, b| a.pass_rate.total_cmp(&b.pass_rate));
    let passing_dbs: BTreeSet<&str> = scores
        .iter()
        .filter(|s| s.passed)
        .map(|s| s.database.as_str())
        .collect();
    let without_progress = people
        .iter()
        .filter(|p| !passing_dbs.contains(p.database.as_str()))
        .map(|p| p.username.to_string())
        .collect();
    let handins = store.lab_submissions(&lab.id).await?;
    let per_status: BTreeMap<bool, usize> = handins.iter().fold(BTreeMap::new(), |mut m, h| {
        *m.entry(h.status == JobStatus::Failed).or_default() += 1;
        m
    });
    Ok(LabStats {
        lab: lab.id.clone(),
        databases: databases.len(),
        tasks,
        without_progress,
        handins: handins.len(),
        handins_failed: per_status.get(&true).copied().unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[1.0, 2.0, 10.0]), Some(2.0));
        assert_eq!(median(&[1.0, 2.0, 4.0, 10.0]), Some(3.0));
    }
}
