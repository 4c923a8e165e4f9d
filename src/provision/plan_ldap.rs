//! The LDAP part of a plan: people and groups to add or change.

use super::ldap::Directory;
use super::{Change, ProvisionError};
use crate::control::Store;
use crate::ident::Username;
use crate::lab::{LoadedLab, Participant, Participants};
use crate::settings::Settings;
use std::collections::{BTreeMap, BTreeSet};

pub(super) async fn ldap_changes(
    settings: &Settings,
    lab: &LoadedLab,
    people: &Participants,
    store: &Store,
    prune: bool,
    changes: &mut Vec<Change>,
) -> Result<(), ProvisionError> {
    let mut dir = Directory::connect(&settings.ldap).await?;
    let existing = dir.people().await?;
    for Participant {
        username,
        name,
        email,
        ..
    } in &people.0
    {
        match existing.get(username.as_str()) {
            None => {
                changes.push(Change::AddPerson {
                    user: username.clone(),
                    name: name.clone(),
                    email: email.clone(),
                });
                changes.push(Change::SetPassword {
                    user: username.clone(),
                });
            }
            Some(person) => {
                let shown_name = if name.is_empty() {
                    username.as_str()
                } else {
                    name
                };
                if person.name != shown_name || &person.email != email {
                    changes.push(Change::UpdatePerson {
                        user: username.clone(),
                        name: name.clone(),
                        email: email.clone(),
                    });
                }
                if !person.has_password {
                    changes.push(Change::SetPassword {
                        user: username.clone(),
                    });
                }
            }
        }
    }
    // Groups: the lab's, and one per participant group. Without --prune,
    // people who left the list stay members (nothing is taken away).
    let lab_id = lab.lab.id.to_string();
    let kept: Vec<Username> = if prune {
        vec![]
    } else {
        let listed: BTreeSet<&str> = people.0.iter().map(|p| p.username.as_str()).collect();
        store
            .participants(&lab_id)
            .await?
            .into_iter()
            .filter(|p| !listed.contains(p.username.as_str()))
            .filter_map(|p| Username::parse(&p.username).ok())
            .collect()
    };
    let mut groups: BTreeMap<String, BTreeSet<Username>> = BTreeMap::new();
    groups.insert(
        lab_id.clone(),
        people
            .0
            .iter()
            .map(|p| p.username.clone())
            .chain(kept)
            .collect(),
    );
    for p in &people.0 {
        if let Some(g) = &p.group {
            groups
                .entry(format!("{lab_id}.{g}"))
                .or_default()
                .insert(p.username.clone());
        }
    }
    for (cn, members) in groups {
        let current = dir.group_members(&cn).await?;
        let now: BTreeSet<String> = members.iter().map(|m| m.to_string()).collect();
        let before = current.clone().unwrap_or_default();
        if current.is_some() && before == now || current.is_none() && now.is_empty() {
            continue;
        }
        changes.push(Change::SetGroup {
            cn,
            exists: current.is_some(),
            added: now.difference(&before).count(),
            removed: before.difference(&now).count(),
            members,
        });
    }
    dir.close().await;
    Ok(())
}
