//! Sending through the configured SMTP server (`lettre`), one message at a
//! time, paced to `mail.per_second`.

use super::Rendered;
use crate::settings::{MailSecurity, MailSettings};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Why a message was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth another attempt later: a 4xx answer, no connection, a timeout.
    #[error("temporary: {0}")]
    Temporary(String),
    /// The server refused it for good (5xx), or it cannot be made.
    #[error("permanent: {0}")]
    Permanent(String),
}

impl SendError {
    /// The server's answer or the reason, for the delivery log.
    pub fn answer(&self) -> &str {
        match self {
            SendError::Temporary(a) | SendError::Permanent(a) => a,
        }
    }
}

/// The SMTP server of the config, and when the next message may go.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    reply_to: Option<Mailbox>,
    gap: Duration,
    next: Mutex<Instant>,
    /// `host:port (security)`, for messages.
    pub server: String,
}

impl Mailer {
    pub fn new(s: &MailSettings) -> Result<Self, String> {
        if !s.enabled() {
            return Err("no SMTP server is configured (mail.host in the config)".into());
        }
        let tls =
            || TlsParameters::new(s.host.clone()).map_err(|e| format!("TLS for {}: {e}", s.host));
        let security = match s.security {
            MailSecurity::Starttls => Tls::Required(tls()?),
            MailSecurity::Tls => Tls::Wrapper(tls()?),
            MailSecurity::None => Tls::None,
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.host)
            .port(s.port)
            .tls(security)
            .timeout(Some(Duration::from_secs(s.timeout_secs)));
        if !s.user.is_empty() {
            builder = builder.credentials(Credentials::new(
                s.user.clone(),
                s.password.expose().to_string(),
            ));
        }
        let parse = |field: &str, text: &str| {
            text.parse::<Mailbox>()
                .map_err(|e| format!("mail.{field} {text:?}: {e}"))
        };
        Ok(Self {
            transport: builder.build(),
            from: parse("from", &s.from)?,
            reply_to: s
                .reply_to
                .as_deref()
                .map(|r| parse("reply_to", r))
                .transpose()?,
            gap: Duration::from_secs_f64(1.0 / s.per_second),
            next: Mutex::new(Instant::now()),
            server: format!("{}:{} ({:?})", s.host, s.port, s.security).to_lowercase(),
        })
    }

    /// Connects, greets and logs in (as a send would), sending nothing.
    pub async fn check(&self) -> Result<(), String> {
        match self.transport.test_connection().await {
            Ok(true) => Ok(()),
            Ok(false) => Err(format!(
                "{} answered, but not as an SMTP server",
                self.server
            )),
            Err(e) => Err(format!("{}: {}", self.server, describe(&e))),
        }
    }

    /// Sends `m` to `to`; the server's answer when it took it. `id` makes
    /// the Message-ID (`<pglab-mail-<id>@<host>>`), the same on every
    /// attempt.
    pub async fn send(
        &self,
        to: &str,
        to_name: &str,
        m: &Rendered,
        id: i64,
    ) -> Result<String, SendError> {
        let address = to
            .parse()
            .map_err(|e| SendError::Permanent(format!("{to:?} is not an e-mail address: {e}")))?;
        let to = Mailbox::new(Some(to_name.to_string()), address);
        let domain = self.from.email.domain().to_string();
        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(&m.subject)
            .message_id(Some(format!("<pglab-mail-{id}@{domain}>")));
        if let Some(r) = &self.reply_to {
            builder = builder.reply_to(r.clone());
        }
        let message = builder
            .multipart(MultiPart::alternative_plain_html(
                m.text.clone(),
                m.html.clone(),
            ))
            .map_err(|e| SendError::Permanent(format!("the message cannot be made: {e}")))?;
        self.pace().await;
        match self.transport.send(message).await {
            Ok(r) => Ok(format!(
                "{} {}",
                r.code(),
                r.message().collect::<Vec<_>>().join(" ")
            )),
            Err(e) if e.is_permanent() => Err(SendError::Permanent(describe(&e))),
            Err(e) => Err(SendError::Temporary(describe(&e))),
        }
    }

    /// Waits until the next message may go (`mail.per_second`).
    async fn pace(&self) {
        let mut next = self.next.lock().await;
        let now = Instant::now();
        if *next > now {
            tokio::time::sleep_until(*next).await;
        }
        *next = Instant::now().max(*next) + self.gap;
    }
}

/// An SMTP error with the server's words (`550 5.1.1 no such user`).
fn describe(e: &lettre::transport::smtp::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}
