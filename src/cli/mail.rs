//! `pglab mail`: credentials by mail (or a dry run of it), and the delivery
//! log of a lab.

use crate::control::Store;
use crate::ident::{LabId, Username};
use crate::settings::Settings;
use anyhow::Context;
use std::path::Path;

pub async fn credentials(
    config: &Path,
    lab: &str,
    to: &[String],
    dry_run: bool,
) -> anyhow::Result<()> {
    let settings = Settings::load(config)?;
    let store = Store::open_migrated(&settings).await?;
    let lab = LabId::parse(lab)?;
    let to: Vec<Username> = to
        .iter()
        .map(|u| Username::parse(u).with_context(|| format!("--to {u:?} is not a username")))
        .collect::<anyhow::Result<_>>()?;
    let url = format!("{}/login", crate::app::mail::public_base(&settings));
    let whoami = format!("cli:{}", super::evidence::whoami());
    let (job, plan) = if dry_run {
        let plan = crate::app::mail::plan_credentials(&settings, &store, &lab, &to, &url).await?;
        (None, plan)
    } else {
        let queue = crate::app::Queue::default();
        crate::app::mail::mail_credentials(&settings, &store, &queue, &lab, &to, &url, &whoami)
            .await?
    };
    let verb = if dry_run { "would mail" } else { "mails" };
    for r in &plan.recipients {
        println!("{verb} {:<20} {} <{}>", r.username, r.name, r.email);
    }
    for s in &plan.skipped {
        println!("skips {:<20} {}", s.username, s.why);
    }
    if dry_run {
        if let Some(m) = &plan.preview {
            println!(
                "\nthe first message (as it would be sent):\nSubject: {}\n\n{}",
                m.subject, m.text
            );
        }
        println!("dry run: nothing was sent");
    } else if let Some(job) = job {
        println!("queued as job {job}: the running pglab sends them (see pglab mail log {lab})");
    } else {
        println!("nobody to mail");
    }
    Ok(())
}

pub async fn log(config: &Path, lab: &str) -> anyhow::Result<()> {
    let settings = Settings::load(config)?;
    let store = Store::open_migrated(&settings).await?;
    let lab = LabId::parse(lab)?;
    let mails = store.lab_mail(&lab, 1000).await?;
    println!(
        "{:<19} {:<11} {:<9} {:>3}  {:<36} {:<30} answer",
        "time", "kind", "status", "try", "to", "subject"
    );
    for m in mails.iter().rev() {
        println!(
            "{:<19} {:<11} {:<9} {:>3}  {:<36} {:<30} {}",
            m.updated_at.format("%Y-%m-%d %H:%M:%S"),
            m.kind.to_string(),
            m.status.to_string(),
            m.attempts,
            format!("{} <{}>", m.to_name, m.to_address),
            m.subject,
            m.answer.as_deref().unwrap_or("")
        );
    }
    Ok(())
}
