//! The commands that work against the services named in the config.

use crate::control::Store;
use crate::lab::{LoadedLab, Participants};
use crate::provision;
use crate::settings::Settings;
use anyhow::{bail, Context};
use std::path::Path;

use super::ApplyArgs;

pub fn example_config() -> String {
    format!(
        "# pglab config. Secrets may come from the environment instead:\n\
         # PGLAB_PG_<SERVER>_PASSWORD and PGLAB_LDAP_BIND_PASSWORD.\n{}",
        Settings::example().to_yaml()
    )
}

pub async fn config_check(config: &Path) -> anyhow::Result<()> {
    let settings = Settings::load(config)?;
    for server in &settings.postgres {
        crate::pgconn::connect(server, "postgres").await?;
        println!(
            "postgres {} ({}:{}): ok",
            server.name, server.host, server.port
        );
    }
    let dir = provision::ldap::Directory::connect(&settings.ldap).await?;
    dir.close().await;
    println!("ldap {}: ok", settings.ldap.url);
    if settings.mail.enabled() {
        let mailer = crate::mail::Mailer::new(&settings.mail).map_err(anyhow::Error::msg)?;
        mailer
            .check()
            .await
            .map_err(|e| anyhow::anyhow!("mail: {e}"))?;
        println!(
            "mail {}: ok (connected, greeted{})",
            mailer.server,
            if settings.mail.user.is_empty() {
                ""
            } else {
                ", logged in"
            }
        );
    } else {
        println!("mail: off (no mail.host)");
    }
    println!("{}: valid", config.display());
    Ok(())
}

pub async fn migrate(config: &Path) -> anyhow::Result<()> {
    let settings = Settings::load(config)?;
    let store = Store::open(&settings).await?;
    let applied = store.migrate().await?;
    if applied.is_empty() {
        println!("control database is up to date");
    } else {
        println!("applied migrations: {applied:?}");
    }
    Ok(())
}

pub async fn serve(config: &Path) -> anyhow::Result<()> {
    let shutdown = crate::shutdown_signal();
    let settings = Settings::load(config)?;
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let state = crate::server::start(settings).await?;
    crate::web::serve(state, listener, shutdown).await?;
    Ok(())
}

pub async fn healthcheck(config: &Path, url: Option<String>) -> anyhow::Result<()> {
    let base = match url {
        Some(u) => u,
        None => format!("http://{}", Settings::load(config)?.listen),
    };
    let response = reqwest::Client::new()
        .get(format!("{}/healthz", base.trim_end_matches('/')))
        .timeout(std::time::Duration::from_secs(5))
        .send()
        .await
        .with_context(|| format!("{base} does not answer"))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!("{base} is unhealthy ({status}): {body}");
    }
    println!("{body}");
    Ok(())
}

pub async fn lab_check(config: &Path, file: &Path, no_load: bool) -> anyhow::Result<()> {
    let lab = LoadedLab::load(file)?;
    println!(
        "{}: valid ({} tasks, {} points)",
        file.display(),
        lab.lab.tasks.len(),
        lab.lab.tasks.iter().map(|t| t.points).sum::<u32>()
    );
    if no_load {
        return Ok(());
    }
    let settings = Settings::load(config).context("to load the reference and starter into a scratch database pglab needs a Postgres server (pass --no-load to skip)")?;
    let server = &settings.postgres[0];
    crate::app::check_lab_loads(server, &lab).await?;
    println!(
        "reference and starter load into a scratch database on {}: ok",
        server.name
    );
    Ok(())
}

async fn load_inputs(
    config: &Path,
    args: &ApplyArgs,
) -> anyhow::Result<(Settings, Store, LoadedLab, Participants)> {
    let lab = LoadedLab::load(&args.lab)?;
    let people = Participants::load(&args.participants)?;
    let settings = Settings::load(config)?;
    let store = Store::open_migrated(&settings).await?;
    Ok((settings, store, lab, people))
}

pub async fn plan(config: &Path, args: &ApplyArgs) -> anyhow::Result<()> {
    let (settings, store, lab, people) = load_inputs(config, args).await?;
    let plan = provision::plan(&settings, &store, lab, people, args.prune).await?;
    println!("{plan}");
    Ok(())
}

pub async fn apply(config: &Path, args: &ApplyArgs) -> anyhow::Result<()> {
    let (settings, store, lab, people) = load_inputs(config, args).await?;
    let plan = provision::plan(&settings, &store, lab, people, args.prune).await?;
    let total = plan.changes.len();
    let applied = crate::app::apply_lab(&settings, &store, &plan, |i, change| {
        println!("[{i}/{total}] {change}")
    })
    .await?;
    for line in applied.summary(&plan) {
        println!("{line}");
    }
    Ok(())
}

pub async fn credentials(config: &Path, lab: &str, forget: bool) -> anyhow::Result<()> {
    let settings = Settings::load(config)?;
    let store = Store::open_migrated(&settings).await?;
    let lab = crate::ident::LabId::parse(lab)?;
    let rows = store.credentials(&lab).await?;
    if rows.is_empty() {
        bail!("lab {lab:?} has no participants (apply it first)");
    }
    for c in &rows {
        let server = settings
            .server(&c.server)
            .context("server of a participant is not in the config")?;
        let password = c
            .initial_password
            .as_deref()
            .unwrap_or("(already handed out)");
        println!(
            "{:<20} {:<22} {}",
            c.username,
            password,
            crate::app::psql_command(server, &c.username, &c.database)
        );
    }
    if forget {
        for c in rows.iter().filter(|c| c.initial_password.is_some()) {
            store.forget_initial_password(&c.username).await?;
        }
        println!("initial passwords of lab {lab} forgotten: pglab no longer stores them");
    }
    Ok(())
}

/// `pglab staff add`: an LDAP person in the lab masters' or staff group.
pub async fn staff_add(
    config: &Path,
    username: &str,
    name: &str,
    email: &str,
    read_only: bool,
) -> anyhow::Result<()> {
    let settings = Settings::load(config)?;
    let user = crate::ident::Username::parse(username)?;
    if name.trim().is_empty() || name.chars().any(char::is_control) {
        bail!("--name: give the person's name in printable characters");
    }
    if !email.contains('@') || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        bail!("--email {email:?} is not an address like name@example.org");
    }
    let group = if read_only {
        &settings.web.staff_group
    } else {
        &settings.web.master_group
    };
    let mut dir = provision::ldap::Directory::connect(&settings.ldap).await?;
    let exists = dir.people().await?.contains_key(user.as_str());
    let password = if exists {
        None
    } else {
        let pw = provision::initial_password();
        dir.add_person(&user, name, email).await?;
        dir.set_password(&user, &pw).await?;
        Some(pw)
    };
    dir.add_member(group, &user).await?;
    dir.close().await;
    let role = if read_only {
        "staff (read-only)"
    } else {
        "lab master"
    };
    match password {
        Some(pw) => println!("{user} is now {role} (group {group}); password: {pw}"),
        None => println!(
            "{user} (existing LDAP person, password unchanged) is now {role} (group {group})"
        ),
    }
    Ok(())
}
