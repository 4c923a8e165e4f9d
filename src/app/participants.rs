//! Participants: what one needs to reach their database.

use crate::ident::{PgName, Username};
use crate::settings::PgServerSettings;

/// The `psql` command `user` logs in to `database` with.
pub fn psql_command(server: &PgServerSettings, user: &Username, database: &PgName) -> String {
    let host = server.public_host.as_deref().unwrap_or(&server.host);
    format!("psql -h {host} -p {} -U {user} -d {database}", server.port)
}
