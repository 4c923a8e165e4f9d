//! Participants: what one needs to reach their database.

use crate::control::CredentialRecord;
use crate::settings::PgServerSettings;

/// The `psql` command a participant logs in with.
pub fn psql_command(server: &PgServerSettings, c: &CredentialRecord) -> String {
    let host = server.public_host.as_deref().unwrap_or(&server.host);
    format!(
        "psql -h {host} -p {} -U {} -d {}",
        server.port, c.username, c.database
    )
}
