//! Personal API tokens: made (shown once), listed, revoked, and checked on
//! every API request.

use crate::control::{NewToken, Store, StoreError, TokenRecord, TokenScope};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

/// Every token starts with this, so that a leaked one is recognisable.
pub const PREFIX: &str = "pglab_";

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new token of `owner`: the record, and the token itself (shown once,
/// never stored).
pub async fn create(
    store: &Store,
    name: &str,
    owner: &str,
    scope: TokenScope,
    expires_at: Option<DateTime<Utc>>,
) -> Result<(TokenRecord, String), StoreError> {
    let secret = format!("{PREFIX}{}", crate::random::token());
    let shown: String = secret.chars().take(PREFIX.len() + 6).collect();
    let record = store
        .insert_token(&NewToken {
            name: name.trim(),
            owner,
            scope,
            hash: &hash(&secret),
            prefix: &shown,
            expires_at,
        })
        .await?;
    tracing::info!(id = record.id, owner, scope = %scope, "API token created");
    Ok((record, secret))
}

/// Why a token was not taken.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenRefused {
    #[error("unknown token")]
    Unknown,
    #[error("this token was revoked")]
    Revoked,
    #[error("this token expired")]
    Expired,
}

/// The usable token `presented` is, or why not.
pub async fn check(
    store: &Store,
    presented: &str,
) -> Result<Result<TokenRecord, TokenRefused>, StoreError> {
    if !presented.starts_with(PREFIX) {
        return Ok(Err(TokenRefused::Unknown));
    }
    let Some(t) = store.token_by_hash(&hash(presented)).await? else {
        return Ok(Err(TokenRefused::Unknown));
    };
    Ok(if t.revoked_at.is_some() {
        Err(TokenRefused::Revoked)
    } else if !t.usable(Utc::now()) {
        Err(TokenRefused::Expired)
    } else {
        Ok(t)
    })
}
