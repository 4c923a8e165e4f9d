//! Identifiers that end up in SQL, LDAP DNs or file names.
//!
//! Each one is parsed once, here (STYLE.md, habit 3), and the quoting and
//! escaping functions live here too: `PgName::quoted`, `quote_ident`,
//! `quote_literal`, `escape_dn_value`. Other modules call them on names
//! read back from Postgres or made by pglab; raw user input reaches SQL only
//! as one of these types.

use std::fmt;

/// Why an identifier was refused; the message is shown to the user as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {value:?} is not valid: {rule}")]
pub struct IdentError {
    pub what: &'static str,
    pub value: String,
    pub rule: &'static str,
}

fn check(
    what: &'static str,
    value: &str,
    rule: &'static str,
    max: usize,
    first: fn(char) -> bool,
    rest: fn(char) -> bool,
) -> Result<String, IdentError> {
    let mut chars = value.chars();
    let ok = match chars.next() {
        Some(c) => first(c) && value.len() <= max && chars.all(rest),
        None => false,
    };
    if ok {
        Ok(value.to_string())
    } else {
        let shown: String = value.chars().take(40).collect();
        Err(IdentError {
            what,
            value: if shown.len() < value.len() {
                format!("{shown}…")
            } else {
                shown
            },
            rule,
        })
    }
}

macro_rules! ident_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

ident_type!(
    /// A lab id: `[a-z][a-z0-9-]{0,19}`.
    LabId
);
ident_type!(
    /// A participant's login: `[a-z_][a-z0-9_]{0,31}`; the same string is the
    /// LDAP `uid` and the Postgres role name.
    Username
);
ident_type!(
    /// A group of participants, same rule as a username.
    GroupName
);
ident_type!(
    /// A Postgres role or database name built by pglab from parsed parts.
    PgName
);

fn lower(c: char) -> bool {
    c.is_ascii_lowercase()
}

impl<'de> serde::Deserialize<'de> for LabId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl LabId {
    pub fn parse(s: &str) -> Result<Self, IdentError> {
        check(
            "lab id",
            s,
            "use 1-20 characters a-z, 0-9 and '-', starting with a letter",
            20,
            lower,
            |c| lower(c) || c.is_ascii_digit() || c == '-',
        )
        .map(Self)
    }
}

fn user_rule(what: &'static str, s: &str) -> Result<String, IdentError> {
    check(
        what,
        s,
        "use 1-32 characters a-z, 0-9 and '_', not starting with a digit",
        32,
        |c| lower(c) || c == '_',
        |c| lower(c) || c.is_ascii_digit() || c == '_',
    )
}

impl Username {
    pub fn parse(s: &str) -> Result<Self, IdentError> {
        user_rule("username", s).map(Self)
    }

    pub fn role(&self) -> PgName {
        PgName(self.0.clone())
    }
}

impl GroupName {
    pub fn parse(s: &str) -> Result<Self, IdentError> {
        user_rule("group", s).map(Self)
    }
}

/// A Postgres name reads as the text Postgres knows it by (for catalog
/// queries, connection strings and messages); it is only made by pglab.
impl std::ops::Deref for PgName {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl PgName {
    /// A name pglab owns (roles like `pglab_students`); checked like a username.
    pub fn fixed(s: &str) -> Self {
        debug_assert!(user_rule("name", s).is_ok(), "{s}");
        Self(s.to_string())
    }

    /// A name read back from Postgres; only used to compare and to quote.
    pub fn from_catalog(s: String) -> Self {
        Self(s)
    }

    // Names cannot collide: a lab id has no `_` or `.`, a username or group
    // has no `-` or `.`, so the first `_` or `.` tells where the lab id ends.

    /// `<lab>_<user>`, the participant's own database.
    pub fn participant_db(lab: &LabId, user: &Username) -> Self {
        Self(format!("{}_{}", lab.0, user.0))
    }

    /// `<lab>.<group>`: the group's database and its NOLOGIN owner role.
    pub fn group_db(lab: &LabId, group: &GroupName) -> Self {
        Self(format!("{}.{}", lab.0, group.0))
    }

    /// `pglab.ck.<owner>`: the login role that checks the databases owned
    /// by `owner` (a participant or a group role), and can become `owner`
    /// and nobody else. Fits in 63 bytes: an owner has at most 53.
    pub fn checker(owner: &PgName) -> Self {
        Self(format!("pglab.ck.{}", owner.0))
    }

    /// `<db>_snap_<n>`: a read-only copy of snapshot `n` of database `db`
    /// (`None` when it would not fit in 63 bytes).
    pub fn snapshot_copy(db: &str, n: i32) -> Option<Self> {
        let name = format!("{db}_snap_{n}");
        (name.len() <= 63).then_some(Self(name))
    }

    /// `pglab.sn.<id>`: the NOLOGIN role that owns the copy of snapshot
    /// `id` and nothing else.
    pub fn snapshot_owner(id: i64) -> Self {
        Self(format!("pglab.sn.{id}"))
    }

    pub fn reference_db(lab: &LabId) -> Self {
        Self(format!("pglab.ref.{}", lab.0))
    }

    pub fn template_db(lab: &LabId) -> Self {
        Self(format!("pglab.tpl.{}", lab.0))
    }

    /// The identifier, double-quoted for SQL.
    pub fn quoted(&self) -> String {
        quote_ident(&self.0)
    }
}

/// Double-quotes an SQL identifier.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Single-quotes an SQL string literal (standard_conforming_strings is on).
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Escapes a value for use inside an LDAP DN attribute value (RFC 4514).
pub fn escape_dn_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, c) in s.chars().enumerate() {
        match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=' => {
                out.push('\\');
                out.push(c);
            }
            '#' | ' ' if i == 0 => {
                out.push('\\');
                out.push(c);
            }
            '\0' => out.push_str("\\00"),
            _ => out.push(c),
        }
    }
    if out.ends_with(' ') {
        out.pop();
        out.push_str("\\ ");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        for ok in ["alice", "_x", "a1_b", &"a".repeat(32)] {
            assert!(Username::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Alice",
            "1a",
            ")(uid=*)",
            "a\"; DROP ROLE x",
            "é",
            &"a".repeat(33),
        ] {
            assert!(Username::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lab_ids_and_names() {
        let lab = LabId::parse("sql-101").unwrap();
        assert!(LabId::parse("-x").is_err());
        assert!(LabId::parse(&"a".repeat(21)).is_err());
        let u = Username::parse("bob").unwrap();
        assert_eq!(PgName::participant_db(&lab, &u).as_str(), "sql-101_bob");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(escape_dn_value("a,b=c "), "a\\,b\\=c\\ ");
    }
}
