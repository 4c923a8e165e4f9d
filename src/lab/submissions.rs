//! The `submissions:` section of a lab: participants (or groups) hand in a
//! `pg_dump` of their database, which pglab restores into it.
//!
//! ```yaml
//! submissions:
//!   formats: [custom, tar, directory, plain]   # default: all four
//!   max_size: 100MB                            # default 100MB, at most 10GB
//!   deadline: 2026-12-01T18:00:00+01:00        # default: the lab's deadline
//!   late: reject                               # or accept-flagged
//!   replace: true                              # a new upload replaces the last
//!   timeout: 10m                               # longest restore (default 10m, at most 2h)
//!   keep_uploads: false                        # keep the files after the restore
//! ```

use super::walk::{Fields, Walker};
use super::yaml::Node;
use chrono::{DateTime, Utc};

/// What `pg_dump` wrote; `Directory` arrives as a tar of the folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DumpFormat {
    Custom,
    Tar,
    Directory,
    Plain,
}

impl DumpFormat {
    pub const ALL: [DumpFormat; 4] = [
        DumpFormat::Custom,
        DumpFormat::Tar,
        DumpFormat::Directory,
        DumpFormat::Plain,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DumpFormat::Custom => "custom",
            DumpFormat::Tar => "tar",
            DumpFormat::Directory => "directory",
            DumpFormat::Plain => "plain",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == s)
    }

    /// How `pg_dump` makes it, for help texts.
    pub fn how(self) -> &'static str {
        match self {
            DumpFormat::Custom => "pg_dump -Fc -f db.dump DB",
            DumpFormat::Tar => "pg_dump -Ft -f db.tar DB",
            DumpFormat::Directory => "pg_dump -Fd -f dir DB && tar -cf db-dir.tar dir",
            DumpFormat::Plain => "pg_dump -f db.sql DB",
        }
    }
}

impl std::fmt::Display for DumpFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LatePolicy {
    Reject,
    AcceptFlagged,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SubmissionRules {
    pub formats: Vec<DumpFormat>,
    pub max_bytes: u64,
    /// `None`: the lab's deadline (and none when the lab has none).
    pub deadline: Option<DateTime<Utc>>,
    pub late: LatePolicy,
    /// Whether a new upload replaces an earlier successful one.
    pub replace: bool,
    /// Longest a restore may run before it is stopped and failed.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Keep uploaded files after their restore (the last `KEPT_UPLOADS` of
    /// each database); by default a file is removed once restored.
    #[serde(default)]
    pub keep_uploads: bool,
}

/// Uploads kept per database when a lab keeps them.
pub const KEPT_UPLOADS: usize = 5;
/// Hand-ins of one database waiting or running at once, at most.
pub const MAX_PENDING: i64 = 3;
const DEFAULT_TIMEOUT_SECS: u64 = 600;
const MAX_TIMEOUT_SECS: u64 = 7200;

fn default_timeout() -> u64 {
    DEFAULT_TIMEOUT_SECS
}

/// `90s`, `10m`, `1h`, `1h30m`.
pub fn parse_duration(s: &str) -> Option<u64> {
    let (mut total, mut number) = (0u64, String::new());
    for c in s.trim().chars() {
        match c {
            '0'..='9' => number.push(c),
            's' | 'm' | 'h' if !number.is_empty() => {
                let n: u64 = number.parse().ok()?;
                number.clear();
                total = total.checked_add(n.checked_mul(match c {
                    's' => 1,
                    'm' => 60,
                    _ => 3600,
                })?)?;
            }
            ' ' => {}
            _ => return None,
        }
    }
    (number.is_empty() && total > 0).then_some(total)
}

const KEYS: &[&str] = &[
    "formats",
    "max_size",
    "deadline",
    "late",
    "replace",
    "timeout",
    "keep_uploads",
];
const DEFAULT_MAX: u64 = 100 * 1024 * 1024;
const LIMIT: u64 = 10 * 1024 * 1024 * 1024;

/// `100MB`, `1.5GB`, `512kB`, `1000` (bytes); binary units (1 MB = 1024 kB).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" | "k" | "kib" => 1024.0,
        "mb" | "m" | "mib" => 1024.0 * 1024.0,
        "gb" | "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = number * factor;
    (bytes >= 1.0 && bytes.is_finite()).then_some(bytes as u64)
}

/// `key` read with `parse`, or `default` when absent; a value that does
/// not parse is an error on its line (and clears `ok`).
fn scalar<T: Default>(
    w: &mut Walker,
    f: &Fields,
    key: &str,
    default: T,
    ok: &mut bool,
    parse: impl Fn(&str) -> Result<T, &'static str>,
) -> T {
    let Some(text) = w.string(f, key) else {
        return default;
    };
    parse(&text).unwrap_or_else(|expected| {
        let line = f.get(key).map_or(f.line, |n| n.line);
        w.error(
            line,
            &format!("submissions.{key}"),
            format!("{text:?} is not {expected}"),
        );
        *ok = false;
        T::default()
    })
}

/// A `true`/`false` field, or `default` when absent.
fn flag(w: &mut Walker, f: &Fields, key: &str, default: bool, ok: &mut bool) -> bool {
    if !f.has(key) {
        return default;
    }
    w.boolean(f, key).unwrap_or_else(|| {
        *ok = false;
        default
    })
}

pub fn rules(w: &mut Walker, node: &Node) -> Option<SubmissionRules> {
    let f = w.fields(node, "submissions", KEYS)?;
    let mut ok = true;
    let formats = if f.has("formats") {
        let mut out = vec![];
        for item in w.list(&f, "formats") {
            let name = match &item.value {
                super::yaml::Value::Scalar(s) => s.clone(),
                _ => String::new(),
            };
            match DumpFormat::parse(&name) {
                Some(fmt) if !out.contains(&fmt) => out.push(fmt),
                Some(_) => {}
                None => {
                    w.error(
                        item.line,
                        "submissions.formats",
                        format!(
                            "unknown format {name:?} (expected custom, tar, directory or plain)"
                        ),
                    );
                    ok = false;
                }
            }
        }
        if out.is_empty() && ok {
            w.error(f.line, "submissions.formats", "list at least one format");
            ok = false;
        }
        out
    } else {
        DumpFormat::ALL.to_vec()
    };
    let max_bytes = scalar(w, &f, "max_size", DEFAULT_MAX, &mut ok, |s| {
        parse_size(s)
            .filter(|b| *b <= LIMIT)
            .ok_or("a size like 100MB or 2GB (at most 10GB)")
    });
    let deadline = w.time(&f, "deadline");
    if f.has("deadline") && deadline.is_none() {
        ok = false;
    }
    let late = match w.string(&f, "late").as_deref() {
        None | Some("reject") => LatePolicy::Reject,
        Some("accept-flagged") => LatePolicy::AcceptFlagged,
        Some(other) => {
            let line = f.get("late").map_or(f.line, |n| n.line);
            w.error(
                line,
                "submissions.late",
                format!("unknown policy {other:?} (expected reject or accept-flagged)"),
            );
            ok = false;
            LatePolicy::Reject
        }
    };
    let replace = flag(w, &f, "replace", true, &mut ok);
    let timeout_secs = scalar(w, &f, "timeout", DEFAULT_TIMEOUT_SECS, &mut ok, |t| {
        parse_duration(t)
            .filter(|s| *s <= MAX_TIMEOUT_SECS)
            .ok_or("a duration like 10m or 90s (at most 2h)")
    });
    let keep_uploads = flag(w, &f, "keep_uploads", false, &mut ok);
    ok.then_some(SubmissionRules {
        formats,
        max_bytes,
        deadline,
        late,
        replace,
        timeout_secs,
        keep_uploads,
    })
}

impl SubmissionRules {
    /// The deadline that applies: the section's, else the lab's.
    pub fn deadline(&self, lab_deadline: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
        self.deadline.or(lab_deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("100MB"), Some(100 * 1024 * 1024));
        assert_eq!(parse_size("1.5 GB"), Some(1536 * 1024 * 1024));
        assert_eq!(parse_size("2048"), Some(2048));
        assert_eq!(parse_size("12 parsecs"), None);
        assert_eq!(parse_size("0"), None);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10m"), Some(600));
        assert_eq!(parse_duration("1h30m"), Some(5400));
        assert_eq!(parse_duration("90s"), Some(90));
        for bad in ["", "10", "m", "10x", "0s", "-5m"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }
}
