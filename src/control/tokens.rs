//! Personal API tokens: their hashes, scopes, expiry and revocation.

use super::types::column;
use super::{Store, StoreError, TokenScope};
use chrono::{DateTime, Utc};
use tokio_postgres::Row;

#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenRecord {
    pub id: i64,
    pub name: String,
    pub owner: String,
    pub scope: TokenScope,
    /// The first characters of the token, for people to tell them apart.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

impl TokenRecord {
    /// Neither revoked nor expired at `now`.
    pub fn usable(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| e > now)
    }
}

const COLUMNS: &str =
    "id, name, owner, scope, prefix, created_at, expires_at, revoked_at, last_used_at";

fn token(r: &Row) -> Result<TokenRecord, StoreError> {
    let id: i64 = r.get(0);
    Ok(TokenRecord {
        id,
        name: r.get(1),
        owner: r.get(2),
        scope: column(r, 3, "api token", || id.to_string())?,
        prefix: r.get(4),
        created_at: r.get(5),
        expires_at: r.get(6),
        revoked_at: r.get(7),
        last_used_at: r.get(8),
    })
}

/// A token to record (its hash, never the token).
pub struct NewToken<'a> {
    pub name: &'a str,
    pub owner: &'a str,
    pub scope: TokenScope,
    pub hash: &'a str,
    pub prefix: &'a str,
    pub expires_at: Option<DateTime<Utc>>,
}

impl Store {
    pub async fn insert_token(&self, new: &NewToken<'_>) -> Result<TokenRecord, StoreError> {
        let row = self
            .client()
            .await?
            .query_one(
                &format!(
                    "INSERT INTO api_tokens (name, owner, scope, hash, prefix, expires_at)
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
                ),
                &[
                    &new.name,
                    &new.owner,
                    &new.scope,
                    &new.hash,
                    &new.prefix,
                    &new.expires_at,
                ],
            )
            .await?;
        token(&row)
    }

    /// The token with this hash, noting its use (to the minute: a script
    /// polling many times a second writes once a minute, and concurrent
    /// requests with one token do not queue on its row).
    pub async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                &format!(
                    "WITH used AS (
                       UPDATE api_tokens SET last_used_at = now()
                        WHERE hash = $1
                          AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute'))
                     SELECT {COLUMNS} FROM api_tokens WHERE hash = $1"
                ),
                &[&hash],
            )
            .await?;
        row.as_ref().map(token).transpose()
    }

    /// Tokens of `owner` (every token when `None`), newest first.
    pub async fn tokens(&self, owner: Option<&str>) -> Result<Vec<TokenRecord>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM api_tokens WHERE $1::text IS NULL OR owner = $1 ORDER BY id DESC"
                ),
                &[&owner],
            )
            .await?;
        rows.iter().map(token).collect()
    }

    /// Revokes token `id` (of `owner`, when given); `false` when there is
    /// no such token.
    pub async fn revoke_token(&self, id: i64, owner: Option<&str>) -> Result<bool, StoreError> {
        let n = self
            .client()
            .await?
            .execute(
                "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now())
                 WHERE id = $1 AND ($2::text IS NULL OR owner = $2)",
                &[&id, &owner],
            )
            .await?;
        Ok(n == 1)
    }
}
