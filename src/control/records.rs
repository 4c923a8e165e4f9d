//! Typed reads and writes of the control database.

use super::types::column;
use super::ServerName;
use super::{Store, StoreError};
use crate::ident::{GroupName, LabId, PgName, Username};
use crate::lab::{LoadedLab, SourceFile};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseRecord {
    pub name: PgName,
    pub owner: PgName,
    pub server: ServerName,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantRecord {
    pub username: Username,
    pub name: String,
    pub email: String,
    pub group: Option<GroupName>,
    pub database: PgName,
    /// The server the participant list pins the database to.
    pub pinned: Option<String>,
}

/// A lab a user takes part in.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Membership {
    pub lab: LabId,
    pub title: String,
    pub database: PgName,
    pub server: ServerName,
    /// The server the database was moved from, and when.
    pub moved: Option<(ServerName, chrono::DateTime<chrono::Utc>)>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LabSummary {
    pub id: LabId,
    pub title: String,
    pub participants: i64,
    pub databases: i64,
}

/// The format of a lab in `labs.spec`; rows without a version are the
/// plain lab of pglab 0.1 (format 0), which reads the same.
const LAB_FORMAT: u32 = 1;

/// A lab as the control database stores it.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredLab {
    format: u32,
    lab: crate::lab::Lab,
}

/// The one reader of a stored lab: an error names the lab, never a silent
/// `None` (a 404) or a lab dropped from scoring.
pub(super) fn read_lab(id: &str, spec: serde_json::Value) -> Result<crate::lab::Lab, StoreError> {
    let bad = |reason: String| StoreError::BadRecord {
        what: "lab",
        key: id.to_string(),
        reason,
    };
    match spec.get("format").and_then(serde_json::Value::as_u64) {
        None => serde_json::from_value(spec).map_err(|e| bad(e.to_string())),
        Some(f) if f == u64::from(LAB_FORMAT) => serde_json::from_value::<StoredLab>(spec)
            .map(|s| s.lab)
            .map_err(|e| bad(e.to_string())),
        Some(f) => Err(bad(format!(
            "format {f} is newer than this pglab reads ({LAB_FORMAT}): upgrade pglab"
        ))),
    }
}

impl Store {
    /// Records a lab with its reference and starter files, in one
    /// transaction; files whose content did not change are not rewritten.
    pub async fn upsert_lab(
        &self,
        lab: &LoadedLab,
        sources: &[SourceFile],
    ) -> Result<(), StoreError> {
        let spec = serde_json::to_value(StoredLab {
            format: LAB_FORMAT,
            lab: lab.lab.clone(),
        })
        .expect("lab serializes");
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "INSERT INTO labs (id, title, spec, source_yaml, sources_digest) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (id) DO UPDATE SET title = $2, spec = $3, source_yaml = $4,
                 sources_digest = $5, updated_at = now()
             WHERE (labs.title, labs.spec, labs.source_yaml, labs.sources_digest) IS DISTINCT FROM ($2, $3, $4, $5)",
            &[&lab.lab.id, &lab.lab.title, &spec, &lab.text, &lab.sources_digest],
        )
        .await?;
        let names: Vec<&str> = sources.iter().map(|f| f.file_name.as_str()).collect();
        tx.execute(
            "DELETE FROM lab_sources WHERE lab_id = $1 AND file_name <> ALL($2)",
            &[&lab.lab.id, &names],
        )
        .await?;
        for file in sources {
            tx.execute(
                "INSERT INTO lab_sources (lab_id, role, file_name, sha256, content) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (lab_id, file_name) DO UPDATE SET role = $2, sha256 = $4, content = $5
                 WHERE (lab_sources.role, lab_sources.sha256) IS DISTINCT FROM ($2, $4)",
                &[&lab.lab.id, &file.role, &file.file_name, &file.sha256(), &file.bytes],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The reference and starter files a lab was last recorded with.
    pub async fn lab_sources(&self, lab: &LabId) -> Result<Vec<SourceFile>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT role, file_name, sha256, content FROM lab_sources WHERE lab_id = $1 ORDER BY file_name COLLATE \"C\"",
                &[lab],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let role: &str = r.get(0);
                let bad = |reason: String| StoreError::BadRecord {
                    what: "lab file",
                    key: format!("{lab}/{}", r.get::<_, &str>(1)),
                    reason,
                };
                let file = SourceFile {
                    role: SourceFile::role_named(role)
                        .ok_or_else(|| bad(format!("unknown role {role:?}")))?,
                    file_name: r.get(1),
                    bytes: r.get(3),
                };
                if file.sha256() != r.get::<_, &str>(2) {
                    return Err(bad("its content does not match its checksum".into()));
                }
                Ok(file)
            })
            .collect()
    }

    pub async fn labs(&self) -> Result<Vec<LabSummary>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT l.id, l.title,
                        (SELECT count(*) FROM participants p WHERE p.lab_id = l.id),
                        (SELECT count(*) FROM lab_databases d WHERE d.lab_id = l.id)
                 FROM labs l ORDER BY l.id",
                &[],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(LabSummary {
                    id: column(r, 0, "lab", || r.get::<_, String>(0))?,
                    title: r.get(1),
                    participants: r.get(2),
                    databases: r.get(3),
                })
            })
            .collect()
    }

    /// A lab as last applied (or uploaded): its spec, YAML text and digest.
    pub async fn lab(&self, id: &LabId) -> Result<Option<LoadedLab>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT spec, source_yaml, sources_digest FROM labs WHERE id = $1",
                &[&id],
            )
            .await?;
        row.map(|r| {
            Ok(LoadedLab {
                lab: read_lab(id.as_str(), r.get(0))?,
                text: r.get(1),
                sources_digest: r.get(2),
            })
        })
        .transpose()
    }

    /// Whether there is a lab `id` (without reading its spec).
    pub async fn lab_exists(&self, id: &LabId) -> Result<bool, StoreError> {
        Ok(self
            .client()
            .await?
            .query_opt("SELECT 1 FROM labs WHERE id = $1", &[&id])
            .await?
            .is_some())
    }

    /// The digest of the sources the lab's databases on `server` were built from.
    pub async fn lab_build(
        &self,
        lab: &LabId,
        server: &ServerName,
    ) -> Result<Option<String>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT sources_digest FROM lab_builds WHERE lab_id = $1 AND server = $2",
                &[lab, server],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    pub async fn set_lab_build(
        &self,
        lab: &LabId,
        server: &ServerName,
        digest: &str,
    ) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "INSERT INTO lab_builds (lab_id, server, sources_digest) VALUES ($1, $2, $3)
                 ON CONFLICT (lab_id, server) DO UPDATE SET sources_digest = $3, built_at = now()",
                &[lab, server, &digest],
            )
            .await?;
        Ok(())
    }

    pub async fn databases(&self, lab: &LabId) -> Result<Vec<DatabaseRecord>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT name, owner, server FROM lab_databases WHERE lab_id = $1 ORDER BY name",
                &[lab],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| DatabaseRecord {
                name: r.get(0),
                owner: r.get(1),
                server: r.get(2),
            })
            .collect())
    }

    /// How many lab databases each server holds (for placing new ones).
    pub async fn database_counts(&self) -> Result<Vec<(ServerName, i64)>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT server, count(*) FROM lab_databases GROUP BY server",
                &[],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    pub async fn put_database(&self, lab: &LabId, db: &DatabaseRecord) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "INSERT INTO lab_databases (lab_id, name, owner, server) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (lab_id, name) DO NOTHING",
                &[lab, &db.name, &db.owner, &db.server],
            )
            .await?;
        Ok(())
    }

    pub async fn delete_database(&self, lab: &LabId, name: &PgName) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "DELETE FROM lab_databases WHERE lab_id = $1 AND name = $2",
                &[lab, name],
            )
            .await?;
        Ok(())
    }

    pub async fn participants(&self, lab: &LabId) -> Result<Vec<ParticipantRecord>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT username, name, email, grp, database, pinned FROM participants WHERE lab_id = $1 ORDER BY username",
                &[lab],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let key = || format!("{lab}/{}", r.get::<_, &str>(0));
                Ok(ParticipantRecord {
                    username: column(r, 0, "participant", key)?,
                    name: r.get(1),
                    email: r.get(2),
                    group: column(r, 3, "participant", key)?,
                    database: r.get(4),
                    pinned: r.get(5),
                })
            })
            .collect()
    }

    pub async fn put_participant(
        &self,
        lab: &LabId,
        p: &ParticipantRecord,
    ) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "INSERT INTO participants (lab_id, username, name, email, grp, database, pinned) VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (lab_id, username) DO UPDATE SET name = $3, email = $4, grp = $5, database = $6, pinned = $7",
                &[lab, &p.username, &p.name, &p.email, &p.group, &p.database, &p.pinned],
            )
            .await?;
        Ok(())
    }

    pub async fn delete_participant(
        &self,
        lab: &LabId,
        username: &Username,
    ) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "DELETE FROM participants WHERE lab_id = $1 AND username = $2",
                &[lab, username],
            )
            .await?;
        Ok(())
    }

    /// The labs a user takes part in, with their database and its server.
    pub async fn memberships(&self, username: &Username) -> Result<Vec<Membership>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT l.id, l.title, p.database, d.server, d.moved_from, d.moved_at
                 FROM participants p
                 JOIN labs l ON l.id = p.lab_id
                 JOIN lab_databases d ON d.lab_id = p.lab_id AND d.name = p.database
                 WHERE p.username = $1 ORDER BY l.id",
                &[username],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Membership {
                    lab: column(r, 0, "participant", || {
                        format!("{username} in {}", r.get::<_, &str>(0))
                    })?,
                    title: r.get(1),
                    database: r.get(2),
                    server: r.get(3),
                    moved: r.get::<_, Option<ServerName>>(4).zip(r.get(5)),
                })
            })
            .collect()
    }

    /// In how many labs this user takes part (an LDAP account is shared).
    pub async fn labs_of_user(&self, username: &Username) -> Result<i64, StoreError> {
        let row = self
            .client()
            .await?
            .query_one(
                "SELECT count(*) FROM participants WHERE username = $1",
                &[username],
            )
            .await?;
        Ok(row.get(0))
    }

    pub async fn initial_password(
        &self,
        username: &Username,
    ) -> Result<Option<String>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT initial_password FROM credentials WHERE username = $1",
                &[username],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    pub async fn set_initial_password(
        &self,
        username: &Username,
        password: &str,
    ) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "INSERT INTO credentials (username, initial_password) VALUES ($1, $2)
                 ON CONFLICT (username) DO UPDATE
                 SET initial_password = $2, created_at = now(), mailed_at = NULL",
                &[username, &password],
            )
            .await?;
        Ok(())
    }

    pub async fn forget_initial_password(&self, username: &Username) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute("DELETE FROM credentials WHERE username = $1", &[username])
            .await?;
        Ok(())
    }

    /// Forgets the initial passwords of `lab`'s participants (handed
    /// out); how many were forgotten.
    pub async fn forget_lab_passwords(&self, lab: &LabId) -> Result<u64, StoreError> {
        Ok(self
            .client()
            .await?
            .execute(
                "DELETE FROM credentials WHERE username IN
                   (SELECT username FROM participants WHERE lab_id = $1)",
                &[lab],
            )
            .await?)
    }

    pub async fn record_apply(
        &self,
        lab: &LabId,
        changes: i32,
        summary: &serde_json::Value,
    ) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "INSERT INTO applies (lab_id, changes, summary) VALUES ($1, $2, $3)",
                &[lab, &changes, summary],
            )
            .await?;
        Ok(())
    }
}

/// What a participant needs to log in for the first time.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CredentialRecord {
    pub username: Username,
    pub name: String,
    pub email: String,
    pub database: PgName,
    pub server: ServerName,
    /// `None` once handed out and forgotten.
    pub initial_password: Option<String>,
    /// When it was put in a mail (it is mailed once per password).
    pub mailed_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When the initial password was set, in microseconds since 1970: the
    /// password a message is for.
    pub password_set: Option<i64>,
}

impl Store {
    pub async fn credentials(&self, lab: &LabId) -> Result<Vec<CredentialRecord>, StoreError> {
        self.credentials_where(lab, None).await
    }

    /// One participant's credentials (`None`: no such participant).
    pub async fn credential_of(
        &self,
        lab: &LabId,
        username: &str,
    ) -> Result<Option<CredentialRecord>, StoreError> {
        Ok(self
            .credentials_where(lab, Some(username))
            .await?
            .into_iter()
            .next())
    }

    async fn credentials_where(
        &self,
        lab: &LabId,
        username: Option<&str>,
    ) -> Result<Vec<CredentialRecord>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT p.username, p.name, p.database, d.server, c.initial_password, p.email,
                        c.mailed_at, (extract(epoch FROM c.created_at) * 1000000)::bigint
                 FROM participants p
                 JOIN lab_databases d ON d.lab_id = p.lab_id AND d.name = p.database
                 LEFT JOIN credentials c ON c.username = p.username
                 WHERE p.lab_id = $1 AND ($2::text IS NULL OR p.username = $2)
                 ORDER BY p.username",
                &[lab, &username],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(CredentialRecord {
                    username: column(r, 0, "participant", || {
                        format!("{lab}/{}", r.get::<_, &str>(0))
                    })?,
                    name: r.get(1),
                    database: r.get(2),
                    server: r.get(3),
                    initial_password: r.get(4),
                    email: r.get(5),
                    mailed_at: r.get(6),
                    password_set: r.get(7),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a_lab() -> crate::lab::Lab {
        let dir = std::env::temp_dir().join(format!("pglab-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("ref.sql"), "SELECT 1;").expect("write");
        let text = "id: demo\ntitle: Demo\nreference: {sql: ref.sql}\ntasks:\n  - id: one\n    title: One\n    checks: [{sql: SELECT true}]\n";
        crate::lab::parse("lab.yaml", text, &dir).expect("lab")
    }

    #[test]
    fn stored_labs_are_read_by_one_reader_that_names_bad_rows() {
        let lab = a_lab();
        let current = serde_json::to_value(StoredLab {
            format: LAB_FORMAT,
            lab: lab.clone(),
        })
        .expect("json");
        assert_eq!(read_lab("demo", current).expect("current"), lab);
        let old = serde_json::to_value(&lab).expect("json");
        assert_eq!(read_lab("demo", old).expect("format 0"), lab);
        for bad in [
            serde_json::json!({"format": 99, "lab": {}}),
            serde_json::json!({"id": "demo"}),
            serde_json::json!([1, 2]),
        ] {
            let e = read_lab("demo", bad).expect_err("refused").to_string();
            assert!(e.contains("lab \"demo\""), "{e}");
        }
    }
}
