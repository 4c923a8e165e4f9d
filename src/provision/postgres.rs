//! The Postgres side of provisioning: reading a server's roles and
//! databases, and the statements that change them.

use crate::ident::{quote_ident, quote_literal, PgName};
use crate::pgconn::{self, ConnectError};
use crate::settings::PgServerSettings;
use std::collections::{BTreeMap, BTreeSet};
use tokio_postgres::Client;

/// Group role of every participant login; pg_hba sends its members to LDAP.
pub const STUDENTS_ROLE: &str = "pglab_students";
/// Owns what a lab's starter created in its template, until a clone hands it
/// to the participant with `REASSIGN OWNED`.
pub const STARTER_ROLE: &str = "pglab_starter";
/// Every login role of a submission's restore job is in it; pg_hba lets
/// its members in by password before the LDAP line of the students.
pub const RESTORERS_ROLE: &str = "pglab_restorers";
/// Every checking role (`pglab.ck.<owner>`, see [`PgName::checker`]) is in
/// it, for the pg_hba line that lets them in by password before the LDAP
/// line (they are members of student roles). It has no privileges.
pub const CHECKERS_ROLE: &str = "pglab_checkers";
/// Owns the databases closed at their deadline (`after_deadline: read-only`
/// or `lock`): their students then hold no privilege on the database they
/// could grant back to themselves.
pub const CLOSED_ROLE: &str = "pglab_closed";
/// Roles of earlier pglab versions that were members of every participant
/// role (so student code run by a check could become any classmate); they
/// are dropped at every start.
const LEGACY_READERS: [&str; 2] = ["pglab_scorer", "pglab_monitor"];
/// Above this template size FILE_COPY beats WAL_LOG (which writes the whole
/// template to WAL); see docs/performance.md.
const WAL_LOG_LIMIT_BYTES: i64 = 256 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("Postgres server {server}: {what}: {}", pgconn::db_message(.source))]
    Sql {
        server: String,
        what: String,
        source: tokio_postgres::Error,
    },
    #[error("{0}")]
    Refused(String),
}

pub fn sql_err(
    server: &str,
    what: impl Into<String>,
) -> impl FnOnce(tokio_postgres::Error) -> PgError {
    let (server, what) = (server.to_string(), what.into());
    move |source| PgError::Sql {
        server,
        what,
        source,
    }
}

#[derive(Debug, Clone)]
pub struct RoleState {
    pub login: bool,
    pub connection_limit: i32,
    pub member_of: BTreeSet<String>,
}

/// Who may connect to a database, as far as pglab cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbAccess {
    pub public_connect: bool,
    /// Whether the owner's checking role has CONNECT.
    pub checker_connect: bool,
}

impl DbAccess {
    /// What every participant database must look like.
    pub fn is_closed(&self) -> bool {
        !self.public_connect && self.checker_connect
    }
}

#[derive(Debug, Clone, Default)]
pub struct ServerState {
    pub roles: BTreeMap<String, RoleState>,
    pub databases: BTreeMap<String, DbAccess>,
    /// Each database's own `search_path` setting, as its names.
    pub search_paths: BTreeMap<String, Vec<String>>,
    pub baseline_ok: bool,
}

/// The `search_path` of a participant's database: their own schema, then
/// `public`, then the lab's schemas (so that `\dt` shows their tables).
pub fn search_path(schemas: &[String]) -> Vec<String> {
    ["$user", "public"]
        .into_iter()
        .map(str::to_string)
        .chain(schemas.iter().cloned())
        .collect()
}

pub fn search_path_sql(db: &PgName, path: &[String]) -> String {
    let names: Vec<String> = path.iter().map(|n| quote_ident(n)).collect();
    format!(
        "ALTER DATABASE {} SET search_path = {};",
        db.quoted(),
        names.join(", ")
    )
}

/// The names of a stored `search_path=...` setting.
fn parse_search_path(setting: &str) -> Vec<String> {
    setting
        .split(',')
        .map(|n| {
            let n = n.trim();
            match n.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
                Some(quoted) => quoted.replace("\"\"", "\""),
                None => n.to_string(),
            }
        })
        .filter(|n| !n.is_empty())
        .collect()
}

impl ServerState {
    pub fn is_student(&self, role: &str) -> bool {
        self.roles
            .get(role)
            .is_some_and(|r| r.member_of.contains(STUDENTS_ROLE))
    }

    /// Whether `owner`'s checking role exists, logs in and may act as
    /// `owner` (its password is set by `pglab apply` and mended by the
    /// scorer when the key changed).
    pub fn has_checker(&self, owner: &PgName) -> bool {
        self.roles
            .get(PgName::checker(owner).as_str())
            .is_some_and(|r| {
                r.login
                    && r.member_of.contains(owner.as_str())
                    && r.member_of.contains(CHECKERS_ROLE)
                    && r.member_of.len() == 2
            })
    }
}

pub async fn read_state(
    server: &PgServerSettings,
    client: &Client,
) -> Result<ServerState, PgError> {
    let mut state = ServerState::default();
    let rows = client
        .query(
            "SELECT r.rolname::text, r.rolcanlogin, r.rolconnlimit,
                    coalesce(array_agg(g.rolname::text) FILTER (WHERE g.rolname IS NOT NULL), '{}')
             FROM pg_roles r
             LEFT JOIN pg_auth_members m ON m.member = r.oid
             LEFT JOIN pg_roles g ON g.oid = m.roleid
             GROUP BY 1, 2, 3",
            &[],
        )
        .await
        .map_err(sql_err(&server.name, "read roles"))?;
    for r in rows {
        let member_of: Vec<String> = r.get(3);
        state.roles.insert(
            r.get(0),
            RoleState {
                login: r.get(1),
                connection_limit: r.get(2),
                member_of: member_of.into_iter().collect(),
            },
        );
    }
    let rows = client
        .query(
            "SELECT d.datname::text,
                    EXISTS (SELECT 1 FROM aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a
                            WHERE a.grantee = 0 AND a.privilege_type = 'CONNECT'),
                    EXISTS (SELECT 1 FROM aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a
                            JOIN pg_roles r ON r.oid = a.grantee
                            WHERE (r.rolname = 'pglab.ck.' || pg_get_userbyid(d.datdba)
                                   OR (pg_get_userbyid(d.datdba) = 'pglab_closed' AND r.rolname LIKE 'pglab.ck.%'))
                              AND a.privilege_type = 'CONNECT')
             FROM pg_database d",
            &[],
        )
        .await
        .map_err(sql_err(&server.name, "read databases"))?;
    for r in rows {
        let access = DbAccess {
            public_connect: r.get(1),
            checker_connect: r.get(2),
        };
        state.databases.insert(r.get(0), access);
    }
    let rows = client
        .query(
            "SELECT d.datname::text, substr(c, length('search_path=') + 1)
             FROM pg_db_role_setting s
             JOIN pg_database d ON d.oid = s.setdatabase
             CROSS JOIN unnest(s.setconfig) c
             WHERE s.setrole = 0 AND c LIKE 'search\\_path=%'",
            &[],
        )
        .await
        .map_err(sql_err(&server.name, "read database settings"))?;
    for r in rows {
        let setting: String = r.get(1);
        state
            .search_paths
            .insert(r.get(0), parse_search_path(&setting));
    }
    let public = |db: &str| state.databases.get(db).is_some_and(|a| a.public_connect);
    state.baseline_ok = state.roles.contains_key(STUDENTS_ROLE)
        && state.roles.contains_key(STARTER_ROLE)
        && state.roles.contains_key(CHECKERS_ROLE)
        && state.roles.contains_key(CLOSED_ROLE)
        && !LEGACY_READERS.iter().any(|r| state.roles.contains_key(*r))
        && !public("postgres")
        && !public("template1");
    Ok(state)
}

pub use super::checkers::{checker_password, connect_checker, ensure_checker_sql};

/// Roles pglab relies on, and no way in to the maintenance databases. Run
/// by `apply` when missing and at every server start.
pub async fn ensure_baseline(server: &PgServerSettings, client: &Client) -> Result<(), PgError> {
    let creates: String = [STUDENTS_ROLE, STARTER_ROLE, RESTORERS_ROLE, CHECKERS_ROLE, CLOSED_ROLE]
        .iter()
        .map(|role| {
            format!("IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN CREATE ROLE {role} NOLOGIN; END IF;\n")
        })
        .collect();
    // DROP OWNED in any database revokes a role's privileges on databases.
    let legacy: String = LEGACY_READERS
        .iter()
        .map(|role| {
            format!("IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN DROP OWNED BY {role}; DROP ROLE {role}; END IF;\n")
        })
        .collect();
    // Written only when not so yet: every pglab start runs this (replicas
    // starting together).
    let revokes: String = ["postgres", "template1"]
        .iter()
        .map(|db| {
            format!("IF has_database_privilege('public', '{db}', 'CONNECT') OR has_database_privilege('public', '{db}', 'TEMPORARY') THEN REVOKE CONNECT, TEMPORARY ON DATABASE {db} FROM PUBLIC; END IF;\n")
        })
        .collect();
    let sql = format!("DO $$ BEGIN\n{creates}{legacy}{revokes}END $$;");
    crate::pgconn::execute_raced(client, &sql)
        .await
        .map_err(sql_err(&server.name, "create pglab roles"))
}

/// A participant's login role: no password (LDAP checks it), no powers.
pub fn create_login_role_sql(role: &PgName, connection_limit: u32) -> String {
    format!(
        "CREATE ROLE {r} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS CONNECTION LIMIT {connection_limit} IN ROLE {STUDENTS_ROLE};",
        r = role.quoted()
    )
}

pub fn fix_login_role_sql(role: &PgName, connection_limit: u32) -> String {
    format!(
        "ALTER ROLE {r} LOGIN CONNECTION LIMIT {connection_limit}; GRANT {STUDENTS_ROLE} TO {r};",
        r = role.quoted()
    )
}

/// A login role for one job (a restore) that can act as `owner` and nothing
/// else: a password given as its SCRAM verifier, valid until `until`, at
/// most 4 sessions, and member of `pglab_restorers` (pg_hba lets it in by
/// password).
pub fn create_job_login_sql(
    role: &PgName,
    owner: &PgName,
    verifier: &str,
    until: chrono::DateTime<chrono::Utc>,
) -> String {
    format!(
        "CREATE ROLE {r} LOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS \
         CONNECTION LIMIT 4 PASSWORD {} VALID UNTIL {} IN ROLE {}, {RESTORERS_ROLE};",
        quote_literal(verifier),
        quote_literal(&until.to_rfc3339()),
        owner.quoted(),
        r = role.quoted(),
    )
}

/// In the database of the session: what `from` owns goes to `to`, and
/// `from` loses every privilege there (so that it can be dropped).
pub fn hand_over_owned_sql(from: &PgName, to: &PgName) -> String {
    format!(
        "REASSIGN OWNED BY {f} TO {}; DROP OWNED BY {f};",
        to.quoted(),
        f = from.quoted()
    )
}

/// A group's database owner: members act through it, nobody logs in as it.
pub fn create_group_role_sql(role: &PgName) -> String {
    format!(
        "CREATE ROLE {r} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;",
        r = role.quoted()
    )
}

pub fn grant_group_sql(group: &PgName, member: &PgName) -> String {
    format!("GRANT {} TO {};", group.quoted(), member.quoted())
}

/// CONNECT for the owner (implicit) and the owner's checking role only.
pub fn close_database_sql(db: &PgName, owner: &PgName) -> String {
    format!(
        "REVOKE ALL ON DATABASE {d} FROM PUBLIC; GRANT CONNECT ON DATABASE {d} TO {};",
        PgName::checker(owner).quoted(),
        d = db.quoted()
    )
}

/// Runs `create` (a `CREATE DATABASE` statement naming `db`) so that the
/// new database admits no session before `access` (its grants) ran: it is
/// made with connections disallowed, then `access` runs, then it opens. A
/// student cannot slip into a reference, template or scratch database in
/// the moment between its creation and the REVOKE from PUBLIC.
pub async fn create_closed_database(
    server: &PgServerSettings,
    client: &Client,
    create: &str,
    db: &PgName,
    access: &str,
) -> Result<(), PgError> {
    client
        .batch_execute(&format!("{create} ALLOW_CONNECTIONS false"))
        .await
        .map_err(sql_err(&server.name, format!("create database {db}")))?;
    client
        .batch_execute(&format!(
            "{access} ALTER DATABASE {} ALLOW_CONNECTIONS true;",
            db.quoted()
        ))
        .await
        .map_err(sql_err(&server.name, format!("close {db} to others")))
}

/// No CONNECT for anybody but pglab's admin (reference, template).
pub fn revoke_connect_sql(db: &PgName) -> String {
    format!("REVOKE ALL ON DATABASE {} FROM PUBLIC;", db.quoted())
}

/// Facts about a template that every clone of it needs.
pub struct TemplateInfo {
    pub name: PgName,
    /// Whether the starter left objects to hand over with `REASSIGN OWNED`.
    pub has_starter_objects: bool,
    pub strategy: &'static str,
}

pub async fn template_info(
    server: &PgServerSettings,
    client: &Client,
    name: &PgName,
) -> Result<TemplateInfo, PgError> {
    let row = client
        .query_one(
            "SELECT pg_database_size(d.oid),
                    EXISTS (SELECT 1 FROM pg_shdepend s
                            WHERE s.dbid = d.oid AND s.deptype = 'o'
                              AND s.refobjid = (SELECT oid FROM pg_roles WHERE rolname = $2))
             FROM pg_database d WHERE d.datname = $1",
            &[&name.as_str(), &STARTER_ROLE],
        )
        .await
        .map_err(sql_err(&server.name, format!("inspect template {name}")))?;
    let size: i64 = row.get(0);
    Ok(TemplateInfo {
        name: name.clone(),
        has_starter_objects: row.get(1),
        strategy: if size > WAL_LOG_LIMIT_BYTES {
            "FILE_COPY"
        } else {
            "WAL_LOG"
        },
    })
}

/// Clones the template into a new database owned by `owner`, closes it to
/// everybody else, and hands the starter's objects to the owner.
#[tracing::instrument(skip_all, fields(server = %server.name, db = %db))]
pub async fn clone_database(
    server: &PgServerSettings,
    client: &Client,
    template: &TemplateInfo,
    db: &PgName,
    owner: &PgName,
    search_path: &[String],
) -> Result<(), PgError> {
    let create = format!(
        "CREATE DATABASE {} WITH TEMPLATE {} OWNER {} STRATEGY {}",
        db.quoted(),
        template.name.quoted(),
        owner.quoted(),
        template.strategy
    );
    // Grants and the search path are set before anybody can connect.
    let setup = format!(
        "{} {}",
        close_database_sql(db, owner),
        search_path_sql(db, search_path)
    );
    create_closed_database(server, client, &create, db, &setup).await?;
    if template.has_starter_objects {
        let inside = pgconn::connect(server, db.as_str()).await?;
        inside
            .batch_execute(&format!(
                "REASSIGN OWNED BY {STARTER_ROLE} TO {}",
                owner.quoted()
            ))
            .await
            .map_err(sql_err(
                &server.name,
                format!("hand starter objects of {db} to {owner}"),
            ))?;
    }
    Ok(())
}

/// Ends every other session in `db` and waits (up to a second, 5 ms at a
/// time) until they are gone: a RENAME or a dump after it finds none.
pub async fn end_sessions(client: &Client, db: &str) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&db],
        )
        .await?;
    for _ in 0..200 {
        let open: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&db],
            )
            .await?
            .get(0);
        if open == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    Ok(())
}

/// `, "a", "b"`: the roles with a grant on database `db` other than PUBLIC,
/// its owner, `owner` and `owner`'s checking role (grants a student made
/// on their own database), quoted for a REVOKE.
pub async fn other_grantees(
    client: &Client,
    db: &str,
    owner: &PgName,
) -> Result<String, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT DISTINCT r.rolname::text
             FROM pg_database d, aclexplode(d.datacl) a JOIN pg_roles r ON r.oid = a.grantee
             WHERE d.datname = $1 AND a.grantee <> d.datdba AND r.rolname <> ALL ($2)",
            &[
                &db,
                &vec![owner.to_string(), PgName::checker(owner).to_string()],
            ],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| format!(", {}", quote_ident(r.get::<_, &str>(0))))
        .collect())
}

/// Leaves `db` open to pglab's admin only: CONNECT revoked from PUBLIC and
/// from the owner (and with it from everybody acting through the owner),
/// every other session ended, then connections allowed.
pub async fn close_for_admin(
    server: &PgServerSettings,
    client: &Client,
    db: &str,
) -> Result<(), PgError> {
    let q = quote_ident(db);
    let owner: String = client
        .query_one(
            "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1",
            &[&db],
        )
        .await
        .map_err(sql_err(&server.name, format!("find the owner of {db}")))?
        .get(0);
    let others = other_grantees(client, db, &PgName::from_catalog(owner.clone()))
        .await
        .map_err(sql_err(&server.name, format!("read the grants on {db}")))?;
    client
        .batch_execute(&format!(
            "REVOKE CONNECT, TEMPORARY ON DATABASE {q} FROM PUBLIC, {}{others};",
            quote_ident(&owner)
        ))
        .await
        .map_err(sql_err(&server.name, format!("close {db}")))?;
    end_sessions(client, db)
        .await
        .map_err(sql_err(&server.name, format!("end the sessions in {db}")))?;
    allow_connections(client, db, true)
        .await
        .map_err(sql_err(&server.name, format!("open {db} for the admin")))
}

/// Lets sessions into `db` (as its grants allow), or keeps every new one
/// out, the admin's too.
pub async fn allow_connections(
    client: &Client,
    db: &str,
    allow: bool,
) -> Result<(), tokio_postgres::Error> {
    client
        .batch_execute(&format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS {allow}",
            quote_ident(db)
        ))
        .await
}

pub async fn drop_database(
    server: &PgServerSettings,
    client: &Client,
    db: &str,
) -> Result<(), PgError> {
    client
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(db)
        ))
        .await
        .map_err(sql_err(&server.name, format!("drop database {db}")))
}

/// Drops `name` if it is a read-only copy of a snapshot (owned by a
/// `pglab.sn.` role), with its owner role and that role's checking role;
/// `true` when no database of another kind has the name (nothing to drop,
/// or dropped), `false` when one has: it is left as it is.
pub async fn drop_snapshot_copy(
    server: &PgServerSettings,
    admin: &Client,
    name: &str,
) -> Result<bool, PgError> {
    let owner: Option<String> = admin
        .query_opt(
            "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1",
            &[&name],
        )
        .await
        .map_err(sql_err(&server.name, format!("find the owner of {name}")))?
        .map(|r| r.get(0));
    let Some(owner) = owner else {
        return Ok(true);
    };
    if !owner.starts_with("pglab.sn.") {
        return Ok(false);
    }
    drop_database(server, admin, name).await?;
    let owner = PgName::from_catalog(owner);
    let checker = PgName::checker(&owner);
    admin
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS {}; DROP ROLE IF EXISTS {};",
            checker.quoted(),
            owner.quoted()
        ))
        .await
        .map_err(sql_err(&server.name, format!("drop the roles of {name}")))?;
    Ok(true)
}

/// The read-only snapshot copies of database `db` (`<db>_snap_<n>`).
pub async fn snapshot_copies(
    client: &Client,
    db: &str,
) -> Result<Vec<String>, tokio_postgres::Error> {
    Ok(client
        .query(
            "SELECT datname::text FROM pg_database
             WHERE starts_with(datname, $1 || '_snap_')
               AND pg_get_userbyid(datdba) LIKE 'pglab.sn.%'",
            &[&db],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

pub async fn drop_role(
    server: &PgServerSettings,
    client: &Client,
    role: &str,
) -> Result<(), PgError> {
    client
        .batch_execute(&format!("DROP ROLE IF EXISTS {}", quote_ident(role)))
        .await
        .map_err(sql_err(&server.name, format!("drop role {role}")))
}
