//! What a lab keeps as evidence: periodic snapshots of every database, and
//! what happens to the databases at the deadline.
//!
//! ```yaml
//! snapshots:
//!   every: 30m        # s, m, h or d; at least 10s
//!   keep: 10          # periodic snapshots kept per database (1-1000)
//! after_deadline: read-only   # keep-open (default), read-only or lock
//! ```

use super::walk::{Fields, Walker};
use super::yaml::Node;
use std::time::Duration;

/// Periodic snapshots of each database that changed since its last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SnapshotRule {
    #[serde(with = "secs")]
    pub every: Duration,
    pub keep: u32,
}

mod secs {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        <u64 as serde::Deserialize>::deserialize(d).map(Duration::from_secs)
    }
}

/// What happens to a database once its final state was taken.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum AfterDeadline {
    /// Work may go on; the final score stays what it was at the deadline.
    #[default]
    KeepOpen,
    /// Transactions are read-only by default, no new schemas, sessions ended.
    ReadOnly,
    /// Nobody but pglab can connect.
    Lock,
}

impl AfterDeadline {
    pub const ALL: [AfterDeadline; 3] = [Self::KeepOpen, Self::ReadOnly, Self::Lock];

    pub fn name(self) -> &'static str {
        match self {
            Self::KeepOpen => "keep-open",
            Self::ReadOnly => "read-only",
            Self::Lock => "lock",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == text)
    }
}

/// `30s`, `30m`, `2h`, `1d`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let unit = text.chars().last()?;
    let n: u64 = text[..text.len() - unit.len_utf8()].trim().parse().ok()?;
    let secs = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    n.checked_mul(secs).map(Duration::from_secs)
}

const SHORTEST: Duration = Duration::from_secs(10);

pub(super) fn snapshots(w: &mut Walker, node: &Node) -> Option<SnapshotRule> {
    let f = w.fields(node, "snapshots", &["every", "keep"])?;
    let every = match w.string(&f, "every") {
        None => {
            w.error(f.line, "snapshots.every", "is required, e.g. every: 30m");
            None
        }
        Some(text) => match parse_duration(&text).filter(|d| *d >= SHORTEST) {
            Some(d) => Some(d),
            None => {
                let line = f.get("every").map_or(f.line, |n| n.line);
                w.error(
                    line,
                    "snapshots.every",
                    format!("{text:?} is not a duration of at least 10s like 90s, 30m, 2h or 1d"),
                );
                None
            }
        },
    };
    let keep = if f.has("keep") {
        w.number(&f, "keep", 1, 1000)
    } else {
        Some(10)
    };
    Some(SnapshotRule {
        every: every?,
        keep: keep?,
    })
}

pub(super) fn after_deadline(w: &mut Walker, f: &Fields) -> AfterDeadline {
    let Some(text) = w.string(f, "after_deadline") else {
        return AfterDeadline::default();
    };
    AfterDeadline::parse(&text).unwrap_or_else(|| {
        let line = f.get("after_deadline").map_or(f.line, |n| n.line);
        w.error(
            line,
            "after_deadline",
            format!("{text:?} is not one of: keep-open, read-only, lock"),
        );
        AfterDeadline::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30m"), Some(Duration::from_secs(1800)));
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1d"), Some(Duration::from_secs(86400)));
        assert_eq!(parse_duration("m"), None);
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("-5m"), None);
        assert_eq!(parse_duration("5é"), None);
    }
}
