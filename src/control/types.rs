//! How pglab's typed values are stored in `text` columns: identifiers are
//! parsed again when read, enums are stored by name. A value that does not
//! parse is an error of the row it came from, never a silently dropped row.

use crate::ident::{GroupName, IdentError, LabId, PgName, Username};
use crate::lab::submissions::DumpFormat;
use bytes::BytesMut;
use std::error::Error;
use tokio_postgres::types::{to_sql_checked, FromSql, IsNull, ToSql, Type};

type BoxError = Box<dyn Error + Sync + Send>;

/// A configured Postgres server's name (`servers[].name` in the config).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct ServerName(String);

impl ServerName {
    pub fn new(name: impl Into<String>) -> Self {
        Self(name.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Reads as the name in the config (`Settings::server` takes it).
impl std::ops::Deref for ServerName {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ServerName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Implements `ToSql`/`FromSql` for a type stored as text: `$as_str` turns
/// it into the column's text, `$parse` reads it back.
macro_rules! text_column {
    ($ty:ty, $as_str:expr, $parse:expr) => {
        impl ToSql for $ty {
            fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
                let text: &str = $as_str(self);
                text.to_sql(ty, out)
            }

            fn accepts(ty: &Type) -> bool {
                <&str as ToSql>::accepts(ty)
            }

            to_sql_checked!();
        }

        impl<'a> FromSql<'a> for $ty {
            fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
                let text = <&str as FromSql>::from_sql(ty, raw)?;
                $parse(text)
            }

            fn accepts(ty: &Type) -> bool {
                <&str as FromSql>::accepts(ty)
            }
        }
    };
}

fn ident<T>(parsed: Result<T, IdentError>) -> Result<T, BoxError> {
    parsed.map_err(Into::into)
}

text_column!(LabId, LabId::as_str, |t| ident(LabId::parse(t)));
text_column!(Username, Username::as_str, |t| ident(Username::parse(t)));
text_column!(GroupName, GroupName::as_str, |t| ident(GroupName::parse(t)));
// Names pglab made (or Postgres reported): stored and read back as they are.
text_column!(PgName, PgName::as_str, |t: &str| Ok::<_, BoxError>(
    PgName::from_catalog(t.to_string())
));
text_column!(ServerName, ServerName::as_str, |t: &str| Ok::<_, BoxError>(
    ServerName::new(t)
));
text_column!(DumpFormat, |f: &DumpFormat| f.name(), |t: &str| {
    DumpFormat::parse(t).ok_or_else(|| BoxError::from(format!("unknown dump format {t:?}")))
});

/// An enum stored by name in a `text` column with a `CHECK`.
macro_rules! stored_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($variant),+
        }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }

            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $($text => Some(Self::$variant),)+
                    _ => None,
                }
            }
        }

        /// Serialized as stored.
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        text_column!($name, |v: &$name| v.as_str(), |t: &str| {
            $name::parse(t).ok_or_else(|| {
                BoxError::from(format!(concat!("unknown ", stringify!($name), " {:?}"), t))
            })
        });
    };
}

stored_enum!(
    /// Where a job is: waiting, claimed by a worker, or ended.
    JobStatus {
        Queued => "queued",
        Running => "running",
        Succeeded => "succeeded",
        Failed => "failed",
    }
);

impl JobStatus {
    pub fn ended(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }
}

stored_enum!(
    /// What a job does.
    JobKind {
        Apply => "apply",
        Restore => "restore",
        Reset => "reset",
        Snapshot => "snapshot",
        Final => "final",
        SnapshotRestore => "snapshot_restore",
        Export => "export",
        Mail => "mail",
        Move => "move",
    }
);

stored_enum!(
    /// What a mail is for.
    MailKind {
        Credentials => "credentials",
        Reminder => "reminder",
        HandIn => "hand_in",
        Digest => "digest",
    }
);

stored_enum!(
    /// Where a mail is: `sending` while the server has it; `uncertain`
    /// when its job was interrupted then (never sent again by itself);
    /// `failed` when the server refused it, `unsent` when it never reached
    /// one (it may be queued again).
    MailStatus {
        Queued => "queued",
        Sending => "sending",
        Sent => "sent",
        Failed => "failed",
        Uncertain => "uncertain",
        Unsent => "unsent",
    }
);

stored_enum!(
    /// What an API token may do: read; also change (start jobs, hand in,
    /// apply); also manage (credentials, tokens).
    TokenScope {
        Read => "read",
        Write => "write",
        Admin => "admin",
    }
);

impl TokenScope {
    /// Whether a token of this scope may do what `needed` asks.
    pub fn allows(self, needed: TokenScope) -> bool {
        let rank = |s: TokenScope| match s {
            TokenScope::Read => 0,
            TokenScope::Write => 1,
            TokenScope::Admin => 2,
        };
        rank(self) >= rank(needed)
    }
}

stored_enum!(
    /// Why a snapshot was taken.
    SnapshotKind {
        Periodic => "periodic",
        Final => "final",
        BeforeRestore => "before_restore",
        Manual => "manual",
    }
);

/// Reads column `idx` of a row; a value that does not parse is a
/// `BadRecord` naming the row by `what` and `key`.
pub(super) fn column<'a, T: FromSql<'a>>(
    row: &'a tokio_postgres::Row,
    idx: usize,
    what: &'static str,
    key: impl FnOnce() -> String,
) -> Result<T, super::StoreError> {
    row.try_get(idx).map_err(|e| super::StoreError::BadRecord {
        what,
        key: key(),
        reason: match e.source() {
            Some(cause) => format!("column {}: {cause}", row.columns()[idx].name()),
            None => e.to_string(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_values_read_back_or_name_what_is_wrong() {
        let ty = Type::TEXT;
        let mut buf = BytesMut::new();
        JobStatus::Running.to_sql(&ty, &mut buf).expect("to_sql");
        assert_eq!(
            JobStatus::from_sql(&ty, &buf).expect("from_sql"),
            JobStatus::Running
        );
        assert!(JobStatus::from_sql(&ty, b"done")
            .expect_err("unknown")
            .to_string()
            .contains("\"done\""));
        assert!(LabId::from_sql(&ty, b"Not A Lab").is_err());
        assert_eq!(
            DumpFormat::from_sql(&ty, b"plain").expect("format"),
            DumpFormat::Plain
        );
        assert!(<JobKind as ToSql>::accepts(&Type::TEXT));
        assert!(!<JobKind as ToSql>::accepts(&Type::INT4));
    }
}
