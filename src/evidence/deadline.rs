//! The deadline of each database, its final state (a snapshot and a score
//! of the very same moment), and what the lab's `after_deadline` policy
//! then does to the database.

use super::snapshot::{self, Taken};
use super::EvidenceError;
use crate::ident::{quote_ident, PgName, Username};
use crate::lab::{AfterDeadline, Lab};
use crate::scoring::checks::Limits;
use crate::scoring::evaluate::{self, Expectations, Target, TaskOutcome};
use crate::settings::PgServerSettings;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::path::Path;

/// A final state taken later than this after the deadline is late.
pub const ON_TIME_SECS: i64 = 60;

/// The deadline of a database: the lab's, or the latest extension of one
/// of the people working in it; none when the lab has none.
pub fn database_deadline(
    lab: Option<DateTime<Utc>>,
    members: &[&Username],
    extensions: &BTreeMap<Username, DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    let lab = lab?;
    let extended = members.iter().filter_map(|m| extensions.get(*m)).max();
    Some(extended.map_or(lab, |e| (*e).max(lab)))
}

/// Startup options of the session whose exported snapshot the final state
/// reads: nothing of the student's found by name, and none of their
/// database's defaults (an idle timeout would end it before the dump and
/// the checks have imported its snapshot).
const EXPORTING: &str = "-c role=none -c search_path=pg_catalog,pg_temp -c statement_timeout=0 \
                         -c idle_in_transaction_session_timeout=0 -c lock_timeout=0";

/// The database's state at one moment: a snapshot, and the lab scored on
/// exactly what the snapshot holds (both read one exported snapshot of an
/// open read-only transaction). The score is taken even when the dump
/// fails (its error is returned beside it): a student who makes pg_dump
/// fail in their database does not stop their final score, and a student
/// whose checks break the checking session gets their tasks failed with
/// the reason, not a final state that never comes.
pub async fn take_final(
    server: &PgServerSettings,
    (db, owner): (&str, &PgName),
    (lab, expected, limits): (&Lab, &Expectations, &Limits),
    (folder, name): (&Path, &str),
) -> Result<Final, EvidenceError> {
    let mut client = crate::pgconn::connect_with_options(server, db, EXPORTING).await?;
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let exported: String = tx
        .query_one("SELECT pg_catalog.pg_export_snapshot()", &[])
        .await?
        .get(0);
    let at = chrono::Utc::now();
    let taken = snapshot::take(server, (db, owner), folder, name, Some(&exported)).await;
    let target = Target {
        server,
        db,
        role: owner,
        snapshot: Some(&exported),
    };
    let outcomes = match evaluate::score_target(&target, lab, expected, limits).await {
        Ok(outcomes) => outcomes,
        Err(e) => lab
            .tasks
            .iter()
            .map(|_| TaskOutcome {
                passed: false,
                points: 0,
                reason: Some(format!("could not be checked at the deadline: {e}")),
                hint: None,
                class: Some("error"),
            })
            .collect(),
    };
    tx.commit().await?;
    Ok(Final {
        at,
        taken,
        outcomes,
    })
}

/// A database's state at its deadline.
pub struct Final {
    /// The moment it holds (when the snapshot was exported).
    pub at: DateTime<Utc>,
    /// The snapshot, or why there is none.
    pub taken: Result<Taken, EvidenceError>,
    pub outcomes: Vec<TaskOutcome>,
}

/// Applies `policy` to `db` (whose contents `owner` owns) and ends the
/// sessions of everybody but pglab, or undoes it (`undo`, after an
/// extension). Both close the database by handing it to `pglab_closed`:
/// its student then holds no privilege on it they could grant back (an
/// owner may grant on their database from any session), and cannot change
/// its settings.
pub async fn enforce(
    server: &PgServerSettings,
    db: &str,
    owner: &PgName,
    policy: AfterDeadline,
    undo: bool,
) -> Result<(), EvidenceError> {
    let d = quote_ident(db);
    let o = owner.quoted();
    let closed = crate::provision::postgres::CLOSED_ROLE;
    let admin = crate::pgconn::connect(server, "postgres").await?;
    // Every grant on the database but the checking role's goes: one the
    // student made before the deadline (to a classmate, to all students)
    // would otherwise still let them in.
    let others = crate::provision::postgres::other_grantees(&admin, db, owner).await?;
    let sql = match (policy, undo) {
        (AfterDeadline::KeepOpen, _) => return Ok(()),
        (AfterDeadline::ReadOnly, false) => format!(
            "ALTER DATABASE {d} OWNER TO {closed};
             REVOKE ALL ON DATABASE {d} FROM PUBLIC, {o}{others};
             GRANT CONNECT ON DATABASE {d} TO {o};
             ALTER DATABASE {d} SET default_transaction_read_only = on;"
        ),
        (AfterDeadline::Lock, false) => format!(
            "ALTER DATABASE {d} OWNER TO {closed};
             REVOKE ALL ON DATABASE {d} FROM PUBLIC, {o}{others};"
        ),
        (_, true) => format!(
            "ALTER DATABASE {d} OWNER TO {o};
             REVOKE ALL ON DATABASE {d} FROM PUBLIC{others};
             GRANT CONNECT, CREATE, TEMPORARY ON DATABASE {d} TO {o};
             ALTER DATABASE {d} RESET default_transaction_read_only;"
        ),
    };
    admin.batch_execute(&sql).await?;
    if !undo {
        end_participant_sessions(&admin, db, &server.admin_user).await?;
    }
    Ok(())
}

/// Ends every session in `db` but pglab's own (the admin's, the checks').
pub async fn end_participant_sessions(
    admin: &tokio_postgres::Client,
    db: &str,
    admin_user: &str,
) -> Result<(), tokio_postgres::Error> {
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = $1 AND backend_type = 'client backend'
               AND usename <> $2 AND usename NOT LIKE 'pglab.ck.%'",
            &[&db, &admin_user],
        )
        .await?;
    Ok(())
}

/// The file name of a snapshot taken by job `job`: unique per attempt, so
/// that a retry never writes over a file a recorded snapshot names.
pub fn snapshot_name(job: i64, kind: &str) -> String {
    format!("{job}-{kind}-{}", crate::random::token())
}

/// Whether a final state taken at `taken` for `deadline` is late.
pub fn is_late(deadline: DateTime<Utc>, taken: DateTime<Utc>) -> bool {
    (taken - deadline).num_seconds() > ON_TIME_SECS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_has_the_latest_of_its_members_deadlines() {
        let at = |h: u32| {
            chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 12, 1, h, 0, 0)
                .single()
                .unwrap()
        };
        let ann = Username::parse("ann").unwrap();
        let bob = Username::parse("bob").unwrap();
        let ext: BTreeMap<_, _> = [(bob.clone(), at(20)), (ann.clone(), at(10))].into();
        assert_eq!(database_deadline(Some(at(18)), &[&ann], &ext), Some(at(18)));
        assert_eq!(
            database_deadline(Some(at(18)), &[&ann, &bob], &ext),
            Some(at(20))
        );
        assert_eq!(database_deadline(None, &[&bob], &ext), None);
        assert!(is_late(at(18), at(19)));
        assert!(!is_late(at(18), at(18)));
    }
}
