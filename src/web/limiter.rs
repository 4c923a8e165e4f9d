//! Failed password attempts, counted so that guessing is slow and nobody
//! can lock somebody else out.
//!
//! - The key is (username, client address): a student who fails as
//!   `admin` from the classroom's NAT address blocks only that pair, and a
//!   class behind one address is never blocked as a whole.
//! - A browser in which the user logged in before carries a signed
//!   "known device" cookie for that username; its attempts count on a key of
//!   their own, so a lab master is not locked out even when students fail
//!   with the lab master's name from the same address.
//! - Each attempt is counted before the password is checked and forgiven
//!   when it was right, so parallel attempts cannot slip past the limit.
//! - The attempts are counted in the control database: every pglab replica
//!   behind a load balancer applies the same limit. Usernames are cut to
//!   `MAX_NAME` characters in the key, and expired attempts are removed.
//! - IPv6 clients count per /64, the block one machine usually holds.
//! - A process counts a few attempts at once (`COUNTING_AT_ONCE`): a flood
//!   of guesses waits in memory, never on the control database's pool.

use super::WebError;
use crate::control::Store;
use std::net::IpAddr;

/// Seconds in which `PER_KEY` failed attempts are allowed per key.
pub const WINDOW_SECS: i64 = 300;
/// Failed attempts allowed per key in `WINDOW_SECS`.
pub const PER_KEY: i64 = 5;
/// Characters of a username used in a key.
pub const MAX_NAME: usize = 64;

/// Who attempts: the username as typed, the client, and whether the
/// browser showed a valid known-device cookie for that username.
pub struct Attempt<'a> {
    pub user: &'a str,
    pub addr: IpAddr,
    pub known_device: bool,
}

impl Attempt<'_> {
    pub fn key(&self) -> String {
        let user: String = self
            .user
            .trim()
            .to_lowercase()
            .chars()
            .take(MAX_NAME)
            .collect();
        if self.known_device {
            return format!("known:{user}");
        }
        match self.addr {
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
                let s = v6.segments();
                format!(
                    "user:{user}@{:x}:{:x}:{:x}:{:x}::/64",
                    s[0], s[1], s[2], s[3]
                )
            }
            IpAddr::V6(v6) => format!("user:{user}@{}", v6.to_canonical()),
            v4 => format!("user:{user}@{v4}"),
        }
    }
}

/// A counted attempt; call [`Limiter::forgive`] with it when the password
/// was right.
#[must_use]
pub struct Counted(String);

/// Attempts this process counts at once. Counting one takes a connection
/// of the control database's pool (8) and may wait for the key's lock:
/// under a flood of guesses the rest of the app keeps the other
/// connections, and the guesses wait here, in memory.
const COUNTING_AT_ONCE: usize = 3;
/// Longest an attempt waits for its turn.
const WAIT_FOR_TURN: std::time::Duration = std::time::Duration::from_secs(5);

/// The limiter (its counts are in the control database).
pub struct Limiter {
    counting: tokio::sync::Semaphore,
}

impl Default for Limiter {
    fn default() -> Self {
        Self {
            counting: tokio::sync::Semaphore::new(COUNTING_AT_ONCE),
        }
    }
}

impl Limiter {
    /// Counts an attempt, or refuses it with the seconds to wait first.
    pub async fn count(&self, store: &Store, attempt: &Attempt<'_>) -> Result<Counted, WebError> {
        let key = attempt.key();
        // Under a flood, a guess waits for its turn a while, then is sent
        // back (never queued without end).
        let turn = tokio::time::timeout(WAIT_FOR_TURN, self.counting.acquire()).await;
        let Ok(Ok(_turn)) = turn else {
            tracing::warn!(client = %attempt.addr, "password refused unchecked: too many attempts at once");
            return Err(WebError::TooManyAttempts(WAIT_FOR_TURN.as_secs()));
        };
        match store.count_attempt(&key, PER_KEY, WINDOW_SECS).await? {
            Ok(()) => Ok(Counted(key)),
            Err(wait) => {
                tracing::warn!(client = %attempt.addr, "password refused unchecked: too many failed attempts");
                Err(WebError::TooManyAttempts(wait))
            }
        }
    }

    /// The password was right: the key's failures are forgotten.
    pub async fn forgive(&self, store: &Store, counted: Counted) {
        if let Err(e) = store.forgive_attempts(&counted.0).await {
            tracing::warn!(error = %e, "could not forget failed attempts");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_per_user_address_and_known_device() {
        let at = |user, addr: [u8; 4], known_device| {
            Attempt {
                user,
                addr: IpAddr::from(addr),
                known_device,
            }
            .key()
        };
        assert_eq!(
            at("Admin ", [10, 0, 0, 1], false),
            at("admin", [10, 0, 0, 1], false)
        );
        assert_ne!(
            at("admin", [10, 0, 0, 1], false),
            at("admin", [10, 0, 0, 2], false)
        );
        assert_ne!(
            at("admin", [10, 0, 0, 1], false),
            at("bob", [10, 0, 0, 1], false)
        );
        assert_ne!(
            at("admin", [10, 0, 0, 1], false),
            at("admin", [10, 0, 0, 1], true)
        );
        assert!(at(&"x".repeat(10_000), [10, 0, 0, 1], false).len() < MAX_NAME + 40);
    }

    #[test]
    fn ipv6_counts_per_block() {
        let a = Attempt {
            user: "bob",
            addr: "2001:db8:1:2:aaaa::1".parse().expect("ip"),
            known_device: false,
        };
        let b = Attempt {
            addr: "2001:db8:1:2:bbbb::9".parse().expect("ip"),
            ..a
        };
        assert_eq!(a.key(), b.key());
    }
}
