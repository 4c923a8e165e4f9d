//! Mail: messages made from templates (plain text and HTML), and the SMTP
//! client that sends them, telling a temporary failure (try again later)
//! from a permanent one (the server's answer is the reason).

mod messages;
mod smtp;

pub use messages::{
    credentials, credentials_subject, digest, digest_subject, from_template, hand_in,
    hand_in_subject, reminder, reminder_subject, Credentials, Digest, HandIn, HelpLine, IssueLine,
    Reminder, Rendered, TaskLine,
};
pub use smtp::{Mailer, SendError};
