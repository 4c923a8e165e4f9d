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
//! - Memory is bounded: usernames are cut to `MAX_NAME` characters in the
//!   key, and at most `MAX_KEYS` keys are kept; when that many are in use,
//!   the key whose last failure is oldest makes room (never a refusal, so
//!   flooding the limiter locks nobody out; it only costs the flooder).
//! - IPv6 clients count per /64, the block one machine usually holds.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const WINDOW: Duration = Duration::from_secs(300);
/// Failed attempts allowed per key in `WINDOW`.
pub const PER_KEY: usize = 5;
/// Characters of a username used in a key.
pub const MAX_NAME: usize = 64;
/// Keys kept at most.
pub const MAX_KEYS: usize = 50_000;

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

#[derive(Default)]
pub struct Limiter(Mutex<HashMap<String, VecDeque<Instant>>>);

impl Limiter {
    /// Counts an attempt, or says how many seconds to wait first.
    pub fn count(&self, attempt: &Attempt) -> Result<Counted, u64> {
        let key = attempt.key();
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if !map.contains_key(&key) && map.len() >= MAX_KEYS {
            map.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < WINDOW));
            if map.len() >= MAX_KEYS {
                tracing::warn!("login limiter full: the oldest key makes room");
                let oldest = map
                    .iter()
                    .min_by_key(|(_, q)| q.back().copied())
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    map.remove(&k);
                }
            }
        }
        let q = map.entry(key.clone()).or_default();
        while q.front().is_some_and(|t| now.duration_since(*t) >= WINDOW) {
            q.pop_front();
        }
        if q.len() >= PER_KEY {
            let oldest = q.front().copied().unwrap_or(now);
            return Err((WINDOW - now.duration_since(oldest)).as_secs() + 1);
        }
        q.push_back(now);
        Ok(Counted(key))
    }

    /// The password was right: the key's failures are forgotten.
    pub fn forgive(&self, counted: Counted) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&counted.0);
    }

    /// Keys in use (for tests).
    pub fn len(&self) -> usize {
        self.0.lock().map_or(0, |m| m.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(user: &str, addr: [u8; 4], known: bool) -> Attempt<'_> {
        Attempt {
            user,
            addr: IpAddr::from(addr),
            known_device: known,
        }
    }

    #[test]
    fn failures_block_one_user_at_one_address_only() {
        let l = Limiter::default();
        for _ in 0..PER_KEY {
            let _failed = l
                .count(&attempt("admin", [10, 0, 0, 1], false))
                .expect("counted");
        }
        assert!(l.count(&attempt("Admin ", [10, 0, 0, 1], false)).is_err());
        // The same name from elsewhere, a classmate from the same address,
        // and the lab master's known browser still get in.
        let other = l
            .count(&attempt("admin", [10, 0, 0, 2], false))
            .expect("other address");
        l.forgive(other);
        let mate = l
            .count(&attempt("bob", [10, 0, 0, 1], false))
            .expect("classmate");
        l.forgive(mate);
        let known = l
            .count(&attempt("admin", [10, 0, 0, 1], true))
            .expect("known device");
        l.forgive(known);
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

    #[test]
    fn parallel_attempts_all_count() {
        let l = std::sync::Arc::new(Limiter::default());
        let admitted: usize = (0..40)
            .map(|_| {
                let l = std::sync::Arc::clone(&l);
                std::thread::spawn(move || l.count(&attempt("bob", [10, 0, 0, 1], false)).is_ok())
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| usize::from(h.join().expect("thread")))
            .sum();
        assert_eq!(admitted, PER_KEY);
    }

    #[test]
    fn memory_is_bounded() {
        let l = Limiter::default();
        let long = "x".repeat(10_000);
        let _counted = l
            .count(&attempt(&long, [10, 0, 0, 1], false))
            .expect("counted");
        assert!(attempt(&long, [10, 0, 0, 1], false).key().len() < MAX_NAME + 40);
        for i in 0..MAX_KEYS {
            let name = format!("u{i}");
            let _counted = l.count(&attempt(&name, [10, 0, 0, 1], false));
        }
        assert_eq!(l.len(), MAX_KEYS);
        // A full limiter refuses nobody: the oldest key makes room.
        let new = l
            .count(&attempt("new", [10, 0, 0, 1], false))
            .expect("room made");
        assert_eq!(l.len(), MAX_KEYS);
        l.forgive(new);
    }
}
