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
use crate::provision::{in_database, relocate};
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
            "DROP ROLE IF EXISTS {o}; CREATE ROLE {o} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;",
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
    let made = async {
        restore_as_owner(server, &admin, file, (copy, owner)).await?;
        close_to_reader(server, &admin, (copy, owner), reader).await
    };
    if let Err(e) = made.await {
        let _ = drop_copy(server, &admin, copy).await;
        return Err(e);
    }
    Ok(())
}

/// After the restore: nobody but pglab in the copy, the copy's own
/// settings and grants gone, then read access for `reader`, checked.
async fn close_to_reader(
    server: &PgServerSettings,
    admin: &Client,
    (copy, owner): (&PgName, &PgName),
    reader: &PgName,
) -> Result<(), EvidenceError> {
    let others = pg::other_grantees(admin, copy, reader).await?;
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {c} RESET ALL; REVOKE ALL ON DATABASE {c} FROM PUBLIC, {r}{others};",
            c = copy.quoted(),
            r = reader.quoted()
        ))
        .await?;
    pg::end_sessions(admin, copy).await?;
    // In a session that finds nothing of the student's by name.
    let inside = crate::pgconn::connect_with_options(server, copy, in_database::SESSION).await?;
    inside
        .batch_execute(&read_only_sql(&inside, owner, reader).await?)
        .await?;
    if let Some(found) = writable_by(&inside, owner, reader).await? {
        return Err(EvidenceError::Refused(format!(
            "the restored snapshot left {found}: no copy made"
        )));
    }
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {c} SET default_transaction_read_only = on; GRANT CONNECT ON DATABASE {c} TO {};",
            reader.quoted(),
            c = copy.quoted()
        ))
        .await?;
    Ok(())
}

/// Restored as the owner by a login role of the copy's (see
/// `relocate::restore_as_owner`).
async fn restore_as_owner(
    server: &PgServerSettings,
    admin: &Client,
    file: &Path,
    (copy, owner): (&PgName, &PgName),
) -> Result<(), EvidenceError> {
    let login = PgName::from_catalog(format!("{}.r", owner.as_str()));
    let run = relocate::restore_as_owner(server, admin, file, (copy, owner), &login).await?;
    if !run.ok {
        let lines: Vec<&str> = run.stderr.lines().take(10).collect();
        return Err(EvidenceError::Refused(format!(
            "pg_restore failed:\n{}",
            lines.join("\n")
        )));
    }
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
            "REVOKE ALL ON SCHEMA {schema} FROM PUBLIC, {reader};
             REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM PUBLIC, {reader};
             REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema} FROM PUBLIC, {reader};
             GRANT USAGE ON SCHEMA {schema} TO {reader};
             GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {reader};
             GRANT SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {reader};\n"
        );
    }
    // As the copy's owner: what it grants, it grants from what it owns.
    Ok(format!("SET ROLE {};\n{sql}RESET ROLE;", owner.quoted()))
}

/// Something in the copy the reader could still change (a grant that
/// student code made during the restore, a column privilege, a sequence, a
/// large object), or anything in it that a role other than its owner owns
/// or holds a privilege on (but the reader's reading): `None` when there is
/// nothing. Checked after the grants, so that read-only is a fact, not an
/// intention.
async fn writable_by(
    inside: &Client,
    owner: &PgName,
    reader: &PgName,
) -> Result<Option<String>, EvidenceError> {
    let row = inside
        .query_one(
            "SELECT
               (SELECT 'writable by the reader: ' || string_agg(c.oid::regclass::text, ', ')
                FROM pg_catalog.pg_class c
                JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
                  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                  AND (pg_catalog.has_table_privilege($1, c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')
                       OR pg_catalog.has_any_column_privilege($1, c.oid, 'INSERT, UPDATE, REFERENCES')
                       OR (c.relkind = 'S' AND pg_catalog.has_sequence_privilege($1, c.oid, 'USAGE, UPDATE')))),
               (SELECT 'CREATE for the reader in ' || string_agg(n.nspname, ', ') FROM pg_catalog.pg_namespace n
                WHERE pg_catalog.has_schema_privilege($1, n.oid, 'CREATE')),
               (SELECT 'CREATE or TEMPORARY for the reader on the database'
                WHERE pg_catalog.has_database_privilege($1, pg_catalog.current_database(), 'CREATE, TEMPORARY')),
               (SELECT 'large objects with grants' WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_largeobject_metadata WHERE lomacl IS NOT NULL)),
               (SELECT 'objects of or grants to ' || string_agg(DISTINCT r.rolname, ', ')
                FROM pg_catalog.pg_shdepend d JOIN pg_catalog.pg_roles r ON r.oid = d.refobjid
                WHERE d.dbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
                  AND d.refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass
                  AND r.rolname <> $2 AND NOT (r.rolname = $1 AND d.deptype = 'a'))",
            &[&reader.as_str(), &owner.as_str()],
        )
        .await?;
    let found: Vec<String> = (0..5)
        .filter_map(|i| row.get::<_, Option<String>>(i))
        .collect();
    Ok((!found.is_empty()).then(|| found.join("; ")))
}

/// Drops a copy and its owner role (and that role's checking role), if the
/// database is a copy; a database of another kind under the name is an
/// error, never dropped.
pub async fn drop_copy(
    server: &PgServerSettings,
    admin: &Client,
    copy: &PgName,
) -> Result<(), EvidenceError> {
    if pg::drop_snapshot_copy(server, admin, copy).await? {
        return Ok(());
    }
    Err(EvidenceError::Refused(format!(
        "a database {copy} exists and is not a snapshot's copy: left as it is"
    )))
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
