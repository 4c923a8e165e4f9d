//! Class data exports: a lab's records as CSV and JSON files (and, when
//! asked for, the uploaded dumps, the snapshots and the jobs' logs), built
//! in a private folder and packed into one zip archive.

pub mod archive;
pub mod tables;
pub mod zip;

use crate::control::StoreError;

/// What an export holds beyond the tables, and how its CSV is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExportOptions {
    /// The uploaded dumps still kept.
    pub dumps: bool,
    /// Every snapshot file.
    pub snapshots: bool,
    /// Every job's log lines.
    pub logs: bool,
    /// CSV files start with a UTF-8 byte order mark (for spreadsheets).
    pub bom: bool,
}

impl ExportOptions {
    /// `dumps,snapshots,logs,bom` (any of them, comma-separated).
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut out = Self::default();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match item {
                "dumps" => out.dumps = true,
                "snapshots" => out.snapshots = true,
                "logs" => out.logs = true,
                "bom" => out.bom = true,
                other => {
                    return Err(format!(
                        "{other:?} is not one of: dumps, snapshots, logs, bom"
                    ))
                }
            }
        }
        Ok(out)
    }

    /// For people: `dumps, logs`, or `tables only`.
    pub fn describe(&self) -> String {
        let mut parts = vec![];
        for (on, name) in [
            (self.dumps, "dumps"),
            (self.snapshots, "snapshots"),
            (self.logs, "logs"),
            (self.bom, "BOM"),
        ] {
            if on {
                parts.push(name);
            }
        }
        if parts.is_empty() {
            "tables only".into()
        } else {
            parts.join(", ")
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("writing CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error("writing JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// `|source| ExportError::Io { what, source }`.
pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ExportError {
    let what = what.into();
    move |source| ExportError::Io { what, source }
}

/// A cell of a CSV file a spreadsheet will open: text that a spreadsheet
/// would take for a formula (`=`, `+`, `-`, `@`, a tab or CR first, after
/// blanks) gets a leading `'`. Free text from participants (names, the
/// reasons their checks give, hand-in errors) goes through here.
pub fn neutralize(cell: &str) -> String {
    let first = cell.trim_start_matches([' ', '\u{a0}']);
    if first.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}")
    } else {
        cell.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_read_and_say_what_they_are() {
        let o = ExportOptions::parse("dumps, logs").unwrap();
        assert!(o.dumps && o.logs && !o.snapshots && !o.bom);
        assert_eq!(o.describe(), "dumps, logs");
        assert_eq!(ExportOptions::parse("").unwrap().describe(), "tables only");
        assert!(ExportOptions::parse("everything").is_err());
        assert_eq!(neutralize("=1+1"), "'=1+1");
        assert_eq!(neutralize(" -2"), "' -2");
        assert_eq!(neutralize("Ann"), "Ann");
    }
}
