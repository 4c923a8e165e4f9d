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
use std::net::{IpAddr, SocketAddr};
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
        self.bucket(key, per_minute, true)
    }

    /// Whether `key`'s bucket has a request left, without taking it.
    fn peek(&self, key: &str, per_minute: f64) -> Result<(), u64> {
        self.bucket(key, per_minute, false)
    }

    fn bucket(&self, key: &str, per_minute: f64, take: bool) -> Result<(), u64> {
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if map.len() >= MAX_CALLERS && !map.contains_key(key) {
            // A bucket unused for a minute is full again: forgetting it
            // changes nothing. Under a flood of new callers, all go.
            map.retain(|_, (_, last)| now.duration_since(*last) < Duration::from_secs(60));
            if map.len() >= MAX_CALLERS {
                map.clear();
            }
        }
        let (tokens, last) = map.entry(key.to_string()).or_insert((per_minute, now));
        *tokens =
            (*tokens + now.duration_since(*last).as_secs_f64() * per_minute / 60.0).min(per_minute);
        *last = now;
        if *tokens >= 1.0 {
            if take {
                *tokens -= 1.0;
            }
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

fn limited(wait: u64) -> Problem {
    Problem {
        retry_after: Some(wait),
        ..Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many requests; try again in {wait} s"),
        )
    }
}

/// The key of a client address: IPv4 as is, IPv6 by its /64 (one host
/// may have a whole /64 to rotate through).
fn address_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = a.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
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

/// The caller of a request: a personal token, or a participant's Basic
/// login. Requests with valid credentials count against the token's (or
/// the participant's) own bucket; requests without, or with wrong ones,
/// against their address's bucket, which is looked at first: an address
/// that used it up waits before any token is looked up, and nobody's
/// flood of bad requests slows down callers who authenticate.
pub async fn caller(
    state: &AppState,
    headers: &HeaderMap,
    addr: SocketAddr,
) -> Result<Caller, Problem> {
    let per_minute = state.settings.api_rate_per_minute();
    let ip = crate::web::session::client_ip(state, headers, addr);
    let failures = format!("addr:{}", address_key(ip));
    state.api.peek(&failures, per_minute).map_err(limited)?;
    match authenticate(state, headers, addr).await {
        Ok((caller, key)) => {
            state.api.take(&key, per_minute).map_err(limited)?;
            Ok(caller)
        }
        Err(problem) => {
            let _ = state.api.take(&failures, per_minute);
            Err(problem)
        }
    }
}

/// Who the credentials are, and the key of their bucket.
async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    addr: SocketAddr,
) -> Result<(Caller, String), Problem> {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if let Some(bearer) = auth.strip_prefix("Bearer ") {
        let token = token(state, bearer.trim()).await?;
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
        let key = format!("token:{}", token.id);
        return Ok((Caller::Token(token, role), key));
    }
    if auth.starts_with("Basic ") {
        let user = crate::web::submissions::basic_user(state, headers, addr).await?;
        let key = format!("user:{user}");
        return Ok((Caller::Student(user), key));
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

/// What a route needs of a token: the role of the page it mirrors, and a
/// scope.
pub trait Need: Send + Sync {
    const ROLE: Role;
    const SCOPE: TokenScope;
}

macro_rules! need {
    ($($name:ident => $role:ident, $scope:ident;)+) => {$(
        pub struct $name;
        impl Need for $name {
            const ROLE: Role = Role::$role;
            const SCOPE: TokenScope = TokenScope::$scope;
        }
    )+};
}

need! {
    MasterWrite => Master, Write;
    MasterAdmin => Master, Admin;
}

/// A token caller already checked against `N`, with the base address for
/// links: as an extractor it runs before the body is read, so that nobody
/// else makes pglab read a large body.
pub struct Allowed<N>(pub Caller, pub String, pub std::marker::PhantomData<N>);

impl<N: Need> axum::extract::FromRequestParts<AppState> for Allowed<N> {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Problem> {
        let super::Who(caller, base) = super::Who::from_request_parts(parts, state).await?;
        caller.staff(N::ROLE, N::SCOPE)?;
        Ok(Allowed(caller, base, std::marker::PhantomData))
    }
}
