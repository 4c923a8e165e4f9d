//! `pglab token create|list|revoke`.

use crate::control::{Store, TokenScope};
use crate::settings::Settings;
use anyhow::Context;
use std::path::Path;

async fn store(config: &Path) -> anyhow::Result<Store> {
    let settings = Settings::load(config)?;
    Ok(Store::open_migrated(&settings).await?)
}

pub async fn create(
    config: &Path,
    name: &str,
    owner: Option<&str>,
    scope: &str,
    expires: Option<&str>,
) -> anyhow::Result<()> {
    let settings = Settings::load(config)?;
    let store = Store::open_migrated(&settings).await?;
    let scope = TokenScope::parse(scope).context("--scope is one of: read, write, admin")?;
    let expires_at = match expires {
        None => None,
        Some(text) => {
            let d = crate::lab::evidence::parse_duration(text)
                .with_context(|| format!("--expires {text:?} is not a duration like 30d or 12h"))?;
            Some(chrono::Utc::now() + chrono::Duration::from_std(d)?)
        }
    };
    // A token acts as its owner: a lab master or staff member (LDAP), or
    // the bootstrap admin of the config.
    let owner = match owner {
        Some(o) => o.to_string(),
        None if !settings.web.admin_user.is_empty() => settings.web.admin_user.clone(),
        None => {
            anyhow::bail!("give --owner USER: the lab master or staff member the token acts as")
        }
    };
    if owner != settings.web.admin_user {
        crate::ident::Username::parse(&owner)
            .with_context(|| format!("--owner {owner:?} is not a username"))?;
    }
    let (t, secret) = crate::app::tokens::create(&store, name, &owner, scope, expires_at).await?;
    println!(
        "token {} ({}, {} for {owner}) - shown only now:",
        t.id, t.name, t.scope
    );
    println!("{secret}");
    Ok(())
}

pub async fn list(config: &Path, owner: Option<&str>) -> anyhow::Result<()> {
    let store = store(config).await?;
    let now = chrono::Utc::now();
    println!(
        "{:>4}  {:<20} {:<14} {:<6} {:<13} {:<20} state",
        "id", "name", "owner", "scope", "starts with", "last used"
    );
    for t in store.tokens(owner).await? {
        let state = if t.revoked_at.is_some() {
            "revoked".to_string()
        } else if !t.usable(now) {
            "expired".into()
        } else {
            t.expires_at.map_or("valid".into(), |e| {
                format!("valid until {}", e.format("%Y-%m-%d %H:%M"))
            })
        };
        println!(
            "{:>4}  {:<20} {:<14} {:<6} {:<13} {:<20} {state}",
            t.id,
            t.name,
            t.owner,
            t.scope,
            t.prefix,
            t.last_used_at
                .map_or("never".into(), |u| u.format("%Y-%m-%d %H:%M").to_string())
        );
    }
    Ok(())
}

pub async fn revoke(config: &Path, id: i64) -> anyhow::Result<()> {
    let store = store(config).await?;
    anyhow::ensure!(store.revoke_token(id, None).await?, "no token {id}");
    println!("token {id} revoked");
    Ok(())
}

/// `pglab token ...`.
pub async fn run(config: &std::path::Path, command: super::TokenCommand) -> anyhow::Result<()> {
    match command {
        super::TokenCommand::Create {
            name,
            owner,
            scope,
            expires,
        } => create(config, &name, owner.as_deref(), &scope, expires.as_deref()).await,
        super::TokenCommand::List { owner } => list(config, owner.as_deref()).await,
        super::TokenCommand::Revoke { id } => revoke(config, id).await,
    }
}
