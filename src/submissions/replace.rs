//! Putting a restored database in the group's place: taking back what the
//! dump gave the job's role, the atomic swap, and retiring the databases
//! earlier hand-ins replaced.

use super::restore::{database_exists, JobNames};
use crate::control::{Store, SubmissionRecord};
use crate::ident::{quote_ident, PgName};
use crate::provision::postgres as pg;
use crate::settings::{PgServerSettings, Settings};
use std::time::Duration;
use tokio_postgres::Client;

fn db_error(e: &tokio_postgres::Error) -> String {
    crate::pgconn::db_message(e)
}

/// Before the swap: whatever the dump gave the job's login role (objects it
/// owns after a `RESET ROLE`, grants to it, a database privilege) goes to
/// the owner or away, and any session the role still has (a student who
/// set its password from the dump) is ended. The role then owns nothing
/// and can be dropped, and no login outlives the job.
pub(super) async fn disown_job_role(
    server: &PgServerSettings,
    admin: &Client,
    names: &JobNames,
    owner: &PgName,
) -> Result<(), String> {
    let inside = crate::pgconn::connect(server, &names.scratch)
        .await
        .map_err(|e| e.to_string())?;
    inside
        .batch_execute(&pg::hand_over_owned_sql(
            &PgName::from_catalog(names.role.clone()),
            owner,
        ))
        .await
        .map_err(|e| db_error(&e))?;
    // A dump of a participant's database carries pglab's schema (made the
    // student's by the restore): pglab makes its own again.
    crate::provision::in_database::replace_handed_in(&inside, &server.admin_user)
        .await
        .map_err(|e| db_error(&e))?;
    drop(inside);
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1 OR (datname = $2 AND pid <> pg_backend_pid())",
            &[&names.role, &names.scratch],
        )
        .await
        .map_err(|e| db_error(&e))?;
    Ok(())
}

/// Renames the live database away and the scratch one into its place, in
/// one transaction, after closing the live database to new sessions and
/// ending the open ones (a student's psql).
pub(super) async fn swap(
    admin: &mut Client,
    live: &str,
    scratch: &str,
    previous: &str,
) -> Result<(), String> {
    let (l, s, p) = (
        quote_ident(live),
        quote_ident(scratch),
        quote_ident(previous),
    );
    pg::allow_connections(admin, live, false)
        .await
        .map_err(|e| db_error(&e))?;
    let mut last = String::new();
    for _ in 0..10 {
        let result = async {
            // Terminated sessions take a moment to exit; RENAME would wait
            // for them in steps of 100 ms.
            pg::end_sessions(admin, live).await?;
            let tx = admin.transaction().await?;
            tx.batch_execute(&format!(
                "ALTER DATABASE {l} RENAME TO {p}; ALTER DATABASE {s} RENAME TO {l};"
            ))
            .await?;
            tx.commit().await
        }
        .await;
        match result {
            Ok(()) => return Ok(()),
            Err(e) => last = db_error(&e),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Give the group its database back as it was.
    let _ = pg::allow_connections(admin, live, true).await;
    Err(format!("could not replace the database: {last}"))
}

/// Dumps and drops previous databases kept by earlier jobs of this
/// database; run after the job is recorded as succeeded (it can take as long
/// as the restore did).
pub async fn retire_older(
    settings: &Settings,
    store: &Store,
    job: &SubmissionRecord,
) -> Vec<String> {
    let mut notes = vec![];
    let Some(server) = settings.server(&job.server) else {
        return notes;
    };
    let Ok(admin) = crate::pgconn::connect(server, "postgres").await else {
        return notes;
    };
    let admin = &admin;
    let Ok(older) = store.older_previous(&job.lab, &job.database, job.id).await else {
        return notes;
    };
    for (id, name) in older {
        let result = async {
            if database_exists(admin, &name)
                .await
                .map_err(|e| db_error(&e))?
            {
                let folder = settings.data_dir.join("replaced").join(job.lab.as_str());
                let file = crate::provision::prune::dump_then_drop(
                    server,
                    admin,
                    &name,
                    &job.database,
                    &folder,
                )
                .await
                .map_err(|e| e.to_string())?;
                Ok::<_, String>(format!(
                    "older database dumped to {} and dropped",
                    file.display()
                ))
            } else {
                Ok("older database already gone".to_string())
            }
        }
        .await;
        match result {
            Ok(note) => {
                let _ = store.forget_previous(id, &note).await;
                notes.push(note);
            }
            Err(e) => {
                tracing::warn!(database = %name, error = %e, "could not retire an older database")
            }
        }
    }
    notes
}
