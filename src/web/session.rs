//! Logins live in a signed cookie (HMAC-SHA256 with a key kept in the
//! control database, so every replica accepts it): HttpOnly, SameSite=Strict,
//! `Secure` when configured. Each session carries its own CSRF token that
//! every form sends back.

use super::{AppState, WebError};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const COOKIE: &str = "pglab_session";
/// Set at a successful login: the browser may keep trying that username
/// when others' failures block it from that address (see `web::limiter`).
pub const DEVICE_COOKIE: &str = "pglab_device";
const DEVICE_DAYS: i64 = 180;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Role {
    Student,
    Staff,
    Master,
}

impl Role {
    pub fn label(self) -> &'static str {
        match self {
            Role::Student => "student",
            Role::Staff => "staff",
            Role::Master => "lab master",
        }
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Session {
    pub user: String,
    pub role: Role,
    pub csrf: String,
    /// Unix seconds after which the cookie is refused.
    pub expires: i64,
}

/// The installation's cookie-signing key.
#[derive(Clone)]
pub struct SessionKey(Vec<u8>);

impl SessionKey {
    pub fn new(secret: &str) -> Self {
        Self(secret.as_bytes().to_vec())
    }

    fn mac(&self, payload: &str) -> Hmac<Sha256> {
        // HMAC accepts keys of any length.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("hmac key");
        mac.update(payload.as_bytes());
        mac
    }

    pub fn sign(&self, session: &Session) -> String {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(session).unwrap_or_default());
        let tag = URL_SAFE_NO_PAD.encode(self.mac(&payload).finalize().into_bytes());
        format!("{payload}.{tag}")
    }

    /// A value for the known-device cookie of `user` (see `web::limiter`).
    pub fn sign_device(&self, user: &str) -> String {
        let payload = URL_SAFE_NO_PAD.encode(format!("device:{}", user.trim().to_lowercase()));
        let tag = URL_SAFE_NO_PAD.encode(self.mac(&payload).finalize().into_bytes());
        format!("{payload}.{tag}")
    }

    /// Whether `value` is a known-device cookie of `user`.
    pub fn is_device_of(&self, value: &str, user: &str) -> bool {
        let Some((payload, tag)) = value.split_once('.') else {
            return false;
        };
        let Ok(tag) = URL_SAFE_NO_PAD.decode(tag) else {
            return false;
        };
        self.mac(payload).verify_slice(&tag).is_ok()
            && URL_SAFE_NO_PAD.decode(payload).ok().as_deref()
                == Some(format!("device:{}", user.trim().to_lowercase()).as_bytes())
    }

    /// The session in `value` if its signature is right and it has not expired.
    pub fn verify(&self, value: &str) -> Option<Session> {
        let (payload, tag) = value.split_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        self.mac(payload).verify_slice(&tag).ok()?;
        let session: Session =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        (session.expires > chrono::Utc::now().timestamp()).then_some(session)
    }
}

pub fn random_token() -> String {
    crate::random::token()
}

/// Compares two strings without stopping at the first difference.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A `Set-Cookie` value; `max_age` 0 deletes the cookie.
pub fn cookie(state: &AppState, name: &str, value: &str, max_age: i64) -> String {
    let secure = if state.settings.web.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
}

pub fn read_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl Session {
    pub fn new(user: String, role: Role, hours: u32) -> Self {
        Self {
            user,
            role,
            csrf: random_token(),
            expires: chrono::Utc::now().timestamp() + i64::from(hours) * 3600,
        }
    }

    /// Refuses the request unless the session has at least `role`.
    pub fn require(&self, role: Role) -> Result<(), WebError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(WebError::Forbidden)
        }
    }

    /// Refuses a form whose CSRF token is missing or not this session's.
    pub fn check_csrf(&self, token: &str) -> Result<(), WebError> {
        if same(token, &self.csrf) {
            Ok(())
        } else {
            Err(WebError::Csrf)
        }
    }
}

/// The logged-in user, or `None`.
pub struct MaybeSession(pub Option<Session>);

impl FromRequestParts<AppState> for MaybeSession {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, WebError> {
        Ok(MaybeSession(
            read_cookie(&parts.headers, COOKIE).and_then(|v| state.sessions.verify(v)),
        ))
    }
}

/// Handlers that take a `Session` need a login; without one the browser is
/// sent to the login page and comes back afterwards.
impl FromRequestParts<AppState> for Session {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, WebError> {
        match MaybeSession::from_request_parts(parts, state).await?.0 {
            Some(s) => Ok(s),
            None => Err(WebError::LoginRequired(
                parts
                    .uri
                    .path_and_query()
                    .map_or("/".to_string(), |p| p.to_string()),
            )),
        }
    }
}

/// A lab master's session: handlers that take it are for lab masters only
/// (403 for others, the login page without a session).
pub struct Master(pub Session);
/// A staff member's (or lab master's) session: read-only pages.
pub struct Staff(pub Session);

impl FromRequestParts<AppState> for Master {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, WebError> {
        let s = Session::from_request_parts(parts, state).await?;
        s.require(Role::Master)?;
        Ok(Master(s))
    }
}

impl FromRequestParts<AppState> for Staff {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, WebError> {
        let s = Session::from_request_parts(parts, state).await?;
        s.require(Role::Staff)?;
        Ok(Staff(s))
    }
}

/// A student's session with their username: handlers that take it are for
/// participants only (staff have no lab database of their own: 403).
pub struct Student {
    pub session: Session,
    pub user: crate::ident::Username,
}

impl FromRequestParts<AppState> for Student {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, WebError> {
        let session = Session::from_request_parts(parts, state).await?;
        if session.role != Role::Student {
            return Err(WebError::Forbidden);
        }
        let user = crate::ident::Username::parse(&session.user).map_err(|_| WebError::Forbidden)?;
        Ok(Student { session, user })
    }
}

/// The password attempt of `user` from this request, for the limiter.
pub fn attempt<'a>(
    state: &AppState,
    headers: &HeaderMap,
    addr: std::net::SocketAddr,
    user: &'a str,
) -> super::limiter::Attempt<'a> {
    super::limiter::Attempt {
        user,
        addr: client_ip(state, headers, addr),
        known_device: read_cookie(headers, DEVICE_COOKIE)
            .is_some_and(|v| state.sessions.is_device_of(v, user)),
    }
}

/// The client's address: the TCP peer, or behind a trusted reverse proxy
/// the right-most `X-Forwarded-For` entry that is not a trusted proxy
/// (entries to its left are whatever the client claimed).
pub fn client_ip(
    state: &AppState,
    headers: &HeaderMap,
    addr: std::net::SocketAddr,
) -> std::net::IpAddr {
    forwarded_client(&state.settings.web.trusted_proxies, headers, addr.ip())
}

/// The client behind `proxies` (see `client_ip`).
fn forwarded_client(
    proxies: &[crate::settings::AddressBlock],
    headers: &HeaderMap,
    peer: std::net::IpAddr,
) -> std::net::IpAddr {
    let trusted = |ip: &std::net::IpAddr| proxies.iter().any(|b| b.contains(*ip));
    if !trusted(&peer) {
        return peer;
    }
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .map(|v| v.to_str().unwrap_or(""))
        .flat_map(|v| v.split(','))
        .collect();
    // From the right: proxies' entries are skipped; the first other one is
    // the client. An entry that is no address (a port, `unknown`) ends the
    // walk at the proxy: what lies left of it the client may have written.
    for entry in entries.into_iter().rev() {
        match entry.trim().parse::<std::net::IpAddr>() {
            Ok(ip) if trusted(&ip) => continue,
            Ok(ip) => return ip,
            Err(_) => break,
        }
    }
    peer
}

/// The known-device cookie to set after `user` logged in.
pub fn device_cookie(state: &AppState, user: &str) -> String {
    cookie(
        state,
        DEVICE_COOKIE,
        &state.sessions.sign_device(user),
        DEVICE_DAYS * 86_400,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_behind_trusted_proxies() {
        let proxies: Vec<crate::settings::AddressBlock> = vec![
            [10, 0, 0, 1].into(),
            "172.28.0.0/24".to_string().try_into().unwrap(),
        ];
        let client = |xff: &[&str], peer: [u8; 4]| {
            let mut h = HeaderMap::new();
            for v in xff {
                h.append("x-forwarded-for", v.parse().unwrap());
            }
            forwarded_client(&proxies, &h, peer.into()).to_string()
        };
        // Not from a proxy: the header is the client's word only.
        assert_eq!(client(&["9.9.9.9"], [8, 8, 8, 8]), "8.8.8.8");
        assert_eq!(client(&["1.2.3.4"], [10, 0, 0, 1]), "1.2.3.4");
        // The right-most entry that is no proxy; what the client put left
        // of it does not count.
        assert_eq!(
            client(&["6.6.6.6, 1.2.3.4, 172.28.0.7"], [10, 0, 0, 1]),
            "1.2.3.4"
        );
        assert_eq!(client(&["6.6.6.6", "1.2.3.4"], [172, 28, 0, 9]), "1.2.3.4");
        // An entry that is no address stops the walk at the proxy.
        assert_eq!(
            client(&["6.6.6.6, 1.2.3.4:5555"], [10, 0, 0, 1]),
            "10.0.0.1"
        );
        assert_eq!(client(&["6.6.6.6, unknown"], [10, 0, 0, 1]), "10.0.0.1");
        assert_eq!(client(&[], [10, 0, 0, 1]), "10.0.0.1");
    }

    #[test]
    fn signed_sessions_cannot_be_forged() {
        let key = SessionKey::new("k1");
        let s = Session::new("alice".into(), Role::Student, 1);
        let v = key.sign(&s);
        assert_eq!(key.verify(&v).map(|s| s.user), Some("alice".to_string()));
        assert!(SessionKey::new("k2").verify(&v).is_none());
        // A student who edits the payload to become lab master is refused.
        let forged = Session {
            role: Role::Master,
            ..s.clone()
        };
        let payload = key.sign(&forged);
        let tampered = format!(
            "{}.{}",
            payload.split_once('.').map_or("", |p| p.0),
            v.split_once('.').map_or("", |p| p.1)
        );
        assert!(key.verify(&tampered).is_none());
        let expired = Session { expires: 0, ..s };
        assert!(key.verify(&key.sign(&expired)).is_none());
    }
}
