//! Who calls the API: a lab master's personal token (its owner's role is
//! looked up again every minute, so a token of someone who left the lab
//! masters' group stops working), or a student with their lab password
//! (Basic). Every caller is rate limited: a token bucket per address, and
//! one per token.

use super::Problem;
use crate::control::{TokenRecord, TokenScope};
use crate::ident::Username;
use crate::web::session::Role;
use crate::web::AppState;
use crate::web::WebError;
use axum::http::{header, HeaderMap, StatusCode};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Callers remembered at most (the oldest makes room).
const MAX_CALLERS: usize = 20_000;
/// How long a token owner's role is trusted before LDAP is asked again.
const ROLE_TTL: Duration = Duration::from_secs(60);

/// A token owner's role as looked up, and when.
type KnownRoles = HashMap<String, (Option<Role>, Instant)>;

/// The API's memory: request buckets per caller, and token owners' roles.
#[derive(Default, Clone)]
pub struct ApiState {
    buckets: Arc<Mutex<HashMap<String, (f64, Instant)>>>,
    roles: Arc<Mutex<KnownRoles>>,
}

impl ApiState {
    /// Takes one request from `key`'s bucket of `per_minute`; the seconds
    /// to wait when it is empty.
    pub fn take(&self, key: &str, per_minute: f64) -> Result<(), u64> {
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if map.len() >= MAX_CALLERS && !map.contains_key(key) {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        let (tokens, last) = map.entry(key.to_string()).or_insert((per_minute, now));
        *tokens =
            (*tokens + now.duration_since(*last).as_secs_f64() * per_minute / 60.0).min(per_minute);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) * 60.0 / per_minute).ceil().max(1.0) as u64)
        }
    }

    fn cached_role(&self, owner: &str) -> Option<Option<Role>> {
        let map = self.roles.lock().unwrap_or_else(|e| e.into_inner());
        map.get(owner)
            .filter(|(_, at)| at.elapsed() < ROLE_TTL)
            .map(|(r, _)| *r)
    }

    fn remember_role(&self, owner: &str, role: Option<Role>) {
        let mut map = self.roles.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_CALLERS {
            map.retain(|_, (_, at)| at.elapsed() < ROLE_TTL);
        }
        map.insert(owner.to_string(), (role, Instant::now()));
    }
}

/// Who calls.
pub enum Caller {
    /// A personal token, and the role its owner holds now.
    Token(TokenRecord, Role),
    Student(Username),
}

impl Caller {
    /// A token whose owner holds at least `role` now (the role of the page
    /// the route mirrors) and whose scope covers `scope`.
    pub fn staff(&self, role: Role, scope: TokenScope) -> Result<&TokenRecord, Problem> {
        match self {
            Caller::Token(t, held) if *held < role => Err(Problem::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "this needs a {}'s token; the owner of this one ({}) is {}",
                    role.label(),
                    t.owner,
                    held.label()
                ),
            )),
            Caller::Token(t, _) if !t.scope.allows(scope) => Err(Problem::new(
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                format!(
                    "this needs a token of scope {scope}; this one is {}",
                    t.scope
                ),
            )),
            Caller::Token(t, _) => Ok(t),
            Caller::Student(_) => Err(Problem::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this is for lab masters' and staff's tokens",
            )),
        }
    }

    /// Who the request is made for, in logs and job records.
    pub fn name(&self) -> String {
        match self {
            Caller::Token(t, _) => format!("{} (token {})", t.owner, t.id),
            Caller::Student(u) => u.to_string(),
        }
    }
}

fn rate_limited(state: &AppState, key: &str) -> Result<(), Problem> {
    state
        .api
        .take(key, state.settings.api_rate_per_minute())
        .map_err(|wait| Problem {
            retry_after: Some(wait),
            ..Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many requests; try again in {wait} s"),
            )
        })
}

/// The role `owner` holds now: the bootstrap admin is a lab master; others
/// by their LDAP groups (asked at most once a minute).
async fn owner_role(state: &AppState, owner: &str) -> Result<Option<Role>, Problem> {
    if let Some(role) = state.api.cached_role(owner) {
        return Ok(role);
    }
    let role = crate::web::login::staff_role(state, owner).await?;
    state.api.remember_role(owner, role);
    Ok(role)
}

/// The caller of a request: a personal token, or a student's Basic login;
/// rate-limited per address first, then per token.
pub async fn caller(
    state: &AppState,
    headers: &HeaderMap,
    addr: SocketAddr,
) -> Result<Caller, Problem> {
    rate_limited(state, &format!("addr:{}", addr.ip()))?;
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if let Some(bearer) = auth.strip_prefix("Bearer ") {
        let token = token(state, bearer.trim()).await?;
        rate_limited(state, &format!("token:{}", token.id))?;
        let Some(role) = owner_role(state, &token.owner).await? else {
            return Err(Problem::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "the owner of this token ({}) is no longer a lab master or staff",
                    token.owner
                ),
            ));
        };
        return Ok(Caller::Token(token, role));
    }
    if auth.starts_with("Basic ") {
        let user = crate::web::submissions::basic_user(state, headers, addr).await?;
        return Ok(Caller::Student(user));
    }
    Err(Problem::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "send Authorization: Bearer <personal token> (or Basic with your lab password for your own hand-ins and progress)",
    ))
}

async fn token(state: &AppState, bearer: &str) -> Result<TokenRecord, Problem> {
    use crate::app::tokens::TokenRefused;
    if !state.settings.api_token.expose().is_empty()
        && crate::web::session::same(bearer, state.settings.api_token.expose())
    {
        return Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "shared_token",
            "the shared api_token only works for /api/labs/{lab}/generate; make a personal token: pglab token create NAME --owner USER --scope read",
        ));
    }
    match crate::app::tokens::check(&state.store, bearer)
        .await
        .map_err(WebError::from)?
    {
        Ok(t) => Ok(t),
        Err(why) => {
            let code = match why {
                TokenRefused::Unknown => "unknown_token",
                TokenRefused::Revoked => "revoked_token",
                TokenRefused::Expired => "expired_token",
            };
            Err(Problem::new(
                StatusCode::UNAUTHORIZED,
                code,
                why.to_string(),
            ))
        }
    }
}
