//! Sending through the configured SMTP server, one message at a time over
//! one kept connection, paced to `mail.per_second`. `lettre` speaks SMTP
//! and writes the MIME message; pglab opens the TCP connection itself with
//! `TCP_NODELAY`, because lettre writes the message and its final `.` line
//! in two writes, which Nagle's algorithm and the server's delayed ACK turn
//! into a 40 ms stall per message.

use super::Rendered;
use crate::settings::{MailSecurity, MailSettings};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::Message;
use std::future::Future;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// A kept connection idle this long is closed and made anew before use
/// (servers close idle ones).
const IDLE: Duration = Duration::from_secs(10);
/// How long the server may take to answer a whole message (RFC 5321
/// 4.5.3.2.6 suggests 10 minutes: its filters run then).
const FINAL_REPLY: Duration = Duration::from_secs(600);

/// Why a message was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth another attempt later: a 4xx answer, no connection, a timeout.
    #[error("temporary: {0}")]
    Temporary(String),
    /// The server refused it for good (5xx), or it cannot be made.
    #[error("permanent: {0}")]
    Permanent(String),
    /// The whole message went out, but no answer came: the server may
    /// have taken it. Never sent again by itself.
    #[error("uncertain: {0}")]
    Uncertain(String),
    /// The server cannot be reached or logged in to (the config or the
    /// server, not this message): nothing was sent.
    #[error("server: {0}")]
    Server(String),
    /// Not to be sent after all (when it was to be made, there was nothing
    /// left to say): never reached a server.
    #[error("skipped: {0}")]
    Skipped(String),
}

impl SendError {
    /// The server's answer or the reason, for the delivery log.
    pub fn answer(&self) -> &str {
        match self {
            SendError::Temporary(a)
            | SendError::Permanent(a)
            | SendError::Uncertain(a)
            | SendError::Server(a)
            | SendError::Skipped(a) => a,
        }
    }
}

/// A connection to the server and when it was last used.
struct Kept {
    conn: AsyncSmtpConnection,
    used: Instant,
}

/// The SMTP server of the config, one kept connection, and when the next
/// message may go.
pub struct Mailer {
    settings: MailSettings,
    from: Mailbox,
    reply_to: Option<Mailbox>,
    hello: ClientId,
    gap: Duration,
    next: Mutex<Instant>,
    kept: Mutex<Option<Kept>>,
    /// `host:port (security)`, for messages.
    pub server: String,
}

impl Mailer {
    pub fn new(s: &MailSettings) -> Result<Self, String> {
        if !s.enabled() {
            return Err("no SMTP server is configured (mail.host in the config)".into());
        }
        let parse = |field: &str, text: &str| {
            text.parse::<Mailbox>()
                .map_err(|e| format!("mail.{field} {text:?}: {e}"))
        };
        Ok(Self {
            settings: s.clone(),
            from: parse("from", &s.from)?,
            reply_to: s
                .reply_to
                .as_deref()
                .map(|r| parse("reply_to", r))
                .transpose()?,
            hello: ClientId::default(),
            gap: Duration::from_secs_f64(1.0 / s.per_second),
            next: Mutex::new(Instant::now()),
            kept: Mutex::new(None),
            server: format!("{}:{} ({:?})", s.host, s.port, s.security).to_lowercase(),
        })
    }

    /// `what` within the configured timeout; a timeout is temporary.
    async fn timed<T>(
        &self,
        what: &str,
        f: impl Future<Output = Result<T, lettre::transport::smtp::Error>>,
    ) -> Result<T, SendError> {
        match tokio::time::timeout(Duration::from_secs(self.settings.timeout_secs), f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(classify(&e)),
            Err(_) => Err(SendError::Temporary(format!(
                "{what}: no answer within {} s",
                self.settings.timeout_secs
            ))),
        }
    }

    /// A new connection: greeted, TLS as configured, logged in.
    async fn connect(&self) -> Result<AsyncSmtpConnection, SendError> {
        let s = &self.settings;
        let tls = || {
            TlsParameters::new(s.host.clone())
                .map_err(|e| SendError::Permanent(format!("TLS for {}: {e}", s.host)))
        };
        let mut conn = if s.security == MailSecurity::Tls {
            let params = tls()?;
            self.timed(
                "connecting",
                AsyncSmtpConnection::connect_tokio1(
                    (s.host.as_str(), s.port),
                    Some(Duration::from_secs(s.timeout_secs)),
                    &self.hello,
                    Some(params),
                    None,
                ),
            )
            .await?
        } else {
            let limit = Duration::from_secs(s.timeout_secs);
            let tcp = tokio::time::timeout(
                limit,
                tokio::net::TcpStream::connect((s.host.as_str(), s.port)),
            )
            .await
            .map_err(|_| SendError::Temporary(format!("connecting to {}: timed out", self.server)))?
            .map_err(|e| SendError::Temporary(format!("connecting to {}: {e}", self.server)))?;
            let _ = tcp.set_nodelay(true);
            self.timed(
                "greeting",
                AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello),
            )
            .await?
        };
        if s.security == MailSecurity::Starttls {
            let params = tls()?;
            self.timed("STARTTLS", conn.starttls(params, &self.hello))
                .await?;
        }
        if !s.user.is_empty() {
            let credentials = Credentials::new(s.user.clone(), s.password.expose().to_string());
            self.timed(
                "logging in",
                conn.auth(&[Mechanism::Plain, Mechanism::Login], &credentials),
            )
            .await?;
        }
        Ok(conn)
    }

    /// Connects, greets, starts TLS and logs in (as a send would), sending
    /// nothing.
    pub async fn check(&self) -> Result<(), String> {
        let mut conn = self
            .connect()
            .await
            .map_err(|e| format!("{}: {}", self.server, e.answer()))?;
        let _ = tokio::time::timeout(Duration::from_secs(self.settings.timeout_secs), conn.quit())
            .await;
        Ok(())
    }

    /// One mail transaction on `conn`. Until the message itself went out,
    /// a failure means the server did not take it; after that, a lost
    /// connection or no answer leaves it uncertain.
    async fn transact(
        &self,
        conn: &mut AsyncSmtpConnection,
        envelope: &lettre::address::Envelope,
        bytes: &[u8],
    ) -> Result<lettre::transport::smtp::response::Response, SendError> {
        use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
        // A refusal of the sender (530 authentication required, 553, a
        // 5.7.x policy) is the server's or the configuration's, not this
        // recipient's: it fails like a server that cannot be reached.
        self.timed(
            "MAIL FROM",
            conn.command(Mail::new(envelope.from().cloned(), vec![])),
        )
        .await
        .map_err(server_side)?;
        for to in envelope.to() {
            self.timed("RCPT TO", conn.command(Rcpt::new(to.clone(), vec![])))
                .await?;
        }
        self.timed("DATA", conn.command(Data)).await?;
        match tokio::time::timeout(FINAL_REPLY, conn.message(bytes)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) if e.is_permanent() => Err(SendError::Permanent(describe(&e))),
            Ok(Err(e)) if e.is_transient() => Err(SendError::Temporary(describe(&e))),
            Ok(Err(e)) => Err(SendError::Uncertain(format!(
                "the connection failed after the message was sent: {}",
                describe(&e)
            ))),
            Err(_) => Err(SendError::Uncertain(format!(
                "no answer within {} s after the message was sent",
                FINAL_REPLY.as_secs()
            ))),
        }
    }

    /// Sends `m` to `to`; the server's answer when it took it. `id` makes
    /// the Message-ID (`<pglab-mail-<id>@<domain of from>>`), the same on
    /// every attempt.
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
        let (envelope, bytes) = (message.envelope().clone(), message.formatted());
        self.pace().await;
        let mut kept = self.kept.lock().await;
        if kept.as_ref().is_some_and(|k| k.used.elapsed() > IDLE) {
            // Dropped, not QUIT: a server that stopped answering must not
            // hold the mail up.
            kept.take();
        }
        let reused = kept.is_some();
        if kept.is_none() {
            *kept = Some(self.fresh().await?);
        }
        let k = kept.as_mut().expect("connected");
        let mut sent = self.transact(&mut k.conn, &envelope, &bytes).await;
        if reused && matches!(sent, Err(SendError::Server(_))) {
            // The server may have closed a kept connection (idle, 421):
            // once more on a new one before it counts as the server's.
            let k = kept.insert(self.fresh().await?);
            sent = self.transact(&mut k.conn, &envelope, &bytes).await;
        }
        let k = kept.as_mut().expect("connected");
        k.used = Instant::now();
        match sent {
            Ok(r) => Ok(format!(
                "{} {}",
                r.code(),
                r.message().collect::<Vec<_>>().join(" ")
            )),
            Err(e) => {
                // Whatever state the session is in now, the next message
                // starts on a new connection (dropped, not QUIT).
                kept.take();
                Err(e)
            }
        }
    }

    /// A new connection, ready for a message; a failure is the server's.
    async fn fresh(&self) -> Result<Kept, SendError> {
        let conn = self.connect().await.map_err(server_side)?;
        Ok(Kept {
            conn,
            used: Instant::now(),
        })
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

/// A failure of the server itself rather than of one message.
fn server_side(e: SendError) -> SendError {
    match e {
        SendError::Permanent(a) | SendError::Temporary(a) => SendError::Server(a),
        other => other,
    }
}

/// A 5xx answer is permanent; everything else (4xx, the connection, TLS)
/// is worth another attempt.
fn classify(e: &lettre::transport::smtp::Error) -> SendError {
    if e.is_permanent() {
        SendError::Permanent(describe(e))
    } else {
        SendError::Temporary(describe(e))
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
