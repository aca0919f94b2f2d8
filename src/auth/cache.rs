//! Verified credentials kept in process memory for a few seconds (`auth.cache_ttl_secs`), so a
//! request does not cost a database round trip to say who is calling.
//!
//! What that trades away, and how it is bounded:
//! - a key revoked or a session ended **on this instance** is forgotten at once (the handler
//!   that ended it calls [`AuthCache::forget_key`] & co. after its transaction committed);
//! - a change made elsewhere (another instance, the `vouch keys revoke` command, a suspension
//!   on another instance) takes effect here when the entry runs out, at most the TTL later;
//! - a portal session is never trusted past its own expiry.
//!
//! Only positive answers are kept (an unknown token always asks the database), keyed by the
//! SHA-256 of the token, never the token itself.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::domain::api_key::Role;

/// Who a bearer token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Key { id: String, role: Role },
    Ambassador { session_id: String, ambassador_id: String },
}

/// Entries kept at most; past it, stale ones are dropped, and if that is not enough, all.
const MAX_ENTRIES: usize = 10_000;

struct Entry {
    identity: Identity,
    until: Instant,
}

#[derive(Default)]
struct State {
    entries: HashMap<[u8; 32], Entry>,
    /// Counts evictions: an answer read from the database before an eviction is not kept
    /// after it (it may be the very state the eviction is about).
    generation: u64,
}

pub struct AuthCache {
    ttl: Duration,
    state: Mutex<State>,
}

/// A lookup that found nothing: what [`AuthCache::keep`] needs to keep the database's answer.
pub struct Miss {
    digest: [u8; 32],
    generation: u64,
}

impl AuthCache {
    /// A cache trusting answers for `ttl`; zero keeps nothing (every request asks the database).
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, state: Mutex::new(State::default()) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The map holds no invariant a panicking holder could break half-way.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The identity verified for `token` within the TTL, or what to keep the answer under.
    pub fn lookup(&self, token: &str) -> Result<Identity, Miss> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let state = self.state();
        match state.entries.get(&digest) {
            Some(e) if e.until > Instant::now() => Ok(e.identity.clone()),
            _ => Err(Miss { digest, generation: state.generation }),
        }
    }

    /// Keeps the database's answer for the TTL (or until `expires`, if sooner), unless
    /// something was evicted since the lookup.
    pub fn keep(&self, miss: Miss, identity: Identity, expires: Option<Instant>) {
        if self.ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let until = expires.map_or(now + self.ttl, |e| e.min(now + self.ttl));
        let mut state = self.state();
        if state.generation != miss.generation {
            return;
        }
        if state.entries.len() >= MAX_ENTRIES {
            state.entries.retain(|_, e| e.until > now);
            if state.entries.len() >= MAX_ENTRIES {
                state.entries.clear();
            }
        }
        state.entries.insert(miss.digest, Entry { identity, until });
    }

    fn forget(&self, matches: impl Fn(&Identity) -> bool) {
        let mut state = self.state();
        state.generation += 1;
        state.entries.retain(|_, e| !matches(&e.identity));
    }

    /// An API key was revoked.
    pub fn forget_key(&self, key_id: &str) {
        self.forget(|i| matches!(i, Identity::Key { id, .. } if id == key_id));
    }

    /// A portal session ended (sign-out).
    pub fn forget_session(&self, session_id: &str) {
        self.forget(|i| matches!(i, Identity::Ambassador { session_id: s, .. } if s == session_id));
    }

    /// An ambassador's access may have changed (suspended, closed, e-mail changed: their
    /// sessions end or stop counting).
    pub fn forget_ambassador(&self, ambassador_id: &str) {
        self.forget(|i| matches!(i, Identity::Ambassador { ambassador_id: a, .. } if a == ambassador_id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> Identity {
        Identity::Key { id: id.into(), role: Role::Staff }
    }

    fn session(s: &str, a: &str) -> Identity {
        Identity::Ambassador { session_id: s.into(), ambassador_id: a.into() }
    }

    fn cached(cache: &AuthCache, token: &str, identity: Identity) {
        let miss = cache.lookup(token).unwrap_err();
        cache.keep(miss, identity, None);
    }

    #[test]
    fn answers_within_the_ttl_and_forgets_what_was_ended() {
        let cache = AuthCache::new(Duration::from_secs(60));
        cached(&cache, "vk_a", key("a"));
        cached(&cache, "vk_b", key("b"));
        cached(&cache, "vp_1", session("s1", "amb1"));
        cached(&cache, "vp_2", session("s2", "amb1"));
        cached(&cache, "vp_3", session("s3", "amb2"));
        assert_eq!(cache.lookup("vk_a").ok(), Some(key("a")));
        assert!(cache.lookup("vk_unknown").is_err());

        cache.forget_key("a");
        assert!(cache.lookup("vk_a").is_err());
        assert_eq!(cache.lookup("vk_b").ok(), Some(key("b")));

        cache.forget_session("s3");
        assert!(cache.lookup("vp_3").is_err());
        assert!(cache.lookup("vp_1").is_ok());

        cache.forget_ambassador("amb1");
        assert!(cache.lookup("vp_1").is_err() && cache.lookup("vp_2").is_err());
        assert!(cache.lookup("vk_b").is_ok());
    }

    #[test]
    fn an_answer_read_before_an_eviction_is_not_kept() {
        let cache = AuthCache::new(Duration::from_secs(60));
        let miss = cache.lookup("vk_a").unwrap_err();
        cache.forget_key("a"); // revoked while the lookup was reading the database
        cache.keep(miss, key("a"), None);
        assert!(cache.lookup("vk_a").is_err());
    }

    #[test]
    fn entries_run_out_with_the_ttl_or_the_session_expiry() {
        let cache = AuthCache::new(Duration::from_millis(30));
        cached(&cache, "vk_a", key("a"));
        let miss = cache.lookup("vp_1").unwrap_err();
        cache.keep(miss, session("s1", "amb1"), Some(Instant::now()));
        assert!(cache.lookup("vp_1").is_err());
        assert!(cache.lookup("vk_a").is_ok());
        std::thread::sleep(Duration::from_millis(40));
        assert!(cache.lookup("vk_a").is_err());

        let off = AuthCache::new(Duration::ZERO);
        cached(&off, "vk_a", key("a"));
        assert!(off.lookup("vk_a").is_err());
    }
}
