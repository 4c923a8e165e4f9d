//! `pglab extend`, `pglab snapshots`, `pglab finals`.

use crate::app::snapshots::when;
use crate::control::Store;
use crate::ident::{LabId, Username};
use crate::settings::Settings;
use anyhow::Context;
use std::path::Path;

async fn open(config: &Path, lab: &str) -> anyhow::Result<(Settings, Store, crate::lab::Lab)> {
    let settings = Settings::load(config)?;
    let store = Store::open_migrated(&settings).await?;
    let id = LabId::parse(lab)?;
    let spec = store
        .lab(&id)
        .await?
        .with_context(|| format!("lab {lab:?} was never applied"))?
        .lab;
    Ok((settings, store, spec))
}

pub async fn extend(config: &Path, lab: &str, user: &str, until_text: &str) -> anyhow::Result<()> {
    let (settings, store, spec) = open(config, lab).await?;
    let user = Username::parse(user)?;
    let at = crate::app::deadlines::parse_until(until_text, spec.deadline)
        .map_err(anyhow::Error::msg)?;
    let by = format!("cli:{}", whoami());
    let done = crate::app::deadlines::extend(&settings, &store, &spec.id, &user, at, &by).await?;
    println!("{user}'s deadline in {lab} is now {}", when(at));
    if done.reopened {
        println!(
            "the final state taken before is set aside, and {} is open again; a new one is taken at {}",
            done.database,
            when(at)
        );
    }
    Ok(())
}

/// The local user running the command (for the record of who extended).
pub(super) fn whoami() -> String {
    let uid = nix::unistd::Uid::current();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map_or_else(|| format!("uid {uid}"), |u| u.name)
}

pub async fn snapshots(config: &Path, lab: &str, user: &str) -> anyhow::Result<()> {
    let (_, store, spec) = open(config, lab).await?;
    let user = Username::parse(user)?;
    let place = store
        .database_of(&spec.id, &user)
        .await?
        .with_context(|| format!("{user} does not take part in {lab}"))?;
    let db = place.database.as_str();
    let list = store.snapshots(&spec.id, db).await?;
    println!("{db}: {} snapshots", list.len());
    println!(
        "{:>4}  {:<15} {:<24} {:>10}  sha256",
        "n", "kind", "taken", "bytes"
    );
    for s in &list {
        println!(
            "{:>4}  {:<15} {:<24} {:>10}  {}",
            s.n,
            s.kind.as_str(),
            when(s.taken_at),
            s.size,
            s.sha256
        );
    }
    if let Some(f) = store.final_state(&spec.id, db).await? {
        println!(
            "final: {} points, taken {}{}",
            crate::app::deadlines::final_points(&f),
            when(f.taken_at),
            f.reason
                .map(|r| format!(" (late: {r})"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

pub async fn finals(config: &Path, lab: &str, json: bool) -> anyhow::Result<()> {
    let (_, store, spec) = open(config, lab).await?;
    let finals = store.final_states(&spec.id).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&finals)?);
        return Ok(());
    }
    println!(
        "{:<32} {:>9} {:<24} {:<10} note",
        "database", "points", "taken", "policy"
    );
    for f in &finals {
        println!(
            "{:<32} {:>9} {:<24} {:<10} {}",
            f.database,
            crate::app::deadlines::final_points(f),
            when(f.taken_at),
            f.policy.name(),
            f.reason
                .as_deref()
                .map_or(String::new(), |r| format!("late: {r}"))
        );
    }
    Ok(())
}
