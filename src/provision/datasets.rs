//! Hidden datasets on a Postgres server (issue 20): each of a lab's
//! `datasets` loaded into `pglab.ds<n>.<lab>` beside its reference, owned
//! by the NOLOGIN role `pglab_dataset`, and the one login that may enter
//! them, `pglab_hidden` (a password only pglab knows, a member of
//! `pglab_dataset` and of nothing else). A participant's view is created
//! and run there in a transaction that is always rolled back.

use super::postgres::{sql_err, PgError};
use crate::ident::{quote_ident, quote_literal, LabId};
use crate::pgconn::{self, ConnectError};
use crate::settings::PgServerSettings;
use tokio_postgres::Client;

/// Owns every object of the dataset copies; nobody logs in as it.
pub const DATASET_ROLE: &str = "pglab_dataset";
/// The login of hidden-dataset evaluations.
pub const HIDDEN_ROLE: &str = "pglab_hidden";

/// Sessions the hidden role may hold on one server: each pglab process
/// runs at most 4 at once there (`scoring::hidden`), so this is room for
/// four processes (replicas, `pglab score`, a deadline job's process).
const HIDDEN_CONNECTIONS: u32 = 16;

/// The database of dataset `i` (from 0) of `lab`.
pub fn dataset_db(lab: &LabId, i: usize) -> String {
    format!("pglab.ds{}.{lab}", i + 1)
}

/// Functions a view could use to show what it reads to a session outside
/// its transaction (locks and settings others can see, a notification, WAL
/// written whatever happens, a snapshot others can try to import, a sleep
/// that times the data, SQL built from the data whose relation locks show
/// in `pg_locks`) or to end another evaluation's session: no
/// `EXECUTE` for anybody in a dataset copy. (Counters of the copy's work in
/// `pg_stat_database` are not kept for the hidden role: `track_counts`.)
const TELLING_FUNCTIONS: &str = "proname LIKE '%advisory%' OR proname LIKE '%to\\_xml%' OR proname IN ('set_config', 'pg_sleep', 'pg_sleep_for', 'pg_sleep_until', 'pg_notify', 'pg_cancel_backend', 'pg_terminate_backend', 'pg_logical_emit_message', 'pg_export_snapshot', 'pg_current_xact_id', 'txid_current', 'ts_stat', 'pg_relation_size', 'pg_table_size', 'pg_total_relation_size', 'pg_indexes_size', 'brin_summarize_new_values', 'brin_summarize_range', 'brin_desummarize_range', 'gin_clean_pending_list')";

/// Run in an empty dataset database before its script: the dataset role
/// may create schemas and, in `public`, objects.
pub fn before_load_sql(db: &str) -> String {
    format!(
        "GRANT CREATE ON DATABASE {db} TO {DATASET_ROLE}; GRANT CREATE ON SCHEMA public TO {DATASET_ROLE};",
        db = quote_ident(db)
    )
}

/// Run in a loaded dataset database (as pglab's admin): only the hidden
/// role may connect, and the telling functions are closed.
pub fn after_load_sql(db: &str) -> String {
    format!(
        "REVOKE ALL ON DATABASE {d} FROM PUBLIC; GRANT CONNECT ON DATABASE {d} TO {HIDDEN_ROLE}; GRANT TEMPORARY ON DATABASE {d} TO {DATASET_ROLE};\n\
         DO $$ DECLARE f regprocedure; BEGIN\n\
           FOR f IN SELECT oid::regprocedure FROM pg_catalog.pg_proc WHERE pronamespace = 'pg_catalog'::regnamespace AND ({TELLING_FUNCTIONS}) LOOP\n\
             EXECUTE 'REVOKE EXECUTE ON FUNCTION ' || f::text || ' FROM PUBLIC';\n\
           END LOOP;\n\
         END $$;",
        d = quote_ident(db)
    )
}

/// The hidden role's password, derived from the server's scorer key like
/// the checking roles'.
fn hidden_password(server: &PgServerSettings) -> String {
    use hmac::{Hmac, Mac};
    let mut mac =
        <Hmac<sha2::Sha256> as Mac>::new_from_slice(server.scorer_password.expose().as_bytes())
            .expect("hmac takes any key");
    mac.update(b"pglab hidden datasets");
    hex::encode(&mac.finalize().into_bytes()[..24])
}

/// Makes (or mends) the dataset role and the hidden login.
pub fn ensure_roles_sql(server: &PgServerSettings) -> String {
    let verifier = postgres_protocol::password::scram_sha_256(hidden_password(server).as_bytes());
    format!(
        "DO $$ BEGIN\n\
           IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{DATASET_ROLE}') THEN CREATE ROLE {DATASET_ROLE} NOLOGIN; END IF;\n\
           IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{HIDDEN_ROLE}') THEN CREATE ROLE {HIDDEN_ROLE} NOLOGIN; END IF;\n\
         END $$;\n\
         ALTER ROLE {HIDDEN_ROLE} LOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS CONNECTION LIMIT {HIDDEN_CONNECTIONS} PASSWORD {};\n\
         GRANT {DATASET_ROLE} TO {HIDDEN_ROLE};\n\
         ALTER ROLE {HIDDEN_ROLE} SET statement_timeout = '5s';\n\
         ALTER ROLE {HIDDEN_ROLE} SET lock_timeout = '1s';\n\
         ALTER ROLE {HIDDEN_ROLE} SET idle_in_transaction_session_timeout = '60s';\n\
         ALTER ROLE {HIDDEN_ROLE} SET track_counts = off;",
        quote_literal(&verifier)
    )
}

pub async fn ensure_roles(server: &PgServerSettings, admin: &Client) -> Result<(), PgError> {
    pgconn::execute_raced(admin, &ensure_roles_sql(server))
        .await
        .map_err(sql_err(&server.name, "create the hidden datasets' roles"))
}

/// A session in dataset database `db` as the hidden role; when the login
/// is refused (the role is missing, or the scorer key changed), pglab's
/// admin makes the role again once and the login is retried.
pub async fn connect_hidden(server: &PgServerSettings, db: &str) -> Result<Client, ConnectError> {
    let password = hidden_password(server);
    let login = || pgconn::connect_as(server, db, HIDDEN_ROLE, &password, "pglab-hidden");
    match login().await {
        Err(e) if e.source.code() == Some(&tokio_postgres::error::SqlState::INVALID_PASSWORD) => {
            let admin = pgconn::connect(server, "postgres").await?;
            if let Err(e) = ensure_roles(server, &admin).await {
                tracing::warn!(error = %e, "cannot mend the hidden datasets' role");
            }
            login().await
        }
        other => other,
    }
}
