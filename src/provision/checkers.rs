//! Checking roles: `pglab.ck.<owner>` logs in by a password only pglab
//! knows and can become that one owner and nobody else; every check of the
//! owner's database runs in it (docs/security.md).

use super::postgres::CHECKERS_ROLE;
use crate::ident::PgName;
use crate::pgconn::{self, ConnectError};
use crate::settings::PgServerSettings;
use tokio_postgres::Client;

/// Sessions a checking role may hold: pglab's scoring (up to one per
/// task lane), `pglab score`, the stock SQL exporter, a snapshot, and a
/// spare.
const CHECKER_CONNECTIONS: u32 = 6;

/// The password of `owner`'s checking role, derived from the server's
/// scorer key: nothing to store, and the same in every pglab replica.
pub fn checker_password(server: &PgServerSettings, owner: &PgName) -> String {
    use hmac::{Hmac, Mac};
    let mut mac =
        <Hmac<sha2::Sha256> as Mac>::new_from_slice(server.scorer_password.expose().as_bytes())
            .expect("hmac takes any key");
    mac.update(b"pglab checker ");
    mac.update(PgName::checker(owner).as_str().as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..24])
}

fn checker_login_sql(server: &PgServerSettings, owner: &PgName) -> String {
    // A SCRAM verifier, not the password, goes into the statement text.
    let verifier =
        postgres_protocol::password::scram_sha_256(checker_password(server, owner).as_bytes());
    format!(
        "LOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS CONNECTION LIMIT {CHECKER_CONNECTIONS} PASSWORD {}",
        crate::ident::quote_literal(&verifier)
    )
}

/// Session defaults of a checking role: every session of it starts as
/// the owner, read-only, with timeouts, whoever opens it (pglab's scorer
/// sets its own per transaction too; the stock SQL exporter relies on
/// these, since its pool opens connections without its startup SQL).
fn checker_defaults_sql(checker: &str, owner: &str) -> String {
    format!(
        "ALTER ROLE {checker} SET role = {owner};\n\
         ALTER ROLE {checker} SET default_transaction_read_only = on;\n\
         ALTER ROLE {checker} SET statement_timeout = '5s';\n\
         ALTER ROLE {checker} SET lock_timeout = '1s';\n\
         ALTER ROLE {checker} SET idle_in_transaction_session_timeout = '60s';"
    )
}

/// Makes (or mends) `owner`'s checking role: a login that is a member of
/// `owner` and of the pg_hba group only, with no privileges of its own
/// (NOINHERIT): checks run in it as `SET ROLE owner`, and whatever student
/// code does there, it can become nobody else.
pub fn ensure_checker_sql(server: &PgServerSettings, owner: &PgName) -> String {
    let checker = PgName::checker(owner);
    let c = checker.quoted();
    let name = crate::ident::quote_literal(checker.as_str());
    let o = owner.quoted();
    format!(
        "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {name}) THEN CREATE ROLE {c} NOLOGIN; END IF; END $$;\n\
         ALTER ROLE {c} {};\n\
         GRANT {o} TO {c}; GRANT {CHECKERS_ROLE} TO {c};\n\
         {}",
        checker_login_sql(server, owner),
        checker_defaults_sql(&c, &o),
    )
}

/// A session in `db` as `owner`'s checking role. When the password is
/// refused (the scorer key in the config changed since the role was made),
/// pglab's admin sets it again once and the login is retried.
pub async fn connect_checker(
    server: &PgServerSettings,
    db: &str,
    owner: &PgName,
) -> Result<Client, ConnectError> {
    let checker = PgName::checker(owner);
    let password = checker_password(server, owner);
    let login = || pgconn::connect_as(server, db, checker.as_str(), &password, "pglab-check");
    match login().await {
        Err(e) if e.source.code() == Some(&tokio_postgres::error::SqlState::INVALID_PASSWORD) => {
            let admin = pgconn::connect(server, "postgres").await?;
            let reset = format!(
                "ALTER ROLE {} {};",
                checker.quoted(),
                checker_login_sql(server, owner)
            );
            if let Err(e) = admin.batch_execute(&reset).await {
                tracing::warn!(role = %checker, error = %pgconn::db_message(&e), "cannot reset a checking role's password");
            }
            login().await
        }
        other => other,
    }
}
