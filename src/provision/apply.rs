//! Carrying out a plan in its order (LDAP, roles, databases, prunes), so
//! that each step only needs what the earlier ones made; a second run picks
//! up where one stopped. Role statements for one server go in one batch, and
//! databases are cloned by a few workers at once.

use super::build::build_lab;
use super::ldap::Directory;
use super::plan::{Change, Plan};
use super::postgres::{self as pg, sql_err};
use super::prune::prune;
use super::ProvisionError;
use crate::control::{DatabaseRecord, ParticipantRecord, ServerName, Store};
use crate::ident::{LabId, PgName, Username};
use crate::settings::{PgServerSettings, Settings};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio_postgres::Client;

/// Databases cloned at once per server: two keep both cores of a small
/// server busy without starving the students already working on it.
const CLONE_WORKERS: usize = 2;

#[derive(Debug, Default)]
pub struct ApplyReport {
    pub applied: usize,
    /// Dumps written by `--prune` before dropping.
    pub dumps: Vec<PathBuf>,
    /// Time spent per kind of change.
    pub timings: BTreeMap<&'static str, Duration>,
}

/// A readable initial password: 4 groups of 4 from an alphabet without
/// look-alikes (about 91 bits).
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

/// A failure inside a batch: which change, and how many before it succeeded.
struct Failed<'a> {
    change: &'a Change,
    done: usize,
    error: ProvisionError,
}

struct Run<'a> {
    settings: &'a Settings,
    store: &'a Store,
    plan: &'a Plan,
    lab_id: LabId,
    clients: BTreeMap<String, Vec<Client>>,
    dir: Option<Directory>,
    templates: BTreeMap<String, pg::TemplateInfo>,
    lab_recorded: bool,
    dumps: Vec<PathBuf>,
}

/// The changes from `i` on that run as one batch.
fn batch_len(changes: &[Change], i: usize) -> usize {
    let server_of = |c: &Change| match c {
        Change::CreateRole { server, .. }
        | Change::FixRole { server, .. }
        | Change::CreateGroupRole { server, .. }
        | Change::GrantGroup { server, .. }
        | Change::Checker { server, .. } => Some(("role", server.clone())),
        Change::CreateDatabase { server, .. } => Some(("db", server.clone())),
        _ => None,
    };
    match server_of(&changes[i]) {
        None => 1,
        Some(key) => changes[i..]
            .iter()
            .take_while(|c| server_of(c).as_ref() == Some(&key))
            .count(),
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
    let mut run = Run {
        settings,
        store,
        plan,
        lab_id: plan.lab.lab.id.clone(),
        clients: BTreeMap::new(),
        dir: None,
        templates: BTreeMap::new(),
        lab_recorded: false,
        dumps: vec![],
    };
    let mut report = ApplyReport::default();
    let changes = &plan.changes;
    let mut i = 0;
    while i < changes.len() {
        let batch = &changes[i..i + batch_len(changes, i)];
        let started = Instant::now();
        let result = run.batch(batch).await;
        *report.timings.entry(batch[0].kind()).or_default() += started.elapsed();
        let done = match &result {
            Ok(()) => batch.len(),
            Err(f) => f.done,
        };
        for c in &batch[..done] {
            report.applied += 1;
            progress(report.applied, c);
        }
        if let Err(f) = result {
            return Err(ProvisionError::Stopped {
                done: report.applied,
                total: changes.len(),
                change: f.change.to_string(),
                source: Box::new(f.error),
            });
        }
        i += batch.len();
    }
    run.record_participants().await?;
    if let Some(d) = run.dir.take() {
        d.close().await;
    }
    report.dumps = std::mem::take(&mut run.dumps);
    tracing::debug!(timings = ?report.timings, "applied");
    let summary = serde_json::json!({
        "changes": changes.iter().map(|c| c.to_string()).collect::<Vec<_>>()
    });
    store
        .record_apply(&run.lab_id, report.applied as i32, &summary)
        .await?;
    Ok(report)
}

impl<'a> Run<'a> {
    async fn admin(&mut self, server: &str, n: usize) -> Result<&[Client], ProvisionError> {
        let s = self.settings.server(server).expect("planned servers exist");
        let pool = self.clients.entry(server.to_string()).or_default();
        while pool.len() < n {
            pool.push(crate::pgconn::connect(s, "postgres").await?);
        }
        Ok(&pool[..n])
    }

    async fn ldap(&mut self) -> Result<&mut Directory, ProvisionError> {
        if self.dir.is_none() {
            self.dir = Some(Directory::connect(&self.settings.ldap).await?);
        }
        Ok(self.dir.as_mut().expect("just connected"))
    }

    /// The lab is recorded once its databases are built, so a reference that
    /// fails to load leaves no trace.
    async fn record_lab(&mut self) -> Result<(), ProvisionError> {
        if !self.lab_recorded {
            let sources = self
                .plan
                .lab
                .lab
                .read_sources()
                .map_err(|e| ProvisionError::Input(e.to_string()))?;
            self.store.upsert_lab(&self.plan.lab, &sources).await?;
            self.lab_recorded = true;
        }
        Ok(())
    }

    async fn batch<'c>(&mut self, batch: &'c [Change]) -> Result<(), Failed<'c>> {
        let fail = |done: usize| {
            move |error: ProvisionError| Failed {
                change: &batch[done],
                done,
                error,
            }
        };
        match &batch[0] {
            Change::Baseline { .. } | Change::BuildLab { .. } => {}
            _ => self.record_lab().await.map_err(fail(0))?,
        }
        match &batch[0] {
            Change::CreateDatabase { server, .. } => self.clone_all(server, batch).await,
            Change::CreateRole { server, .. }
            | Change::FixRole { server, .. }
            | Change::CreateGroupRole { server, .. }
            | Change::GrantGroup { server, .. }
            | Change::Checker { server, .. } => {
                // One script, one transaction: all of these roles or none.
                let s = self.settings.server(server).expect("planned");
                let sql: String = batch
                    .iter()
                    .map(|c| role_sql(s, c))
                    .collect::<Vec<_>>()
                    .join("\n");
                let client = &self.admin(server, 1).await.map_err(fail(0))?[0];
                client
                    .batch_execute(&sql)
                    .await
                    .map_err(|e| fail(0)(sql_err(server, "create roles")(e).into()))
            }
            single => self.one(single).await.map_err(fail(0)),
        }
    }

    async fn one(&mut self, change: &Change) -> Result<(), ProvisionError> {
        let (settings, store, lab_id) = (self.settings, self.store, self.lab_id.clone());
        match change {
            Change::Baseline { server } => {
                let s = settings.server(server).expect("planned");
                pg::ensure_baseline(s, &self.admin(server, 1).await?[0]).await?;
            }
            Change::BuildLab { server, .. } => {
                let s = settings.server(server).expect("planned");
                let lab = &self.plan.lab;
                build_lab(s, &self.admin(server, 1).await?[0], &lab.lab, true).await?;
                self.lab_recorded = false;
                self.record_lab().await?;
                store
                    .set_lab_build(
                        &lab_id,
                        &ServerName::new(server.as_str()),
                        &lab.sources_digest,
                    )
                    .await?;
                self.templates.remove(server);
            }
            Change::AddPerson { user, name, email } => {
                self.ldap().await?.add_person(user, name, email).await?;
            }
            Change::UpdatePerson { user, name, email } => {
                self.ldap().await?.update_person(user, name, email).await?;
            }
            Change::SetPassword { user } => {
                // Kept first, so that a password set in LDAP is never lost.
                let password = initial_password();
                store.set_initial_password(user, &password).await?;
                self.ldap().await?.set_password(user, &password).await?;
            }
            Change::SetGroup {
                cn,
                exists,
                members,
                ..
            } => {
                self.ldap().await?.set_group(cn, *exists, members).await?;
            }
            Change::SearchPath { server, db, path } => {
                let client = &self.admin(server, 1).await?[0];
                client
                    .batch_execute(&pg::search_path_sql(db, path))
                    .await
                    .map_err(sql_err(server, format!("set the search_path of {db}")))?;
            }
            Change::CloseDatabase { server, db, owner } => {
                let client = &self.admin(server, 1).await?[0];
                client
                    .batch_execute(&pg::close_database_sql(db, owner))
                    .await
                    .map_err(sql_err(server, format!("close {db} to others")))?;
            }
            Change::Prune { server, db, users } => {
                self.ldap().await?;
                self.admin(server, 1).await?;
                let admin = &self.clients[server][0];
                let dir = self.dir.as_mut().expect("connected above");
                let path = prune(settings, store, admin, dir, &lab_id, (server, db, users)).await?;
                self.dumps.push(path);
            }
            Change::CreateDatabase { .. }
            | Change::CreateRole { .. }
            | Change::FixRole { .. }
            | Change::CreateGroupRole { .. }
            | Change::GrantGroup { .. }
            | Change::Checker { .. } => unreachable!("applied in batches"),
        }
        Ok(())
    }

    /// Clones every database of the batch with `CLONE_WORKERS` connections.
    async fn clone_all<'c>(&mut self, server: &str, batch: &'c [Change]) -> Result<(), Failed<'c>> {
        let fail = |done: usize| {
            move |error: ProvisionError| Failed {
                change: &batch[done],
                done,
                error,
            }
        };
        let workers = CLONE_WORKERS.min(batch.len());
        self.admin(server, workers).await.map_err(fail(0))?;
        let s = self.settings.server(server).expect("planned");
        if !self.templates.contains_key(server) {
            let template = PgName::template_db(&self.plan.lab.lab.id);
            let info = pg::template_info(s, &self.clients[server][0], &template).await;
            self.templates
                .insert(server.to_string(), info.map_err(|e| fail(0)(e.into()))?);
        }
        let template = &self.templates[server];
        let (store, lab_id) = (self.store, &self.lab_id);
        let stop = std::sync::atomic::AtomicBool::new(false);
        // Worker w takes changes w, w + workers, ...; each reports the first
        // index it could not do (or None).
        let results =
            futures_util::future::join_all(self.clients[server][..workers].iter().enumerate().map(
                |(w, client)| {
                    let stop = &stop;
                    async move {
                        for idx in (w..batch.len()).step_by(workers) {
                            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                                return Some((idx, None));
                            }
                            let result =
                                clone_one(store, lab_id, s, client, template, &batch[idx]).await;
                            if let Err(e) = result {
                                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                                return Some((idx, Some(e)));
                            }
                        }
                        None
                    }
                },
            ))
            .await;
        // Report the earliest failure; the changes before it are all done
        // except those another worker skipped, which a rerun picks up.
        let first = results
            .into_iter()
            .flatten()
            .filter(|(_, e)| e.is_some())
            .min_by_key(|(i, _)| *i);
        match first {
            None => Ok(()),
            Some((idx, Some(error))) => Err(Failed {
                change: &batch[idx],
                done: idx,
                error,
            }),
            Some((_, None)) => unreachable!("filtered"),
        }
    }

    async fn record_participants(&mut self) -> Result<(), ProvisionError> {
        self.record_lab().await?;
        let plan = self.plan;
        let by_user: BTreeMap<&Username, &PgName> = plan
            .placements
            .iter()
            .flat_map(|p| p.members.iter().map(move |m| (m, &p.db)))
            .collect();
        for p in &plan.participants.0 {
            let rec = ParticipantRecord {
                username: p.username.clone(),
                name: p.name.clone(),
                email: p.email.clone(),
                group: p.group.clone(),
                database: by_user[&p.username].clone(),
                pinned: p.server.clone(),
            };
            self.store.put_participant(&self.lab_id, &rec).await?;
        }
        for user in &plan.pruned_users {
            self.store.delete_participant(&self.lab_id, user).await?;
        }
        Ok(())
    }
}

/// One database of a batch: recorded before it is made (a crash between
/// the two never leaves a database pglab does not know about), then cloned
/// from the lab's template.
async fn clone_one(
    store: &Store,
    lab: &LabId,
    server: &PgServerSettings,
    client: &Client,
    template: &pg::TemplateInfo,
    change: &Change,
) -> Result<(), ProvisionError> {
    let Change::CreateDatabase {
        db,
        owner,
        search_path,
        ..
    } = change
    else {
        unreachable!("a database batch holds only databases")
    };
    let record = DatabaseRecord {
        name: db.clone(),
        owner: owner.clone(),
        server: ServerName::new(server.name.as_str()),
    };
    store.put_database(lab, &record).await?;
    pg::clone_database(server, client, template, db, owner, search_path).await?;
    Ok(())
}

fn role_sql(server: &PgServerSettings, change: &Change) -> String {
    match change {
        Change::CreateRole {
            role,
            connection_limit,
            ..
        } => pg::create_login_role_sql(role, *connection_limit),
        Change::FixRole {
            role,
            connection_limit,
            ..
        } => pg::fix_login_role_sql(role, *connection_limit),
        Change::CreateGroupRole { role, .. } => pg::create_group_role_sql(role),
        Change::GrantGroup { group, member, .. } => pg::grant_group_sql(group, member),
        Change::Checker { owner, .. } => pg::ensure_checker_sql(server, owner),
        _ => unreachable!("only role changes are batched"),
    }
}
