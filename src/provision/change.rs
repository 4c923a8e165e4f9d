//! One change that `apply` makes, as `plan` shows it.

use crate::ident::{PgName, Username};
use std::collections::BTreeSet;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Baseline {
        server: String,
    },
    BuildLab {
        server: String,
        rebuild: bool,
    },
    AddPerson {
        user: Username,
        name: String,
        email: String,
    },
    UpdatePerson {
        user: Username,
        name: String,
        email: String,
    },
    SetPassword {
        user: Username,
    },
    SetGroup {
        cn: String,
        exists: bool,
        members: BTreeSet<Username>,
        added: usize,
        removed: usize,
    },
    CreateRole {
        server: String,
        role: PgName,
        connection_limit: u32,
    },
    FixRole {
        server: String,
        role: PgName,
        connection_limit: u32,
    },
    CreateGroupRole {
        server: String,
        role: PgName,
    },
    GrantGroup {
        server: String,
        group: PgName,
        member: PgName,
    },
    /// The checking role of a database owner (see `PgName::checker`).
    Checker {
        server: String,
        owner: PgName,
    },
    CreateDatabase {
        server: String,
        db: PgName,
        owner: PgName,
        /// Set on the new database right after it is made.
        search_path: Vec<String>,
    },
    CloseDatabase {
        server: String,
        db: PgName,
        owner: PgName,
    },
    /// The database's `search_path` (see `postgres::search_path`).
    SearchPath {
        server: String,
        db: PgName,
        path: Vec<String>,
    },
    Prune {
        server: String,
        db: PgName,
        users: Vec<Username>,
    },
}

impl Change {
    /// Apply order: each phase needs only what earlier phases made (a role
    /// before the database it owns); within a phase the plan's order stays.
    pub(super) fn phase(&self) -> u8 {
        match self {
            Change::Baseline { .. } => 0,
            Change::BuildLab { .. } => 1,
            Change::AddPerson { .. } | Change::UpdatePerson { .. } | Change::SetPassword { .. } => {
                2
            }
            Change::SetGroup { .. } => 3,
            Change::CreateRole { .. } | Change::FixRole { .. } => 4,
            Change::CreateGroupRole { .. } => 5,
            Change::GrantGroup { .. } | Change::Checker { .. } => 6,
            Change::CreateDatabase { .. } => 7,
            Change::CloseDatabase { .. } | Change::SearchPath { .. } => 8,
            Change::Prune { .. } => 9,
        }
    }

    pub(super) fn server(&self) -> Option<&str> {
        match self {
            Change::Baseline { server }
            | Change::BuildLab { server, .. }
            | Change::CreateRole { server, .. }
            | Change::FixRole { server, .. }
            | Change::CreateGroupRole { server, .. }
            | Change::GrantGroup { server, .. }
            | Change::Checker { server, .. }
            | Change::CreateDatabase { server, .. }
            | Change::CloseDatabase { server, .. }
            | Change::SearchPath { server, .. }
            | Change::Prune { server, .. } => Some(server),
            _ => None,
        }
    }

    /// A short name of the kind of change, for timings and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Change::Baseline { .. } => "baseline",
            Change::BuildLab { .. } => "build_lab",
            Change::AddPerson { .. } => "ldap_add_person",
            Change::UpdatePerson { .. } => "ldap_update_person",
            Change::SetPassword { .. } => "ldap_set_password",
            Change::SetGroup { .. } => "ldap_set_group",
            Change::CreateRole { .. } => "pg_create_role",
            Change::FixRole { .. } => "pg_fix_role",
            Change::CreateGroupRole { .. } => "pg_create_group_role",
            Change::GrantGroup { .. } => "pg_grant_group",
            Change::Checker { .. } => "pg_checker",
            Change::CreateDatabase { .. } => "pg_create_database",
            Change::CloseDatabase { .. } => "pg_close_database",
            Change::SearchPath { .. } => "pg_search_path",
            Change::Prune { .. } => "prune",
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Baseline { server } => write!(f, "+ pg[{server}] roles pglab_students, pglab_starter; no CONNECT for PUBLIC on postgres, template1"),
            Change::BuildLab { server, rebuild: false } => write!(f, "+ pg[{server}] reference and template databases of the lab"),
            Change::BuildLab { server, rebuild: true } => write!(f, "~ pg[{server}] rebuild reference and template databases (sources changed; existing participant databases keep their content)"),
            Change::AddPerson { user, name, email } => write!(f, "+ ldap person uid={user} ({name} <{email}>)"),
            Change::UpdatePerson { user, name, email } => write!(f, "~ ldap person uid={user}: name {name:?}, email {email}"),
            Change::SetPassword { user } => write!(f, "+ ldap password of uid={user} (random initial password, for the credentials page)"),
            Change::SetGroup { cn, exists: false, members, .. } => write!(f, "+ ldap group cn={cn} with {} members", members.len()),
            Change::SetGroup { cn, added, removed, .. } => write!(f, "~ ldap group cn={cn}: +{added} -{removed} members"),
            Change::CreateRole { server, role, connection_limit } => write!(f, "+ pg[{server}] role {role} (login by LDAP, connection limit {connection_limit})"),
            Change::FixRole { server, role, connection_limit } => write!(f, "~ pg[{server}] role {role}: member of pglab_students, connection limit {connection_limit}"),
            Change::CreateGroupRole { server, role } => write!(f, "+ pg[{server}] group role {role}"),
            Change::GrantGroup { server, group, member } => write!(f, "+ pg[{server}] grant {group} to {member}"),
            Change::CreateDatabase { server, db, owner, search_path } => write!(f, "+ pg[{server}] database {db} from the lab template, owned by {owner}, CONNECT for its owner only, search_path {}", search_path.join(", ")),
            Change::SearchPath { server, db, path } => write!(f, "~ pg[{server}] database {db}: search_path {}", path.join(", ")),
            Change::Checker { server, owner } => write!(f, "+ pg[{server}] checking role {} (can act as {owner} and nobody else)", crate::ident::PgName::checker(owner)),
            Change::CloseDatabase { server, db, owner } => write!(f, "~ pg[{server}] CONNECT on {db} for its owner and {} only", crate::ident::PgName::checker(owner)),
            Change::Prune { server, db, users } => write!(f, "- pg[{server}] database {db} of {}: dump to the data directory, then drop", users.iter().map(Username::as_str).collect::<Vec<_>>().join(", ")),
        }
    }
}
