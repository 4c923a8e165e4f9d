//! The LDAP part of a plan: people and groups to add or change.

use super::ldap::{Directory, Person};
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
    for p in &people.0 {
        changes.extend(person_changes(p, existing.get(p.username.as_str())));
    }
    for (cn, members) in wanted_groups(lab, people, store, prune).await? {
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

/// A participant's LDAP entry: added with a password, or its name, e-mail
/// or missing password fixed.
fn person_changes(p: &Participant, existing: Option<&Person>) -> Vec<Change> {
    let Participant {
        username,
        name,
        email,
        ..
    } = p;
    let set_password = Change::SetPassword {
        user: username.clone(),
    };
    let Some(person) = existing else {
        let add = Change::AddPerson {
            user: username.clone(),
            name: name.clone(),
            email: email.clone(),
        };
        return vec![add, set_password];
    };
    let mut changes = vec![];
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
        changes.push(set_password);
    }
    changes
}

/// Groups and their members: the lab's, and one per participant group.
/// Without --prune, people who left the list stay members (nothing is
/// taken away).
async fn wanted_groups(
    lab: &LoadedLab,
    people: &Participants,
    store: &Store,
    prune: bool,
) -> Result<BTreeMap<String, BTreeSet<Username>>, ProvisionError> {
    let lab_id = lab.lab.id.clone();
    let kept: Vec<Username> = if prune {
        vec![]
    } else {
        let listed: BTreeSet<&str> = people.0.iter().map(|p| p.username.as_str()).collect();
        store
            .participants(&lab_id)
            .await?
            .into_iter()
            .filter(|p| !listed.contains(p.username.as_str()))
            .map(|p| p.username)
            .collect()
    };
    let mut groups: BTreeMap<String, BTreeSet<Username>> = BTreeMap::new();
    groups.insert(
        lab_id.to_string(),
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
    Ok(groups)
}
