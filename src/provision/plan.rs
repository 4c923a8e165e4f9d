//! What `apply` would change: the difference between the lab and its
//! participants (desired) and LDAP, Postgres and the control store (actual).

use super::placement::{group_pin, place, Wanted};
use super::postgres::{self as pg, ServerState};
use super::ProvisionError;
use crate::control::{ServerName, Store};
use crate::ident::{GroupName, LabId, PgName, Username};
use crate::lab::{DatabaseMode, LoadedLab, Participant, Participants};
use crate::settings::Settings;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

pub use super::change::Change;

/// A participant or group database and where it lives.
#[derive(Debug, Clone)]
pub struct Placement {
    pub db: PgName,
    pub owner: PgName,
    pub server: String,
    pub members: Vec<Username>,
}

#[derive(Debug)]
pub struct Plan {
    pub lab: LoadedLab,
    pub participants: Participants,
    pub placements: Vec<Placement>,
    pub changes: Vec<Change>,
    /// Things the lab master should know that are not changes.
    pub notices: Vec<String>,
    /// Usernames removed from the list whose data `--prune` removes.
    pub pruned_users: Vec<Username>,
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.changes {
            writeln!(f, "{c}")?;
        }
        for n in &self.notices {
            writeln!(f, "! {n}")?;
        }
        write!(
            f,
            "lab {}: {} participants, {} changes",
            self.lab.lab.id,
            self.participants.0.len(),
            self.changes.len()
        )
    }
}

/// Names that must never become a participant's role.
fn reserved(user: &Username) -> bool {
    let u = user.as_str();
    u == "postgres" || u == "public" || u.starts_with("pg_") || u.starts_with("pglab")
}

fn databases_wanted(lab: &LoadedLab, people: &Participants) -> Result<Vec<Wanted>, ProvisionError> {
    let id = &lab.lab.id;
    match lab.lab.databases {
        DatabaseMode::PerParticipant => Ok(people
            .0
            .iter()
            .map(|p| Wanted {
                db: PgName::participant_db(id, &p.username),
                owner: p.username.role(),
                members: vec![p.username.clone()],
                pin: p.server.clone(),
                bytes: None,
            })
            .collect()),
        DatabaseMode::PerGroup => {
            let mut groups: BTreeMap<GroupName, Vec<&Participant>> = BTreeMap::new();
            for p in &people.0 {
                let g = p.group.clone().ok_or_else(|| {
                    ProvisionError::Input(format!(
                        "participant {} has no group, but lab {id} has one database per group",
                        p.username
                    ))
                })?;
                groups.entry(g).or_default().push(p);
            }
            groups
                .into_iter()
                .map(|(g, members)| {
                    let pins = members.iter().map(|p| (&p.username, p.server.as_ref()));
                    Ok(Wanted {
                        db: PgName::group_db(id, &g),
                        owner: PgName::group_db(id, &g),
                        pin: group_pin(g.as_str(), pins)?,
                        bytes: None,
                        members: members.iter().map(|p| p.username.clone()).collect(),
                    })
                })
                .collect()
        }
    }
}

/// Computes the plan; reads everything, changes nothing.
#[tracing::instrument(skip_all, fields(lab = %lab.lab.id))]
pub async fn plan(
    settings: &Settings,
    store: &Store,
    lab: LoadedLab,
    people: Participants,
    prune: bool,
) -> Result<Plan, ProvisionError> {
    refuse_names(settings, &lab, &people)?;
    let lab_id = lab.lab.id.clone();
    let recorded: BTreeMap<String, String> = store
        .databases(&lab_id)
        .await?
        .into_iter()
        .map(|d| (d.name.to_string(), d.server.to_string()))
        .collect();
    let wanted = databases_wanted(&lab, &people)?;
    let (placements, placing) = place(settings, store, &lab_id, wanted, &recorded).await?;
    let (states, mut changes) = server_changes(settings, store, &lab, &placements).await?;
    super::plan_ldap::ldap_changes(settings, &lab, &people, store, prune, &mut changes).await?;
    pg_changes(&lab, &placements, &states, &recorded, &mut changes)?;
    let unlisted = unlisted(store, &lab_id, &people, &placements, prune).await?;
    changes.extend(unlisted.changes);
    changes.sort_by_key(|c| (c.phase(), c.server().map(str::to_string)));
    Ok(Plan {
        lab,
        participants: people,
        placements,
        changes,
        notices: placing.into_iter().chain(unlisted.notices).collect(),
        pruned_users: if prune { unlisted.users } else { vec![] },
    })
}

/// What server `placement.server` lacks to hold that database, moved
/// there from another server (`pglab move`): pglab's baseline, the lab's
/// template, the owner's and members' roles, the checking role. The
/// database itself is the move's to make; nothing is recorded of the
/// participants.
pub async fn plan_target(
    settings: &Settings,
    store: &Store,
    lab: LoadedLab,
    placement: Placement,
) -> Result<Plan, ProvisionError> {
    let servers = BTreeSet::from([placement.server.clone()]);
    let (states, mut changes) = states_of(settings, store, &lab, &servers).await?;
    let recorded = BTreeMap::from([(placement.db.to_string(), placement.server.clone())]);
    let placements = vec![placement];
    pg_changes(&lab, &placements, &states, &recorded, &mut changes)?;
    changes.retain(|c| {
        !matches!(
            c,
            Change::CreateDatabase { .. }
                | Change::CloseDatabase { .. }
                | Change::SearchPath { .. }
        )
    });
    changes.sort_by_key(Change::phase);
    Ok(Plan {
        lab,
        participants: Participants::default(),
        placements,
        changes,
        notices: vec![],
        pruned_users: vec![],
    })
}

/// Refuses participants with names of the database system or pglab, and a
/// lab whose LDAP group (cn=<lab id>) would be a role group: every
/// participant would become a lab master.
fn refuse_names(
    settings: &Settings,
    lab: &LoadedLab,
    people: &Participants,
) -> Result<(), ProvisionError> {
    if let Some(p) = people.0.iter().find(|p| reserved(&p.username)) {
        return Err(ProvisionError::Input(format!(
            "username {} is reserved for the database system or pglab; choose another",
            p.username
        )));
    }
    let lab_id = lab.lab.id.as_str();
    if lab_id == settings.web.master_group || lab_id == settings.web.staff_group {
        return Err(ProvisionError::Input(format!(
            "lab id {lab_id} is the name of the LDAP group of lab masters or staff (web.master_group / web.staff_group); choose another id"
        )));
    }
    Ok(())
}

/// Reads each server the lab uses (and the first, which holds the
/// reference): its state, and whether it needs pglab's baseline or the
/// lab's reference and template (re)built.
async fn server_changes(
    settings: &Settings,
    store: &Store,
    lab: &LoadedLab,
    placements: &[Placement],
) -> Result<(BTreeMap<String, ServerState>, Vec<Change>), ProvisionError> {
    let mut servers: BTreeSet<String> = placements.iter().map(|p| p.server.clone()).collect();
    servers.insert(settings.postgres[0].name.clone());
    states_of(settings, store, lab, &servers).await
}

/// The state of each of `servers`, and what they lack of pglab's baseline
/// and of the lab's reference and template.
async fn states_of(
    settings: &Settings,
    store: &Store,
    lab: &LoadedLab,
    servers: &BTreeSet<String>,
) -> Result<(BTreeMap<String, ServerState>, Vec<Change>), ProvisionError> {
    let mut changes = Vec::new();
    let mut states: BTreeMap<String, ServerState> = BTreeMap::new();
    for name in servers {
        let server = settings.server(name).expect("known server");
        let client = crate::pgconn::connect(server, "postgres")
            .await
            .map_err(|e| {
                ProvisionError::Input(format!(
                    "{e}: lab {} has databases on server {name} (or needs its reference there), so it cannot be planned while the server is down; try again when it is back",
                    lab.lab.id
                ))
            })?;
        let state = pg::read_state(server, &client).await?;
        if !state.baseline_ok {
            changes.push(Change::Baseline {
                server: name.clone(),
            });
        }
        let built = store
            .lab_build(&lab.lab.id, &ServerName::new(name.as_str()))
            .await?;
        let datasets = (0..lab.lab.datasets.len())
            .map(|i| PgName::from_catalog(super::datasets::dataset_db(&lab.lab.id, i)));
        let present = [
            PgName::reference_db(&lab.lab.id),
            PgName::template_db(&lab.lab.id),
        ]
        .into_iter()
        .chain(datasets)
        .all(|db| state.databases.contains_key(db.as_str()));
        if built.as_deref() != Some(lab.sources_digest.as_str()) || !present {
            changes.push(Change::BuildLab {
                server: name.clone(),
                rebuild: present && built.is_some(),
            });
        }
        states.insert(name.clone(), state);
    }
    Ok((states, changes))
}

/// What to do about databases and participants no longer listed: prune
/// them (`--prune`), or tell the lab master they are kept.
struct Unlisted {
    changes: Vec<Change>,
    notices: Vec<String>,
    /// Participants no longer listed.
    users: Vec<Username>,
}

async fn unlisted(
    store: &Store,
    lab_id: &LabId,
    people: &Participants,
    placements: &[Placement],
    prune: bool,
) -> Result<Unlisted, ProvisionError> {
    let listed: BTreeSet<&str> = people.0.iter().map(|p| p.username.as_str()).collect();
    let placed: BTreeSet<&str> = placements.iter().map(|p| p.db.as_str()).collect();
    let recorded = store.participants(lab_id).await?;
    let mut out = Unlisted {
        changes: vec![],
        notices: vec![],
        users: recorded
            .iter()
            .map(|p| p.username.clone())
            .filter(|u| !listed.contains(u.as_str()))
            .collect(),
    };
    for db in store
        .databases(lab_id)
        .await?
        .into_iter()
        .filter(|d| !placed.contains(d.name.as_str()))
    {
        let users: Vec<Username> = recorded
            .iter()
            .filter(|p| p.database == db.name)
            .map(|p| p.username.clone())
            .collect();
        if prune {
            out.changes.push(Change::Prune {
                server: db.server.to_string(),
                db: db.name,
                users,
            });
        } else {
            let users: Vec<&str> = users.iter().map(Username::as_str).collect();
            out.notices.push(format!("database {} ({}) is no longer listed: kept with its data; apply --prune dumps and removes it", db.name, users.join(", ")));
        }
    }
    if !prune {
        for u in &out.users {
            out.notices.push(format!(
                "participant {u} is no longer listed: account kept; apply --prune removes it"
            ));
        }
    }
    Ok(out)
}

fn pg_changes(
    lab: &LoadedLab,
    placements: &[Placement],
    states: &BTreeMap<String, ServerState>,
    recorded: &BTreeMap<String, String>,
    changes: &mut Vec<Change>,
) -> Result<(), ProvisionError> {
    let limit = lab.lab.options.connection_limit;
    let search_path = pg::search_path(&lab.lab.schemas());
    let mut roles_seen: BTreeSet<(String, PgName)> = BTreeSet::new();
    for p in placements {
        let state = &states[&p.server];
        for member in &p.members {
            if roles_seen.insert((p.server.clone(), member.role())) {
                changes.extend(member_change(p, state, member, limit)?);
            }
        }
        if lab.lab.databases == DatabaseMode::PerGroup {
            group_changes(p, state, changes);
        }
        if !state.has_checker(&p.owner) {
            changes.push(Change::Checker {
                server: p.server.clone(),
                owner: p.owner.clone(),
            });
        }
        changes.extend(database_changes(p, state, recorded, &search_path)?);
    }
    Ok(())
}

/// A participant's login role: made, fixed, or refused when it exists and
/// pglab did not make it.
fn member_change(
    p: &Placement,
    state: &ServerState,
    member: &Username,
    limit: u32,
) -> Result<Option<Change>, ProvisionError> {
    let role = member.role();
    Ok(match state.roles.get(role.as_str()) {
        None => Some(Change::CreateRole {
            server: p.server.clone(),
            role,
            connection_limit: limit,
        }),
        Some(_) if !state.is_student(role.as_str()) => {
            return Err(ProvisionError::Input(format!(
                "role {role} already exists on server {} and was not made by pglab for a participant; refusing to take it over (rename the participant)",
                p.server
            )))
        }
        Some(r) if r.connection_limit != -1 && (r.connection_limit as u32) < limit || !r.login => {
            Some(Change::FixRole {
                server: p.server.clone(),
                role,
                connection_limit: limit,
            })
        }
        Some(_) => None,
    })
}

/// A group database's owner role and its members.
fn group_changes(p: &Placement, state: &ServerState, changes: &mut Vec<Change>) {
    if !state.roles.contains_key(p.owner.as_str()) {
        changes.push(Change::CreateGroupRole {
            server: p.server.clone(),
            role: p.owner.clone(),
        });
    }
    for member in &p.members {
        let is_member = state
            .roles
            .get(member.as_str())
            .is_some_and(|r| r.member_of.contains(p.owner.as_str()));
        if !is_member {
            changes.push(Change::GrantGroup {
                server: p.server.clone(),
                group: p.owner.clone(),
                member: member.role(),
            });
        }
    }
}

/// The database itself: made, closed to others, its `search_path` set; or
/// refused when it exists and pglab did not make it.
fn database_changes(
    p: &Placement,
    state: &ServerState,
    recorded: &BTreeMap<String, String>,
    search_path: &[String],
) -> Result<Vec<Change>, ProvisionError> {
    let (server, db) = (p.server.clone(), p.db.clone());
    let Some(access) = state.databases.get(p.db.as_str()) else {
        let owner = p.owner.clone();
        let search_path = search_path.to_vec();
        return Ok(vec![Change::CreateDatabase {
            server,
            db,
            owner,
            search_path,
        }]);
    };
    if !recorded.contains_key(p.db.as_str()) {
        return Err(ProvisionError::Input(format!(
            "database {db} already exists on server {server} and was not made by pglab; refusing to take it over"
        )));
    }
    let mut out = vec![];
    if !access.is_closed() {
        let owner = p.owner.clone();
        out.push(Change::CloseDatabase {
            server: server.clone(),
            db: db.clone(),
            owner,
        });
    }
    if state.search_paths.get(p.db.as_str()).map(Vec::as_slice) != Some(search_path) {
        let path = search_path.to_vec();
        out.push(Change::SearchPath { server, db, path });
    }
    Ok(out)
}
