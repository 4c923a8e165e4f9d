//! `pglab score`, `pglab stats` and `pglab pseudonyms`: scores and
//! analytics for a lab master without Prometheus or a browser.

use crate::control::Store;
use crate::scoring::{Board, Engine, Health, LabBoard};
use crate::settings::Settings;
use anyhow::Context;
use std::path::Path;
use std::sync::Arc;

async fn board_of(config: &Path, lab: &str) -> anyhow::Result<LabBoard> {
    let settings = Arc::new(Settings::load(config)?);
    let store = Store::open_migrated(&settings).await?;
    let board = Board::default();
    let mut engine = Engine::new(settings, store, board.clone(), Arc::new(Health::new()));
    engine.round(Some(lab)).await?;
    let snapshot = board.get();
    snapshot
        .labs
        .iter()
        .find(|l| l.id == lab)
        .cloned()
        .with_context(|| format!("lab {lab:?} is not provisioned (pglab apply it first)"))
}

pub async fn score(config: &Path, lab: &str, json: bool) -> anyhow::Result<()> {
    let board = board_of(config, lab).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&board)?);
        return Ok(());
    }
    println!(
        "lab {}: {} ({} tasks, {} points)",
        board.id,
        board.title,
        board.tasks.len(),
        board.max_points()
    );
    let width = board
        .participants
        .iter()
        .map(|p| p.username.len())
        .max()
        .unwrap_or(0)
        .max(11);
    let mut header = format!("{:<width$}  {:>7}", "participant", "points");
    for t in &board.tasks {
        header.push_str(&format!("  {}", t.id));
    }
    println!("{header}");
    let mut reasons = Vec::new();
    for p in &board.participants {
        let mut line = format!(
            "{:<width$}  {:>7}",
            p.username,
            format!("{}/{}", p.points(), board.max_points())
        );
        match &p.tasks {
            Some(tasks) => {
                for (t, info) in tasks.iter().zip(&board.tasks) {
                    let mark = if t.passed { "pass" } else { "-" };
                    line.push_str(&format!("  {:<w$}", mark, w = info.id.len()));
                    if let Some(r) = &t.reason {
                        reasons.push(format!("  {} {}: {r}", p.username, info.id));
                    }
                }
            }
            None => line.push_str(&format!(
                "  not evaluated: {}",
                p.error.as_deref().unwrap_or("unknown")
            )),
        }
        println!("{}", line.trim_end());
    }
    if !reasons.is_empty() {
        println!("why tasks fail:");
        for r in reasons {
            println!("{r}");
        }
    }
    Ok(())
}

pub async fn pseudonyms(config: &Path, lab: &str) -> anyhow::Result<()> {
    let settings = Settings::load(config)?;
    let store = Store::open_migrated(&settings).await?;
    let key = store.secret("pseudonym").await?;
    let people = store
        .participants(&crate::ident::LabId::parse(lab)?)
        .await?;
    anyhow::ensure!(!people.is_empty(), "lab {lab:?} has no participants");
    for p in people {
        println!(
            "{}  {}",
            crate::scoring::board::pseudonym(&key, lab, p.username.as_str()),
            p.username
        );
    }
    Ok(())
}

pub async fn stats(config: &Path, lab: &str, json: bool) -> anyhow::Result<()> {
    let settings = Settings::load(config)?;
    let store = Store::open_migrated(&settings).await?;
    let id = crate::ident::LabId::parse(lab)?;
    let spec = store
        .lab(&id)
        .await?
        .with_context(|| format!("lab {lab:?} was never applied"))?
        .lab;
    let stats = crate::app::analytics::lab_stats(&store, &spec).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&stats)?);
        return Ok(());
    }
    println!(
        "lab {}: {} databases (hardest task first)",
        stats.lab, stats.databases
    );
    println!(
        "{:<24} {:>8} {:>9} {:>13} {:>12}",
        "task", "passing", "rate", "median min", "broke again"
    );
    for t in &stats.tasks {
        println!(
            "{:<24} {:>8} {:>8.0}% {:>13} {:>12}",
            t.task,
            t.passing,
            t.pass_rate * 100.0,
            t.median_minutes_to_pass
                .map_or_else(|| "-".to_string(), |m| format!("{m:.1}")),
            t.broke_again
        );
    }
    println!(
        "without progress: {}",
        if stats.without_progress.is_empty() {
            "nobody".to_string()
        } else {
            stats.without_progress.join(", ")
        }
    );
    println!(
        "hand-ins: {} ({} failed)",
        stats.handins, stats.handins_failed
    );
    Ok(())
}
