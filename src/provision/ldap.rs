//! The LDAP side of provisioning: people and groups under the base DN.

use crate::ident::{escape_dn_value, Username};
use crate::settings::LdapSettings;
use ldap3::exop::PasswordModify;
use ldap3::{LdapConnAsync, LdapConnSettings, Mod, Scope, SearchEntry};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

const LDAP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum LdapError {
    #[error("LDAP server {url}: {source}")]
    Connect {
        url: String,
        source: ldap3::LdapError,
    },
    #[error("LDAP {op}: {source}")]
    Op {
        op: String,
        source: ldap3::LdapError,
    },
}

/// A person as the directory has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub name: String,
    pub email: String,
    pub has_password: bool,
}

pub fn person_dn(base: &str, user: &Username) -> String {
    format!("uid={},ou=people,{}", escape_dn_value(user.as_str()), base)
}

/// A connection bound as a person with their own password, or `None` when
/// the password is wrong (or empty: an empty password would be an
/// unauthenticated bind, which LDAP calls a success).
async fn bind_as(
    settings: &LdapSettings,
    user: &Username,
    password: &str,
) -> Result<Option<ldap3::Ldap>, LdapError> {
    if password.is_empty() {
        return Ok(None);
    }
    let conn_settings = LdapConnSettings::new().set_conn_timeout(LDAP_TIMEOUT);
    let (conn, mut ldap) = LdapConnAsync::with_settings(conn_settings, &settings.url)
        .await
        .map_err(|source| LdapError::Connect {
            url: settings.url.clone(),
            source,
        })?;
    ldap3::drive!(conn);
    let dn = person_dn(&settings.base_dn, user);
    let result = ldap
        .with_timeout(LDAP_TIMEOUT)
        .simple_bind(&dn, password)
        .await
        .map_err(op("bind"))?;
    match result.rc {
        0 => Ok(Some(ldap)),
        // invalidCredentials (also for an unknown person), inappropriateAuthentication
        49 | 48 | 32 => {
            let _ = ldap.unbind().await;
            Ok(None)
        }
        _ => Err(op("bind")(ldap3::LdapError::from(result))),
    }
}

/// Whether `password` is `user`'s LDAP password.
#[tracing::instrument(skip_all, fields(uid = %user))]
pub async fn check_password(
    settings: &LdapSettings,
    user: &Username,
    password: &str,
) -> Result<bool, LdapError> {
    Ok(match bind_as(settings, user, password).await? {
        Some(mut ldap) => {
            let _ = ldap.unbind().await;
            true
        }
        None => false,
    })
}

/// A person changes their own password (Password Modify with the old one,
/// bound as themselves); `false` when `old` is wrong.
#[tracing::instrument(skip_all, fields(uid = %user))]
pub async fn change_own_password(
    settings: &LdapSettings,
    user: &Username,
    old: &str,
    new: &str,
) -> Result<bool, LdapError> {
    let Some(mut ldap) = bind_as(settings, user, old).await? else {
        return Ok(false);
    };
    let dn = person_dn(&settings.base_dn, user);
    let result = ldap
        .with_timeout(LDAP_TIMEOUT)
        .extended(PasswordModify {
            user_id: Some(&dn),
            old_pass: Some(old),
            new_pass: Some(new),
        })
        .await
        .and_then(|r| r.success())
        .map(|_| ())
        .map_err(op("change own password"));
    let _ = ldap.unbind().await;
    result?;
    Ok(true)
}

pub struct Directory {
    ldap: ldap3::Ldap,
    base: String,
}

fn op(name: impl Into<String>) -> impl FnOnce(ldap3::LdapError) -> LdapError {
    let op = name.into();
    move |source| LdapError::Op { op, source }
}

/// Whether the directory answers a bind as pglab's LDAP admin (within
/// the LDAP timeout), or why not.
pub async fn reachable(settings: &LdapSettings) -> Result<(), String> {
    Directory::connect(settings)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

impl LdapError {
    /// The directory could not be reached (down, not answering), as
    /// opposed to an operation it refused.
    pub fn is_unreachable(&self) -> bool {
        match self {
            LdapError::Connect { source, .. } | LdapError::Op { source, .. } => matches!(
                source,
                ldap3::LdapError::Io { .. } | ldap3::LdapError::Timeout { .. }
            ),
        }
    }
}

impl Directory {
    /// Connects and binds as pglab's LDAP admin.
    #[tracing::instrument(skip_all, fields(url = %settings.url))]
    pub async fn connect(settings: &LdapSettings) -> Result<Self, LdapError> {
        let connect = |source| LdapError::Connect {
            url: settings.url.clone(),
            source,
        };
        let conn_settings = LdapConnSettings::new().set_conn_timeout(LDAP_TIMEOUT);
        let (conn, mut ldap) = LdapConnAsync::with_settings(conn_settings, &settings.url)
            .await
            .map_err(connect)?;
        ldap3::drive!(conn);
        ldap.with_timeout(LDAP_TIMEOUT)
            .simple_bind(&settings.bind_dn, settings.bind_password.expose())
            .await
            .and_then(|r| r.success())
            .map_err(connect)?;
        Ok(Self {
            ldap,
            base: settings.base_dn.clone(),
        })
    }

    pub fn person_dn(&self, user: &Username) -> String {
        person_dn(&self.base, user)
    }

    /// Whether `user` is a member of the group `cn` (under `ou=groups`).
    pub async fn is_member(&mut self, cn: &str, user: &Username) -> Result<bool, LdapError> {
        Ok(self
            .group_members(cn)
            .await?
            .is_some_and(|m| m.contains(user.as_str())))
    }

    /// Adds `user` to the group `cn`, creating the group if needed.
    /// Other members stay as they are (also those whose uid pglab would
    /// not accept as a username).
    pub async fn add_member(&mut self, cn: &str, user: &Username) -> Result<(), LdapError> {
        match self.group_members(cn).await? {
            None => {
                self.set_group(cn, false, &BTreeSet::from([user.clone()]))
                    .await
            }
            Some(members) if members.contains(user.as_str()) => Ok(()),
            Some(_) => {
                let dn = self.group_dn(cn);
                let member = HashSet::from([self.person_dn(user)]);
                self.ldap
                    .with_timeout(LDAP_TIMEOUT)
                    .modify(&dn, vec![Mod::Add("member".to_string(), member)])
                    .await
                    .and_then(|r| r.success())
                    .map_err(op(format!("add {user} to group {dn}")))?;
                Ok(())
            }
        }
    }

    pub fn group_dn(&self, cn: &str) -> String {
        format!("cn={},ou=groups,{}", escape_dn_value(cn), self.base)
    }

    /// Every person under `ou=people`, by uid.
    pub async fn people(&mut self) -> Result<BTreeMap<String, Person>, LdapError> {
        let base = format!("ou=people,{}", self.base);
        let (entries, _) = self
            .ldap
            .with_timeout(LDAP_TIMEOUT)
            .search(
                &base,
                Scope::OneLevel,
                "(objectClass=inetOrgPerson)",
                vec!["uid", "cn", "mail", "userPassword"],
            )
            .await
            .and_then(|r| r.success())
            .map_err(op("search people"))?;
        let mut out = BTreeMap::new();
        for entry in entries {
            let e = SearchEntry::construct(entry);
            let first = |k: &str| {
                e.attrs
                    .get(k)
                    .and_then(|v| v.first())
                    .cloned()
                    .unwrap_or_default()
            };
            let has_password =
                e.attrs.contains_key("userPassword") || e.bin_attrs.contains_key("userPassword");
            out.insert(
                first("uid"),
                Person {
                    name: first("cn"),
                    email: first("mail"),
                    has_password,
                },
            );
        }
        Ok(out)
    }

    /// Members (uids) of the group `cn`, or `None` if it does not exist.
    pub async fn group_members(&mut self, cn: &str) -> Result<Option<BTreeSet<String>>, LdapError> {
        let dn = self.group_dn(cn);
        let result = self
            .ldap
            .with_timeout(LDAP_TIMEOUT)
            .search(
                &dn,
                Scope::Base,
                "(objectClass=groupOfNames)",
                vec!["member"],
            )
            .await
            .map_err(op("read group"))?;
        if result.1.rc == 32 {
            return Ok(None); // noSuchObject
        }
        let (entries, _) = result.success().map_err(op(format!("read group {cn}")))?;
        let Some(entry) = entries.into_iter().next() else {
            return Ok(None);
        };
        let suffix = format!(",ou=people,{}", self.base);
        let members = SearchEntry::construct(entry)
            .attrs
            .remove("member")
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| {
                m.strip_suffix(&suffix)
                    .and_then(|r| r.strip_prefix("uid="))
                    .map(str::to_string)
            })
            .collect();
        Ok(Some(members))
    }

    #[tracing::instrument(skip_all, fields(uid = %user))]
    pub async fn add_person(
        &mut self,
        user: &Username,
        name: &str,
        email: &str,
    ) -> Result<(), LdapError> {
        let dn = self.person_dn(user);
        let sn = name
            .rsplit(' ')
            .next()
            .filter(|s| !s.is_empty())
            .unwrap_or(user.as_str());
        let set = |v: &str| HashSet::from([v.to_string()]);
        let cn = if name.is_empty() { user.as_str() } else { name };
        let attrs = vec![
            (
                "objectClass".to_string(),
                HashSet::from(["inetOrgPerson".to_string()]),
            ),
            ("uid".to_string(), set(user.as_str())),
            ("cn".to_string(), set(cn)),
            ("sn".to_string(), set(sn)),
            ("mail".to_string(), set(email)),
        ];
        self.ldap
            .with_timeout(LDAP_TIMEOUT)
            .add(&dn, attrs)
            .await
            .and_then(|r| r.success())
            .map_err(op(format!("add {dn}")))?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(uid = %user))]
    pub async fn update_person(
        &mut self,
        user: &Username,
        name: &str,
        email: &str,
    ) -> Result<(), LdapError> {
        let dn = self.person_dn(user);
        let set = |v: &str| HashSet::from([v.to_string()]);
        let cn = if name.is_empty() { user.as_str() } else { name };
        let mods = vec![
            Mod::Replace("cn".to_string(), set(cn)),
            Mod::Replace("mail".to_string(), set(email)),
        ];
        self.ldap
            .with_timeout(LDAP_TIMEOUT)
            .modify(&dn, mods)
            .await
            .and_then(|r| r.success())
            .map_err(op(format!("modify {dn}")))?;
        Ok(())
    }

    /// Sets a password with the Password Modify extended operation (RFC
    /// 3062), so that slapd hashes it with its own scheme.
    #[tracing::instrument(skip_all, fields(uid = %user))]
    pub async fn set_password(&mut self, user: &Username, password: &str) -> Result<(), LdapError> {
        let dn = self.person_dn(user);
        self.ldap
            .with_timeout(LDAP_TIMEOUT)
            .extended(PasswordModify {
                user_id: Some(&dn),
                old_pass: None,
                new_pass: Some(password),
            })
            .await
            .and_then(|r| r.success())
            .map_err(op(format!("set password of {dn}")))?;
        Ok(())
    }

    pub async fn delete_person(&mut self, user: &Username) -> Result<(), LdapError> {
        let dn = self.person_dn(user);
        self.ldap
            .with_timeout(LDAP_TIMEOUT)
            .delete(&dn)
            .await
            .and_then(|r| r.success())
            .map_err(op(format!("delete {dn}")))?;
        Ok(())
    }

    /// Makes the group hold exactly `members` (deleting it when empty:
    /// groupOfNames needs at least one member).
    #[tracing::instrument(skip_all, fields(group = %cn))]
    pub async fn set_group(
        &mut self,
        cn: &str,
        exists: bool,
        members: &BTreeSet<Username>,
    ) -> Result<(), LdapError> {
        let dn = self.group_dn(cn);
        let dns: HashSet<String> = members.iter().map(|m| self.person_dn(m)).collect();
        let ldap = self.ldap.with_timeout(LDAP_TIMEOUT);
        let result = match (exists, dns.is_empty()) {
            (false, true) => return Ok(()),
            (true, true) => ldap.delete(&dn).await,
            (false, false) => {
                let attrs = vec![
                    (
                        "objectClass".to_string(),
                        HashSet::from(["groupOfNames".to_string()]),
                    ),
                    ("cn".to_string(), HashSet::from([cn.to_string()])),
                    ("member".to_string(), dns),
                ];
                ldap.add(&dn, attrs).await
            }
            (true, false) => {
                ldap.modify(&dn, vec![Mod::Replace("member".to_string(), dns)])
                    .await
            }
        };
        result
            .and_then(|r| r.success())
            .map_err(op(format!("write group {dn}")))?;
        Ok(())
    }

    pub async fn close(mut self) {
        let _ = self.ldap.unbind().await;
    }
}
