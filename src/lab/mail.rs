//! What a lab mails on its own.
//!
//! ```yaml
//! mail:
//!   credentials: after-apply   # each participant their credentials once applied
//!                              # (default: manual, from the page or the CLI)
//!   reminders: [24h, 1h]       # before each participant's deadline, to those not finished
//!   hand_ins: true             # each hand-in's result to its participant (or group)
//!   digest:                    # to the lab's staff, while someone needs help
//!     every: 30m
//!     to: [ta@example.org, ada@example.org]
//!   language: de               # of the lab's own templates (the HTML's lang)
//!   templates:                 # the lab's own words for any of the messages
//!     credentials:
//!       subject: "Ihr Zugang zu {lab}"
//!       text: |
//!         Hallo {name}, ... {username} ... {password} ... {psql} ... {login_url}
//!       html: "<p>Hallo {name}</p> ..."   # optional: else the text, as is
//! ```

use super::evidence::parse_duration;
use super::walk::Walker;
use super::yaml::{Node, Value};
use std::time::Duration;

/// The placeholders each message's template may use.
pub const PLACEHOLDERS: [(&str, &[&str]); 4] = [
    (
        "credentials",
        &["name", "lab", "username", "password", "psql", "login_url"],
    ),
    (
        "reminder",
        &[
            "name",
            "lab",
            "deadline",
            "left",
            "points",
            "max_points",
            "open_tasks",
            "login_url",
        ],
    ),
    (
        "hand_in",
        &[
            "name",
            "lab",
            "id",
            "uploaded_by",
            "result",
            "errors",
            "url",
        ],
    ),
    ("digest", &["lab", "count", "people", "board_url"]),
];

/// A lab's own words for a message: `{placeholder}`s are filled in when it
/// is sent (escaped in the HTML).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MailTemplate {
    pub subject: String,
    pub text: String,
    #[serde(default)]
    pub html: Option<String>,
}

/// The `{names}` in `text`, in order.
pub fn placeholders(text: &str) -> Vec<&str> {
    let mut out = vec![];
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close)
                if after[..close]
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_')
                    && close > 0 =>
            {
                out.push(&after[..close]);
                rest = &after[close + 1..];
            }
            _ => rest = after,
        }
    }
    out
}

/// A lab's mail rules; the default mails nothing by itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MailRules {
    /// The language of the lab's own templates (`de`, `fr-CH`).
    #[serde(default)]
    pub language: Option<String>,
    /// The lab's own templates, by message kind.
    #[serde(default)]
    pub templates: std::collections::BTreeMap<String, MailTemplate>,
    /// Mail the credentials after each apply.
    #[serde(default)]
    pub credentials_after_apply: bool,
    /// Reminders this long before the deadline, longest first.
    #[serde(default)]
    pub reminders_secs: Vec<u64>,
    /// Mail each hand-in's result.
    #[serde(default)]
    pub hand_ins: bool,
    /// A digest of the participants who need help, to the lab's staff.
    #[serde(default)]
    pub digest: Option<DigestRule>,
}

/// How often, and to whom, the digest of who needs help goes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DigestRule {
    pub every_secs: u64,
    pub to: Vec<String>,
}

/// Addresses a digest may go to at most.
const DIGEST_ADDRESSES: usize = 20;

/// A plain address (`ta@example.org`): one `@` with text on both sides,
/// nothing that could start another header or address.
pub fn plain_address(a: &str) -> bool {
    let mut parts = a.split('@');
    let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    a.len() <= 254
        && !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && a.chars()
            .all(|c| c.is_ascii_graphic() && !"<>()[],;:\\\"".contains(c))
}

fn digest(w: &mut Walker, node: &Node) -> Option<DigestRule> {
    let f = w.fields(node, "mail.digest", &["every", "to"])?;
    let every = match f.get("every").map(|n| &n.value) {
        Some(Value::Scalar(s)) => parse_duration(s)
            .filter(|d| *d >= Duration::from_secs(300) && *d <= Duration::from_secs(7 * 86_400)),
        _ => None,
    };
    if every.is_none() {
        let line = f.get("every").map_or(f.line, |n| n.line);
        w.error(
            line,
            "mail.digest.every",
            "expected how often, from 5m to 7d, like 30m",
        );
    }
    let mut to = vec![];
    for item in w.list(&f, "to") {
        match &item.value {
            Value::Scalar(a) if plain_address(a.trim()) => to.push(a.trim().to_string()),
            _ => w.error(
                item.line,
                "mail.digest.to",
                "expected a plain e-mail address like ta@example.org",
            ),
        }
    }
    if to.is_empty() || to.len() > DIGEST_ADDRESSES {
        let line = f.get("to").map_or(f.line, |n| n.line);
        w.error(
            line,
            "mail.digest.to",
            format!("expected 1 to {DIGEST_ADDRESSES} addresses to send the digest to"),
        );
    }
    to.sort();
    to.dedup();
    Some(DigestRule {
        every_secs: every?.as_secs(),
        to,
    })
}

impl MailRules {
    pub fn reminders(&self) -> impl Iterator<Item = Duration> + '_ {
        self.reminders_secs.iter().map(|s| Duration::from_secs(*s))
    }
}

pub(super) fn rules(w: &mut Walker, node: &Node) -> Option<MailRules> {
    let f = w.fields(
        node,
        "mail",
        &[
            "credentials",
            "reminders",
            "hand_ins",
            "language",
            "templates",
            "digest",
        ],
    )?;
    let mut rules = MailRules::default();
    match w.string(&f, "credentials").as_deref() {
        None | Some("manual") => {}
        Some("after-apply") => rules.credentials_after_apply = true,
        Some(other) => {
            let line = f.get("credentials").map_or(f.line, |n| n.line);
            w.error(
                line,
                "mail.credentials",
                format!("{other:?} is not one of: manual, after-apply"),
            );
        }
    }
    for item in w.list(&f, "reminders") {
        let parsed = match &item.value {
            Value::Scalar(s) => parse_duration(s).filter(|d| {
                *d >= Duration::from_secs(60) && *d <= Duration::from_secs(30 * 86_400)
            }),
            _ => None,
        };
        match parsed {
            Some(d) => rules.reminders_secs.push(d.as_secs()),
            None => w.error(
                item.line,
                "mail.reminders",
                "expected a time before the deadline from 1m to 30d, like 24h or 1h",
            ),
        }
    }
    rules.reminders_secs.sort_unstable_by(|a, b| b.cmp(a));
    rules.reminders_secs.dedup();
    rules.hand_ins = w.boolean(&f, "hand_ins").unwrap_or(false);
    if let Some(lang) = w.string(&f, "language") {
        let ok = !lang.is_empty()
            && lang.len() <= 35
            && lang.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if ok {
            rules.language = Some(lang);
        } else {
            let line = f.get("language").map_or(f.line, |n| n.line);
            w.error(
                line,
                "mail.language",
                "expected a language tag like de or fr-CH",
            );
        }
    }
    if let Some(node) = f.get("templates") {
        rules.templates = templates(w, node);
    }
    if let Some(node) = f.get("digest") {
        rules.digest = digest(w, node);
    }
    Some(rules)
}

fn templates(w: &mut Walker, node: &Node) -> std::collections::BTreeMap<String, MailTemplate> {
    let kinds: Vec<&str> = PLACEHOLDERS.iter().map(|(k, _)| *k).collect();
    let mut out = std::collections::BTreeMap::new();
    let Some(f) = w.fields(node, "mail.templates", &kinds) else {
        return out;
    };
    for (kind, allowed) in PLACEHOLDERS {
        let Some(t) = f.get(kind) else { continue };
        let path = format!("mail.templates.{kind}");
        let Some(tf) = w.fields(t, &path, &["subject", "text", "html"]) else {
            continue;
        };
        let subject = w.required_string(&tf, "subject");
        let text = w.required_string(&tf, "text");
        let html = w.string(&tf, "html");
        let mut ok = true;
        for (key, value) in [("subject", &subject), ("text", &text), ("html", &html)] {
            let Some(value) = value else { continue };
            let line = tf.get(key).map_or(tf.line, |n| n.line);
            for name in placeholders(value) {
                if !allowed.contains(&name) {
                    ok = false;
                    w.error(
                        line,
                        &format!("{path}.{key}"),
                        format!(
                            "unknown placeholder {{{name}}} (this message has: {})",
                            allowed.join(", ")
                        ),
                    );
                }
            }
            // Subjects show in server logs and notifications: no secrets,
            // no lists.
            for secret in ["password", "psql", "errors", "open_tasks", "people"] {
                if key == "subject" && placeholders(value).contains(&secret) {
                    ok = false;
                    w.error(
                        line,
                        &format!("{path}.subject"),
                        format!("{{{secret}}} may not be in a subject (it goes in the text)"),
                    );
                }
            }
            if key == "subject" && value.contains(['\r', '\n']) {
                ok = false;
                w.error(line, &format!("{path}.subject"), "a subject is one line");
            }
        }
        if let (Some(subject), Some(text), true) = (subject, text, ok) {
            out.insert(
                kind.to_string(),
                MailTemplate {
                    subject,
                    text,
                    html,
                },
            );
        }
    }
    out
}
