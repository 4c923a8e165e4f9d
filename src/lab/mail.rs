//! What a lab mails on its own.
//!
//! ```yaml
//! mail:
//!   credentials: after-apply   # each participant their credentials once applied
//!                              # (default: manual, from the page or the CLI)
//!   reminders: [24h, 1h]       # before each participant's deadline, to those not finished
//!   hand_ins: true             # each hand-in's result to its participant (or group)
//! ```

use super::evidence::parse_duration;
use super::walk::Walker;
use super::yaml::{Node, Value};
use std::time::Duration;

/// A lab's mail rules; the default mails nothing by itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MailRules {
    /// Mail the credentials after each apply.
    #[serde(default)]
    pub credentials_after_apply: bool,
    /// Reminders this long before the deadline, longest first.
    #[serde(default)]
    pub reminders_secs: Vec<u64>,
    /// Mail each hand-in's result.
    #[serde(default)]
    pub hand_ins: bool,
}

impl MailRules {
    pub fn reminders(&self) -> impl Iterator<Item = Duration> + '_ {
        self.reminders_secs.iter().map(|s| Duration::from_secs(*s))
    }
}

pub(super) fn rules(w: &mut Walker, node: &Node) -> Option<MailRules> {
    let f = w.fields(node, "mail", &["credentials", "reminders", "hand_ins"])?;
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
    Some(rules)
}
