//! Where each database of a lab lives. A recorded database stays where it
//! is (`pglab move` moves it); a new one goes to the server its
//! participants are pinned to (the list's `server` column), or else to the
//! least-loaded server that is up and has room (`max_databases`,
//! `max_size` in the config).

use super::plan::Placement;
use super::ProvisionError;
use crate::control::Store;
use crate::ident::{PgName, Username};
use crate::settings::{PgServerSettings, Settings};
use std::collections::{BTreeMap, BTreeSet};

/// A database the lab wants, with the server its participants pin it to.
pub(super) struct Wanted {
    pub db: PgName,
    pub owner: PgName,
    pub members: Vec<Username>,
    pub pin: Option<String>,
    /// Its size, when it exists already (a move); else it is counted as
    /// large as the lab's template.
    pub bytes: Option<u64>,
}

/// Bytes a new database is counted with before the lab's template exists.
const EMPTY_DATABASE_BYTES: u64 = 8 * 1024 * 1024;

/// What placement knows of one server.
#[derive(Debug)]
struct Server {
    databases: i64,
    /// Measured bytes of all its databases, when `max_size` is set.
    bytes: Option<u64>,
    /// Why it takes no database now (down, unreachable).
    unusable: Option<String>,
}

/// Every server's load and room, and the notices placing found.
struct Servers<'s> {
    settings: &'s Settings,
    servers: BTreeMap<String, Server>,
    /// Bytes a new database of this lab is counted with.
    per_database: u64,
}

impl<'s> Servers<'s> {
    async fn read(
        settings: &'s Settings,
        store: &Store,
        lab: &crate::ident::LabId,
    ) -> Result<Self, ProvisionError> {
        let counts: BTreeMap<String, i64> = store
            .database_counts()
            .await?
            .into_iter()
            .map(|(s, n)| (s.to_string(), n))
            .collect();
        let down = store.servers_down().await?;
        let mut servers = BTreeMap::new();
        let mut per_database = EMPTY_DATABASE_BYTES;
        for s in &settings.postgres {
            let mut server = Server {
                databases: counts.get(&s.name).copied().unwrap_or(0),
                bytes: None,
                unusable: down.contains(&s.name).then(|| "down".to_string()),
            };
            if server.unusable.is_none() && s.max_bytes().is_some() {
                match measure(s, lab).await {
                    Ok((bytes, template)) => {
                        server.bytes = Some(bytes);
                        per_database = per_database.max(template.unwrap_or(0));
                    }
                    Err(e) => server.unusable = Some(format!("not reachable ({e})")),
                }
            }
            servers.insert(s.name.clone(), server);
        }
        Ok(Self {
            settings,
            servers,
            per_database,
        })
    }

    fn config(&self, name: &str) -> &PgServerSettings {
        self.settings
            .server(name)
            .expect("servers come from the config")
    }

    /// Why `name` cannot take one more database of `bytes` (default: as
    /// large as the lab's template), or `None`.
    fn refusal(&self, name: &str, bytes: Option<u64>) -> Option<String> {
        let adding = bytes.unwrap_or(self.per_database);
        let s = &self.servers[name];
        if let Some(why) = &s.unusable {
            return Some(format!("{name} is {why}"));
        }
        let config = self.config(name);
        if let Some(max) = config.max_databases {
            if s.databases >= i64::from(max) {
                return Some(format!(
                    "{name} is full ({} of max_databases {max})",
                    s.databases
                ));
            }
        }
        if let (Some(max), Some(bytes)) = (config.max_bytes(), s.bytes) {
            if bytes + adding > max {
                return Some(format!(
                    "{name} is full ({} MB used of max_size {}, the database takes about {} MB)",
                    bytes / 1_048_576,
                    config.max_size.as_deref().unwrap_or_default(),
                    adding.div_ceil(1_048_576)
                ));
            }
        }
        None
    }

    fn take(&mut self, name: &str, bytes: Option<u64>) -> String {
        let adding = bytes.unwrap_or(self.per_database);
        let s = self.servers.get_mut(name).expect("known server");
        s.databases += 1;
        if let Some(b) = &mut s.bytes {
            *b += adding;
        }
        name.to_string()
    }

    /// The server for a new database: its pin, or the least-loaded one
    /// with room.
    fn choose(&mut self, w: &Wanted) -> Result<String, ProvisionError> {
        if let Some(pin) = &w.pin {
            if self.settings.server(pin).is_none() {
                return Err(ProvisionError::Input(format!(
                    "{} is pinned to server {pin:?} (the list's server column), which is not in the config; the servers are: {}",
                    who(w),
                    self.names().join(", ")
                )));
            }
            if let Some(why) = self.refusal(pin, w.bytes) {
                return Err(ProvisionError::Input(format!(
                    "{} is pinned to server {pin}, but {why}: pin it elsewhere, or raise the limit",
                    who(w)
                )));
            }
            return Ok(self.take(pin, w.bytes));
        }
        let best = self
            .names()
            .into_iter()
            .filter(|n| self.refusal(n, w.bytes).is_none())
            .min_by_key(|n| self.servers[n].databases);
        match best {
            Some(name) => Ok(self.take(&name, w.bytes)),
            None => {
                let why: Vec<String> = self
                    .names()
                    .iter()
                    .filter_map(|n| self.refusal(n, w.bytes))
                    .collect();
                Err(ProvisionError::Input(format!(
                    "no Postgres server has room for {}: {}; nothing was changed",
                    w.db,
                    why.join("; ")
                )))
            }
        }
    }

    fn names(&self) -> Vec<String> {
        self.settings
            .postgres
            .iter()
            .map(|s| s.name.clone())
            .collect()
    }
}

fn who(w: &Wanted) -> String {
    match w.members.as_slice() {
        [one] if w.owner == one.role() => format!("participant {one}"),
        _ => format!("database {}", w.db),
    }
}

/// Bytes of all databases on `server`, and of the lab's template there.
async fn measure(
    server: &PgServerSettings,
    lab: &crate::ident::LabId,
) -> Result<(u64, Option<u64>), String> {
    let client = crate::pgconn::connect(server, "postgres")
        .await
        .map_err(|e| e.to_string())?;
    let row = client
        .query_one(
            "SELECT (SELECT sum(pg_database_size(oid))::bigint FROM pg_database),
                    (SELECT pg_database_size(oid) FROM pg_database WHERE datname = $1)",
            &[&PgName::template_db(lab).as_str()],
        )
        .await
        .map_err(|e| crate::pgconn::db_message(&e))?;
    let bytes: Option<i64> = row.get(0);
    let template: Option<i64> = row.get(1);
    Ok((
        bytes.unwrap_or(0).max(0) as u64,
        template.map(|t| t.max(0) as u64),
    ))
}

/// The size of every database on `server`.
pub async fn database_sizes(
    server: &PgServerSettings,
) -> Result<BTreeMap<String, u64>, ProvisionError> {
    let client = crate::pgconn::connect(server, "postgres").await?;
    let rows = client
        .query(
            "SELECT datname::text, pg_database_size(oid) FROM pg_database",
            &[],
        )
        .await
        .map_err(super::postgres::sql_err(
            &server.name,
            "read the sizes of its databases",
        ))?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get::<_, i64>(1).max(0) as u64))
        .collect())
}

/// The placements of `wanted`, and notices for databases that are not
/// where their pin says (moving is `pglab move`'s, never a plan's).
pub(super) async fn place(
    settings: &Settings,
    store: &Store,
    lab: &crate::ident::LabId,
    wanted: Vec<Wanted>,
    recorded: &BTreeMap<String, String>,
) -> Result<(Vec<Placement>, Vec<String>), ProvisionError> {
    let mut servers = None;
    let mut placements = Vec::new();
    let mut notices = Vec::new();
    for w in wanted {
        let server = match recorded.get(w.db.as_str()) {
            Some(s) => {
                if let Some(pin) = w.pin.as_ref().filter(|p| *p != s) {
                    let user = w.members.first().map_or("USER", |u| u.as_str());
                    notices.push(format!(
                        "{} is on server {s}, but the list pins it to {pin}: `pglab move {lab} {user} --to {pin}` moves it",
                        w.db
                    ));
                }
                s.clone()
            }
            None => {
                if servers.is_none() {
                    servers = Some(Servers::read(settings, store, lab).await?);
                }
                servers.as_mut().expect("read above").choose(&w)?
            }
        };
        if settings.server(&server).is_none() {
            return Err(ProvisionError::Input(format!(
                "database {} is placed on server {server:?}, which is no longer in the config",
                w.db
            )));
        }
        placements.push(Placement {
            db: w.db,
            owner: w.owner,
            server,
            members: w.members,
        });
    }
    Ok((placements, notices))
}

/// The one server a group's members are pinned to, or why they disagree.
pub(super) fn group_pin<'p>(
    group: &str,
    pins: impl Iterator<Item = (&'p Username, Option<&'p String>)>,
) -> Result<Option<String>, ProvisionError> {
    let named: BTreeSet<(&String, &Username)> =
        pins.filter_map(|(u, p)| p.map(|p| (p, u))).collect();
    let servers: BTreeSet<&String> = named.iter().map(|(p, _)| *p).collect();
    if servers.len() > 1 {
        let list: Vec<String> = named.iter().map(|(p, u)| format!("{u}: {p}")).collect();
        return Err(ProvisionError::Input(format!(
            "group {group} shares one database, but its members are pinned to different servers ({}); give them the same server or none",
            list.join(", ")
        )));
    }
    Ok(servers.into_iter().next().cloned())
}

/// Why `server` cannot take one more database of `lab` (of `bytes`) now
/// (down, unreachable, full), or `None`; a server not in the config is
/// refused.
pub async fn refusal(
    settings: &Settings,
    store: &Store,
    lab: &crate::ident::LabId,
    server: &str,
    bytes: Option<u64>,
) -> Result<Option<String>, ProvisionError> {
    if settings.server(server).is_none() {
        return Ok(Some(format!(
            "server {server:?} is not in the config; the servers are: {}",
            settings
                .postgres
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(Servers::read(settings, store, lab)
        .await?
        .refusal(server, bytes))
}

/// A new server for each database on `from` (emptied by `pglab drain`):
/// the least-loaded of the others that are up and have room, counting the
/// ones chosen before.
pub async fn drain_targets(
    settings: &Settings,
    store: &Store,
    from: &str,
    databases: &[(crate::ident::LabId, crate::control::DatabaseRecord)],
) -> Result<Vec<String>, ProvisionError> {
    let Some((lab, _)) = databases.first() else {
        return Ok(vec![]);
    };
    let mut servers = Servers::read(settings, store, lab).await?;
    if let Some(s) = servers.servers.get_mut(from) {
        s.unusable = Some("being drained".into());
    }
    let sizes = database_sizes(settings.server(from).expect("drained server")).await?;
    databases
        .iter()
        .map(|(_, d)| {
            servers.choose(&Wanted {
                db: d.name.clone(),
                owner: d.owner.clone(),
                members: vec![],
                pin: None,
                bytes: sizes.get(d.name.as_str()).copied(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::group_pin;
    use crate::ident::Username;

    #[test]
    fn a_group_takes_its_members_one_pin_and_refuses_two() {
        let (a, b, c) = (
            Username::parse("a").unwrap(),
            Username::parse("b").unwrap(),
            Username::parse("c").unwrap(),
        );
        let (x, y) = ("vpl1".to_string(), "vpl2".to_string());
        let one = group_pin(
            "g",
            [(&a, Some(&x)), (&b, None), (&c, Some(&x))].into_iter(),
        );
        assert_eq!(one.unwrap().as_deref(), Some("vpl1"));
        assert_eq!(group_pin("g", [(&a, None)].into_iter()).unwrap(), None);
        let e = group_pin("g", [(&a, Some(&x)), (&b, Some(&y))].into_iter())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("group g") && e.contains("a: vpl1") && e.contains("b: vpl2"),
            "{e}"
        );
    }
}
