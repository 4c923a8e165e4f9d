//! A read-only copy of a snapshot, `<db>_snap_<n>`, that its participant
//! can open to look at their old state.
//!
//! The copy and everything in it belongs to a role of its own,
//! `pglab.sn.<id>` (NOLOGIN, owner of that copy and nothing else), and the
//! restore runs as that role: code of the student's that the restore runs
//! (index expressions, constraints) can reach this copy only. The
//! participant gets CONNECT, USAGE and SELECT, so cannot write into it
//! (they own nothing there), and functions that would run as the copy's
//! owner are made to run as their caller.

use super::EvidenceError;
use crate::ident::PgName;
use crate::provision::postgres::{self as pg, ensure_checker_sql};
use crate::provision::tools;
use crate::settings::PgServerSettings;
use std::path::Path;
use tokio_postgres::Client;

/// Makes `copy` from the snapshot `file`, owned by `owner` (a
/// [`PgName::snapshot_owner`]), readable by `reader`. An earlier copy of
/// the same name is replaced, but only if it is one (owned by a
/// `pglab.sn.` role).
pub async fn restore(
    server: &PgServerSettings,
    file: &Path,
    (copy, owner): (&PgName, &PgName),
    reader: &PgName,
) -> Result<(), EvidenceError> {
    let admin = crate::pgconn::connect(server, "postgres").await?;
    drop_copy(server, &admin, copy).await?;
    admin
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS {o}; CREATE ROLE {o} NOLOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;",
            o = owner.quoted()
        ))
        .await?;
    pg::create_closed_database(
        server,
        &admin,
        &format!(
            "CREATE DATABASE {} OWNER {} TEMPLATE template0",
            copy.quoted(),
            owner.quoted()
        ),
        copy,
        &pg::revoke_connect_sql(copy),
    )
    .await?;
    let restored = tools::pg_restore(server, copy, file, Some(owner)).await;
    if let Err(e) = restored {
        let _ = drop_copy(server, &admin, copy).await;
        return Err(e.into());
    }
    let inside = crate::pgconn::connect(server, copy).await?;
    inside
        .batch_execute(&read_only_sql(&inside, owner, reader).await?)
        .await?;
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {c} SET default_transaction_read_only = on; GRANT CONNECT ON DATABASE {c} TO {};",
            reader.quoted(),
            c = copy.quoted()
        ))
        .await?;
    Ok(())
}

/// Inside the copy: definer functions run as their caller, the reader may
/// read every schema's tables and sequences and nothing more.
async fn read_only_sql(
    inside: &Client,
    owner: &PgName,
    reader: &PgName,
) -> Result<String, EvidenceError> {
    let mut sql = String::new();
    let system =
        "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'";
    for r in inside
        .query(
            &format!(
                "SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p
                 JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
                 WHERE p.prosecdef AND {system}"
            ),
            &[],
        )
        .await?
    {
        sql += &format!(
            "ALTER ROUTINE {} SECURITY INVOKER;\n",
            r.get::<_, String>(0)
        );
    }
    let reader = reader.quoted();
    for r in inside
        .query(
            &format!("SELECT n.nspname::text FROM pg_catalog.pg_namespace n WHERE {system}"),
            &[],
        )
        .await?
    {
        let schema = crate::ident::quote_ident(r.get::<_, &str>(0));
        sql += &format!(
            "GRANT USAGE ON SCHEMA {schema} TO {reader};
             GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {reader};
             GRANT SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {reader};\n"
        );
    }
    // As the copy's owner: what it grants, it grants from what it owns.
    Ok(format!("SET ROLE {};\n{sql}RESET ROLE;", owner.quoted()))
}

/// Drops a copy and its owner role (and that role's checking role), if the
/// database is a copy; a database of another kind under the name is an
/// error, never dropped.
pub async fn drop_copy(
    server: &PgServerSettings,
    admin: &Client,
    copy: &PgName,
) -> Result<(), EvidenceError> {
    let owner: Option<String> = admin
        .query_opt(
            "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1",
            &[&copy.as_str()],
        )
        .await?
        .map(|r| r.get(0));
    let Some(owner) = owner else {
        return Ok(());
    };
    if !owner.starts_with("pglab.sn.") {
        return Err(EvidenceError::Refused(format!(
            "a database {copy} exists and is not a snapshot's copy (it belongs to {owner}): left as it is"
        )));
    }
    pg::drop_database(server, admin, copy).await?;
    let owner = PgName::from_catalog(owner);
    let checker = PgName::checker(&owner);
    admin
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS {}; DROP ROLE IF EXISTS {};",
            checker.quoted(),
            owner.quoted()
        ))
        .await?;
    Ok(())
}

/// Lets pglab's checks into the copy, as its owner (re-scoring it).
pub async fn allow_checks(
    server: &PgServerSettings,
    copy: &PgName,
    owner: &PgName,
) -> Result<(), EvidenceError> {
    let admin = crate::pgconn::connect(server, "postgres").await?;
    admin
        .batch_execute(&format!(
            "{}\nGRANT CONNECT ON DATABASE {} TO {};",
            ensure_checker_sql(server, owner),
            copy.quoted(),
            PgName::checker(owner).quoted()
        ))
        .await?;
    Ok(())
}
