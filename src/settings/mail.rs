//! Outgoing mail: the SMTP server pglab sends through, and how fast.

use super::Secret;
use serde::{Deserialize, Serialize};

/// How the connection to the SMTP server is secured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MailSecurity {
    /// Plain connection, then `STARTTLS` (required); port 587.
    #[default]
    Starttls,
    /// TLS from the first byte ("SMTPS"); port 465.
    Tls,
    /// No TLS: only for a relay on loopback or a private network.
    None,
}

/// The SMTP server; pglab sends no mail while `host` is empty.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailSettings {
    pub host: String,
    pub port: u16,
    pub security: MailSecurity,
    /// Login at the server; empty: none.
    pub user: String,
    /// Overridden by `PGLAB_SMTP_PASSWORD`.
    pub password: Secret,
    /// The sender: `pglab <pglab@example.org>`.
    pub from: String,
    /// Where answers go (the lab master's address), if not to `from`.
    pub reply_to: Option<String>,
    /// Messages a second at most, to this server (from each pglab).
    pub per_second: f64,
    /// Seconds a connection or command may take.
    pub timeout_secs: u64,
    /// Attempts of a message on temporary failures (4xx, no connection).
    pub attempts: u32,
    /// Seconds before the second attempt; doubled each time after.
    pub retry_secs: f64,
}

impl Default for MailSettings {
    fn default() -> Self {
        Self {
            host: String::new(),
            port: 587,
            security: MailSecurity::Starttls,
            user: String::new(),
            password: Secret::default(),
            from: String::new(),
            reply_to: None,
            per_second: 5.0,
            timeout_secs: 30,
            attempts: 5,
            retry_secs: 30.0,
        }
    }
}

impl MailSettings {
    /// Whether pglab sends mail at all.
    pub fn enabled(&self) -> bool {
        !self.host.is_empty()
    }

    pub fn validate(&self) -> Result<(), String> {
        if !self.enabled() {
            return Ok(());
        }
        let address = |field: &str, text: &str| -> Result<(), String> {
            text.parse::<lettre::message::Mailbox>()
                .map(|_| ())
                .map_err(|e| format!("mail.{field} {text:?}: not an address like \"pglab <pglab@example.org>\" ({e})"))
        };
        address("from", &self.from)?;
        if let Some(r) = &self.reply_to {
            address("reply_to", r)?;
        }
        if self.port == 0 {
            return Err("mail.port: give the SMTP server's port (587, 465 or 25)".into());
        }
        if !self.per_second.is_finite() || self.per_second <= 0.0 || self.per_second > 10_000.0 {
            return Err("mail.per_second: a number above 0".into());
        }
        let loopback = self.host == "localhost"
            || self
                .host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if self.security == MailSecurity::None && !self.user.is_empty() && !loopback {
            return Err(format!(
                "mail.security: none sends the login in the clear to {}; use starttls or tls (none is for a relay on loopback)",
                self.host
            ));
        }
        if !(1..=20).contains(&self.attempts) {
            return Err("mail.attempts: 1 to 20".into());
        }
        if !self.retry_secs.is_finite() || !(0.0..=3600.0).contains(&self.retry_secs) {
            return Err("mail.retry_secs: 0 to 3600 seconds".into());
        }
        if !(1..=3600).contains(&self.timeout_secs) {
            return Err("mail.timeout_secs: 1 to 3600 seconds".into());
        }
        Ok(())
    }
}
