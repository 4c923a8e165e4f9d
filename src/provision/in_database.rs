//! What a participant can ask pglab from psql, in their own database:
//! `SELECT * FROM pglab.progress;` and `SELECT * FROM pglab.tasks;`.
//!
//! Every lab template gets a schema `pglab` owned by pglab's admin, with
//! the lab's tasks; participants' databases are cloned from it. After
//! evaluating a database, the scoring engine writes that database's own
//! progress rows there, as the admin. Students may only read the two views
//! (`pglab_students`, and nobody but a database's owner can connect to it),
//! nothing else is reachable from them (no foreign server, no credential,
//! no other database's rows), and nobody but pglab can write them. The
//! writes are plain row deletes and inserts whose number pglab knows, so
//! that the change detection can tell them from the student's own.

use super::postgres::STUDENTS_ROLE;
use crate::lab::Lab;
use crate::settings::PgServerSettings;
use chrono::{DateTime, Utc};
use tokio_postgres::{Client, GenericClient};

/// Text columns are cut to these sizes in bytes (UTF-8): a progress row
/// stays well below the size at which Postgres would move it out of line
/// (TOAST, about 2 kB), whose writes pglab could not count.
const TITLE_BYTES: usize = 240;
const REASON_BYTES: usize = 600;
const HINT_BYTES: usize = 600;

/// The schema, tables and views (students may read the views only).
fn schema_sql(admin: &str) -> String {
    let admin = crate::ident::quote_ident(admin);
    format!(
        "CREATE SCHEMA pglab AUTHORIZATION {admin};
         REVOKE ALL ON SCHEMA pglab FROM PUBLIC;
         CREATE TABLE pglab.progress_rows (
             position int PRIMARY KEY, task text NOT NULL, title text NOT NULL,
             points int NOT NULL, max_points int NOT NULL, state text NOT NULL,
             reason text, hint text, checked_at timestamptz NOT NULL);
         CREATE TABLE pglab.task_rows (
             position int PRIMARY KEY, task text NOT NULL, title text NOT NULL,
             points int NOT NULL, description text);
         CREATE VIEW pglab.progress AS
             SELECT task, title, points, max_points, state, reason, hint, checked_at
             FROM pglab.progress_rows ORDER BY position;
         CREATE VIEW pglab.tasks AS
             SELECT task, title, points, description FROM pglab.task_rows ORDER BY position;
         COMMENT ON VIEW pglab.progress IS 'Your tasks as pglab last checked them (read-only)';
         COMMENT ON VIEW pglab.tasks IS 'The tasks of the lab (read-only)';
         REVOKE ALL ON ALL TABLES IN SCHEMA pglab FROM PUBLIC;
         GRANT USAGE ON SCHEMA pglab TO {STUDENTS_ROLE};
         GRANT SELECT ON pglab.progress, pglab.tasks TO {STUDENTS_ROLE};"
    )
}

/// `s` cut to at most `bytes` bytes at a character boundary (with `…`).
fn clip(s: &str, bytes: usize) -> String {
    if s.len() <= bytes {
        return s.to_string();
    }
    let mut at = bytes.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    format!("{}…", &s[..at])
}

/// Safe settings for a session of the admin in a database a student owns:
/// nothing a student made is found by name, and a student's lock cannot
/// hold up a round.
/// Startup options, so that they cost no round trip of their own.
pub const SESSION: &str = "-c role=none -c lock_timeout=2s -c statement_timeout=10s \
                       -c search_path=pg_catalog,pg_temp";

/// Whether the database has a schema `pglab`, and whether it is pglab's
/// own (a database's owner can make one first, with tables and triggers of
/// their own: pglab never writes into it, so never runs a student's code
/// as the admin).
async fn schema_owner(
    client: &impl GenericClient,
    admin: &str,
) -> Result<Option<bool>, tokio_postgres::Error> {
    Ok(client
        .query_opt(
            "SELECT n.nspowner = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $1)
             FROM pg_catalog.pg_namespace n WHERE n.nspname = 'pglab'",
            &[&admin],
        )
        .await?
        .map(|r| r.get(0)))
}

/// The task list as stored, to tell whether it must be written.
type TaskRow = (String, String, i32, Option<String>);

fn task_rows(lab: &Lab) -> Vec<TaskRow> {
    lab.tasks
        .iter()
        .map(|t| {
            (
                t.id.clone(),
                clip(&t.title, TITLE_BYTES),
                t.points as i32,
                t.description.clone(),
            )
        })
        .collect()
}

/// Writes the task list unless it is there already; whether it wrote.
async fn sync_tasks(client: &impl GenericClient, lab: &Lab) -> Result<bool, tokio_postgres::Error> {
    let want = task_rows(lab);
    let have: Vec<TaskRow> = client
        .query(
            "SELECT task, title, points, description FROM pglab.task_rows ORDER BY position",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    if have == want {
        return Ok(false);
    }
    client.execute("DELETE FROM pglab.task_rows", &[]).await?;
    for (i, (task, title, points, description)) in want.iter().enumerate() {
        client
            .execute(
                "INSERT INTO pglab.task_rows VALUES ($1, $2, $3, $4, $5)",
                &[&(i as i32), task, title, points, description],
            )
            .await?;
    }
    Ok(true)
}

/// Gives a freshly built template (scratch name, closed) its `pglab`
/// schema and the lab's tasks; every database cloned from it has them.
pub async fn prepare_template(
    server: &PgServerSettings,
    template: &str,
    lab: &Lab,
) -> Result<(), super::postgres::PgError> {
    let err = |what: &'static str| super::postgres::sql_err(&server.name, what);
    let client = crate::pgconn::connect_with_options(server, template, SESSION).await?;
    if schema_owner(&client, &server.admin_user)
        .await
        .map_err(err("look for schema pglab"))?
        .is_some()
    {
        return Err(super::postgres::PgError::Refused(
            "the starter makes a schema named pglab, which pglab keeps for participants' progress: rename it".into(),
        ));
    }
    client
        .batch_execute(&schema_sql(&server.admin_user))
        .await
        .map_err(err("make schema pglab"))?;
    sync_tasks(&client, lab)
        .await
        .map_err(err("write the task list"))?;
    Ok(())
}

/// One task's state as the engine found it.
pub struct TaskState<'a> {
    pub passed: bool,
    pub points: u32,
    pub reason: Option<&'a str>,
    pub hint: Option<&'a str>,
}

/// One database's progress rows as the engine found them.
pub struct Progress<'a> {
    pub lab: &'a Lab,
    pub tasks: Vec<TaskState<'a>>,
    pub checked_at: DateTime<Utc>,
}

/// What was written: `Some(n)` rows deleted and inserted (all the database
/// saw of pglab: 0 when everything was there already), `None` when more was
/// written (the schema made, the task list renewed), which pglab cannot
/// count.
pub type Written = Option<i64>;

/// Writes the database's progress into its `pglab` schema (making the
/// schema, or renewing the task list, when needed).
pub async fn write(
    server: &PgServerSettings,
    db: &str,
    progress: &Progress<'_>,
    tasks_too: bool,
) -> Result<Written, tokio_postgres::Error> {
    let Ok(mut client) = crate::pgconn::connect_with_options(server, db, SESSION).await else {
        // Closed (a restore or reset is swapping it): the next round writes.
        return Ok(None);
    };
    let tx = client.transaction().await?;
    // Whether the session is the admin's acting as the admin, and whether
    // there is a schema `pglab` and it is the admin's: one round trip.
    let check = tx
        .query_one(
            "SELECT session_user::text = $1 AND current_user::text = $1,
                    (SELECT n.nspowner = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $1)
                     FROM pg_catalog.pg_namespace n WHERE n.nspname = 'pglab')",
            &[&server.admin_user],
        )
        .await?;
    if !check.get::<_, bool>(0) {
        tracing::warn!(
            db,
            "an admin session that is not the admin's: progress not written"
        );
        return Ok(None);
    }
    let mut counted = match check.get::<_, Option<bool>>(1) {
        Some(true) => true,
        Some(false) => {
            tracing::warn!(db, "schema pglab is not pglab's own: progress not written");
            return Ok(None);
        }
        None => {
            tx.batch_execute(&schema_sql(&server.admin_user)).await?;
            false
        }
    };
    if (tasks_too || !counted) && sync_tasks(&tx, progress.lab).await? {
        counted = false;
    }
    let rows = write_rows(&tx, progress).await?;
    tx.commit().await?;
    Ok(counted.then_some(rows))
}

/// Replaces the rows in one statement: (rows deleted + rows inserted).
async fn write_rows(
    client: &impl GenericClient,
    p: &Progress<'_>,
) -> Result<i64, tokio_postgres::Error> {
    let n = p.lab.tasks.len().min(p.tasks.len());
    let tasks = &p.lab.tasks[..n];
    let states = &p.tasks[..n];
    let position: Vec<i32> = (0..n as i32).collect();
    let task: Vec<&str> = tasks.iter().map(|t| t.id.as_str()).collect();
    let title: Vec<String> = tasks.iter().map(|t| clip(&t.title, TITLE_BYTES)).collect();
    let points: Vec<i32> = states.iter().map(|o| o.points as i32).collect();
    let max_points: Vec<i32> = tasks.iter().map(|t| t.points as i32).collect();
    let state: Vec<&str> = states
        .iter()
        .map(|o| if o.passed { "passed" } else { "not yet" })
        .collect();
    let reason: Vec<Option<String>> = states
        .iter()
        .map(|o| o.reason.map(|r| clip(r, REASON_BYTES)))
        .collect();
    let hint: Vec<Option<String>> = states
        .iter()
        .map(|o| o.hint.map(|h| clip(h, HINT_BYTES)))
        .collect();
    let row = client
        .query_one(
            "WITH gone AS (DELETE FROM pglab.progress_rows RETURNING 1),
                  added AS (INSERT INTO pglab.progress_rows
                            SELECT u.*, $9::timestamptz
                            FROM unnest($1::int4[], $2::text[], $3::text[], $4::int4[], $5::int4[],
                                        $6::text[], $7::text[], $8::text[]) AS u
                            RETURNING 1)
             SELECT (SELECT count(*) FROM gone) + (SELECT count(*) FROM added)",
            &[
                &position,
                &task,
                &title,
                &points,
                &max_points,
                &state,
                &reason,
                &hint,
                &p.checked_at,
            ],
        )
        .await?;
    Ok(row.get(0))
}

/// Replaces a schema `pglab` that came with a hand-in (the student's dump
/// of their database carries it, owned by them after the restore) by
/// pglab's own, in the restored database before it replaces theirs: there
/// is no moment in which the student could make one first. The task list
/// follows at the next evaluation.
pub async fn replace_handed_in(client: &Client, admin: &str) -> Result<(), tokio_postgres::Error> {
    client
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS pglab CASCADE; {}",
            schema_sql(admin)
        ))
        .await
}

#[cfg(test)]
mod tests {
    use super::clip;

    #[test]
    fn clipped_text_fits_its_bytes_at_a_character_boundary() {
        assert_eq!(clip("short", 600), "short");
        for text in ["é".repeat(1000), "😀".repeat(500), "a".repeat(5000)] {
            let c = clip(&text, 600);
            assert!(c.len() <= 600 && c.ends_with('…'), "{}", c.len());
        }
    }
}
