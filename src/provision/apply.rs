//! Carrying out a plan, change by change, in an order where each step only
//! needs what the earlier ones made; a second run picks up where one stopped.

use super::build::build_lab;
use super::ldap::Directory;
use super::plan::{Change, Plan};
use super::postgres::{self as pg, sql_err};
use super::{tools, ProvisionError};
use crate::control::{DatabaseRecord, ParticipantRecord, Store};
use crate::ident::{PgName, Username};
use crate::settings::Settings;
use std::collections::BTreeMap;
use std::path::PathBuf;
use tokio_postgres::Client;

#[derive(Debug, Default)]
pub struct ApplyReport {
    pub applied: usize,
    /// Dumps written by `--prune` before dropping.
    pub dumps: Vec<PathBuf>,
}

/// A readable initial password: 4 groups of 4 from an alphabet without
/// look-alikes (about 79 bits).
pub fn initial_password() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKMNPQRSTUVWXYZ23456789";
    let mut rng = rand::thread_rng();
    (0..4)
        .map(|_| {
            (0..4)
                .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("-")
}

struct Clients(BTreeMap<String, Client>);

impl Clients {
    async fn get(&mut self, settings: &Settings, server: &str) -> Result<&Client, ProvisionError> {
        if !self.0.contains_key(server) {
            let s = settings.server(server).expect("planned servers exist");
            self.0.insert(
                server.to_string(),
                crate::pgconn::connect(s, "postgres").await?,
            );
        }
        Ok(&self.0[server])
    }
}

/// Applies the plan, calling `progress` after every change.
#[tracing::instrument(skip_all, fields(lab = %plan.lab.lab.id, changes = plan.changes.len()))]
pub async fn apply(
    settings: &Settings,
    store: &Store,
    plan: &Plan,
    mut progress: impl FnMut(usize, &Change),
) -> Result<ApplyReport, ProvisionError> {
    let mut report = ApplyReport::default();
    let total = plan.changes.len();
    let lab = &plan.lab.lab;
    let lab_id = lab.id.to_string();
    let mut clients = Clients(BTreeMap::new());
    let mut dir: Option<Directory> = None;
    let mut done = |report: &mut ApplyReport, c: &Change| {
        report.applied += 1;
        progress(report.applied, c);
    };
    let stopped = |report: &ApplyReport, c: &Change, e: ProvisionError| ProvisionError::Stopped {
        done: report.applied,
        total,
        change: c.to_string(),
        source: Box::new(e),
    };

    let mut templates: BTreeMap<String, pg::TemplateInfo> = BTreeMap::new();
    // The lab is recorded once its databases built, so a reference that
    // fails to load leaves no trace.
    let mut lab_recorded = false;
    for change in &plan.changes {
        let result: Result<(), ProvisionError> = async {
            if !lab_recorded && !matches!(change, Change::Baseline { .. } | Change::BuildLab { .. })
            {
                store.upsert_lab(&plan.lab).await?;
                lab_recorded = true;
            }
            match change {
                Change::Baseline { server } => {
                    let s = settings.server(server).expect("planned");
                    pg::ensure_baseline(s, clients.get(settings, server).await?).await?;
                }
                Change::BuildLab { server, .. } => {
                    let s = settings.server(server).expect("planned");
                    build_lab(s, clients.get(settings, server).await?, lab, true).await?;
                    store.upsert_lab(&plan.lab).await?;
                    store
                        .set_lab_build(&lab_id, server, &plan.lab.sources_digest)
                        .await?;
                    templates.remove(server);
                }
                Change::AddPerson { user, name, email } => {
                    ldap(&mut dir, settings)
                        .await?
                        .add_person(user, name, email)
                        .await?;
                }
                Change::UpdatePerson { user, name, email } => {
                    ldap(&mut dir, settings)
                        .await?
                        .update_person(user, name, email)
                        .await?;
                }
                Change::SetPassword { user } => {
                    // Kept first, so that a password set in LDAP is never lost.
                    let password = initial_password();
                    store.set_initial_password(user.as_str(), &password).await?;
                    ldap(&mut dir, settings)
                        .await?
                        .set_password(user, &password)
                        .await?;
                }
                Change::SetGroup {
                    cn,
                    exists,
                    members,
                    ..
                } => {
                    ldap(&mut dir, settings)
                        .await?
                        .set_group(cn, *exists, members)
                        .await?;
                }
                Change::CreateRole {
                    server,
                    role,
                    connection_limit,
                } => {
                    exec(
                        settings,
                        &mut clients,
                        server,
                        &pg::create_login_role_sql(role, *connection_limit),
                    )
                    .await?;
                }
                Change::FixRole {
                    server,
                    role,
                    connection_limit,
                } => {
                    exec(
                        settings,
                        &mut clients,
                        server,
                        &pg::fix_login_role_sql(role, *connection_limit),
                    )
                    .await?;
                }
                Change::CreateGroupRole { server, role } => {
                    exec(
                        settings,
                        &mut clients,
                        server,
                        &pg::create_group_role_sql(role),
                    )
                    .await?;
                }
                Change::GrantGroup {
                    server,
                    group,
                    member,
                } => {
                    exec(
                        settings,
                        &mut clients,
                        server,
                        &pg::grant_group_sql(group, member),
                    )
                    .await?;
                }
                Change::CreateDatabase { server, db, owner } => {
                    // Recorded before it is made: a crash between the two never
                    // leaves a database pglab does not know about.
                    let record = DatabaseRecord {
                        name: db.to_string(),
                        owner: owner.to_string(),
                        server: server.clone(),
                    };
                    store.put_database(&lab_id, &record).await?;
                    let s = settings.server(server).expect("planned");
                    let client = clients.get(settings, server).await?;
                    if !templates.contains_key(server) {
                        let info =
                            pg::template_info(s, client, &PgName::template_db(&lab.id)).await?;
                        templates.insert(server.clone(), info);
                    }
                    pg::clone_database(s, client, &templates[server], db, owner).await?;
                }
                Change::RevokeConnect { server, db } => {
                    exec(settings, &mut clients, server, &pg::revoke_connect_sql(db)).await?;
                }
                Change::Prune { server, db, users } => {
                    let path = prune(
                        settings,
                        store,
                        &mut clients,
                        &mut dir,
                        &lab_id,
                        server,
                        db,
                        users,
                    )
                    .await?;
                    report.dumps.push(path);
                }
            }
            Ok(())
        }
        .await;
        match result {
            Ok(()) => done(&mut report, change),
            Err(e) => return Err(stopped(&report, change, e)),
        }
    }

    if !lab_recorded {
        store.upsert_lab(&plan.lab).await?;
    }
    let by_user: BTreeMap<&Username, &PgName> = plan
        .placements
        .iter()
        .flat_map(|p| p.members.iter().map(move |m| (m, &p.db)))
        .collect();
    for p in &plan.participants.0 {
        let rec = ParticipantRecord {
            username: p.username.to_string(),
            name: p.name.clone(),
            email: p.email.clone(),
            group: p.group.as_ref().map(|g| g.to_string()),
            database: by_user[&p.username].to_string(),
        };
        store.put_participant(&lab_id, &rec).await?;
    }
    for user in &plan.pruned_users {
        store.delete_participant(&lab_id, user).await?;
    }
    if let Some(d) = dir {
        d.close().await;
    }
    let summary = serde_json::json!({ "changes": plan.changes.iter().map(|c| c.to_string()).collect::<Vec<_>>() });
    store
        .record_apply(&lab_id, report.applied as i32, &summary)
        .await?;
    Ok(report)
}

async fn ldap<'a>(
    dir: &'a mut Option<Directory>,
    settings: &Settings,
) -> Result<&'a mut Directory, ProvisionError> {
    if dir.is_none() {
        *dir = Some(Directory::connect(&settings.ldap).await?);
    }
    Ok(dir.as_mut().expect("just connected"))
}

async fn exec(
    settings: &Settings,
    clients: &mut Clients,
    server: &str,
    sql: &str,
) -> Result<(), ProvisionError> {
    clients
        .get(settings, server)
        .await?
        .batch_execute(sql)
        .await
        .map_err(sql_err(server, sql.to_string()))?;
    Ok(())
}

/// Dumps a database into `<data_dir>/pruned/<lab>/`, drops it, and removes
/// its participants' roles and LDAP entries when no other lab uses them.
#[allow(clippy::too_many_arguments)]
async fn prune(
    settings: &Settings,
    store: &Store,
    clients: &mut Clients,
    dir: &mut Option<Directory>,
    lab: &str,
    server: &str,
    db: &str,
    users: &[String],
) -> Result<PathBuf, ProvisionError> {
    let s = settings.server(server).expect("planned");
    let folder = settings.data_dir.join("pruned").join(lab);
    std::fs::create_dir_all(&folder)
        .map_err(|e| ProvisionError::Input(format!("cannot create {}: {e}", folder.display())))?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let path = folder.join(format!("{db}-{stamp}.dump"));
    tools::pg_dump(s, db, &path).await?;
    let client = clients.get(settings, server).await?;
    pg::drop_database(s, client, db).await?;
    store.delete_database(lab, db).await?;
    for user in users {
        store.delete_participant(lab, user).await?;
        if store.labs_of_user(user).await? == 0 {
            pg::drop_role(s, clients.get(settings, server).await?, user).await?;
            if let Ok(u) = Username::parse(user) {
                let d = ldap(dir, settings).await?;
                let _ = d.delete_person(&u).await;
            }
            store.forget_initial_password(user).await?;
        }
    }
    Ok(path)
}
