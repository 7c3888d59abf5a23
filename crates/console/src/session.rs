//! Server-side console sessions: the cookie holds only a random id.
//!
//! A session ends on sign-out, after the idle timeout, after its absolute lifetime
//! (however busy), and when its user is removed ([`SessionStore::end_user`]). What the
//! user may do is not frozen at sign-in: every request re-checks the user (see
//! `routes::SignedIn`), so a demotion takes effect at once too.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use model::secret::random_hex;

use crate::ConsoleConfig;

/// A signed-in user.
#[derive(Debug, Clone)]
pub struct Session {
    pub user_id: i64,
    pub username: String,
    pub tenant: String,
    /// The profile at sign-in; requests use the user's current one.
    pub profile: String,
    /// Sent back in `X-CSRF-Token` on every state change.
    pub csrf: String,
    created: Instant,
    last_seen: Instant,
}

/// Sessions by id, expiring after the idle timeout or the absolute lifetime.
pub struct SessionStore {
    config: ConsoleConfig,
    sessions: Mutex<HashMap<String, Session>>,
}

impl SessionStore {
    pub fn new(config: ConsoleConfig) -> Self {
        Self { config, sessions: Mutex::default() }
    }

    /// How long a session lasts at most.
    pub fn max_lifetime(&self) -> std::time::Duration {
        self.config.max_lifetime
    }

    /// Whether `s` is past its idle timeout or its absolute lifetime.
    fn expired(&self, s: &Session) -> bool {
        s.last_seen.elapsed() >= self.config.idle_timeout || s.created.elapsed() >= self.config.max_lifetime
    }

    /// Starts a session; returns its id (the cookie value).
    pub fn create(&self, user_id: i64, username: &str, tenant: &str, profile: &str) -> (String, Session) {
        let id = random_hex(32);
        let now = Instant::now();
        let session = Session {
            user_id,
            username: username.into(),
            tenant: tenant.into(),
            profile: profile.into(),
            csrf: random_hex(32),
            created: now,
            last_seen: now,
        };
        let mut sessions = self.sessions.lock().expect("session lock");
        sessions.retain(|_, s| !self.expired(s));
        while sessions.len() >= self.config.max_sessions {
            let Some(oldest) = sessions.iter().min_by_key(|(_, s)| s.last_seen).map(|(k, _)| k.clone()) else { break };
            sessions.remove(&oldest);
        }
        sessions.insert(id.clone(), session.clone());
        (id, session)
    }

    /// The live session `id`, touched; `None` if unknown or expired (then removed).
    pub fn get(&self, id: &str) -> Option<Session> {
        let mut sessions = self.sessions.lock().expect("session lock");
        let s = sessions.get(id)?;
        if self.expired(s) {
            sessions.remove(id);
            return None;
        }
        let s = sessions.get_mut(id)?;
        s.last_seen = Instant::now();
        Some(s.clone())
    }

    /// Whether session `id` still exists and is within its absolute lifetime, without
    /// touching it: for a server push that is open already.
    pub fn is_open(&self, id: &str) -> bool {
        let sessions = self.sessions.lock().expect("session lock");
        sessions.get(id).is_some_and(|s| s.created.elapsed() < self.config.max_lifetime)
    }

    /// Ends a session on the server.
    pub fn remove(&self, id: &str) {
        self.sessions.lock().expect("session lock").remove(id);
    }

    /// Ends every session of user `user_id` of `tenant` (the user was removed); returns
    /// how many there were.
    pub fn end_user(&self, tenant: &str, user_id: i64) -> usize {
        let mut sessions = self.sessions.lock().expect("session lock");
        let before = sessions.len();
        sessions.retain(|_, s| !(s.user_id == user_id && s.tenant == tenant));
        before - sessions.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn config(idle_ms: u64, max_lifetime_ms: u64, max_sessions: usize) -> ConsoleConfig {
        ConsoleConfig {
            idle_timeout: Duration::from_millis(idle_ms),
            max_lifetime: Duration::from_millis(max_lifetime_ms),
            max_sessions,
        }
    }

    #[test]
    fn idle_timeout_logout_and_bound() {
        let store = SessionStore::new(config(50, 60_000, 2));
        let (a, s) = store.create(1, "alice", "acme", "admin");
        assert_eq!(store.get(&a).unwrap().csrf, s.csrf);
        assert!(store.get("forged").is_none());
        std::thread::sleep(Duration::from_millis(60));
        assert!(store.get(&a).is_none(), "idle timeout");
        let (b, _) = store.create(2, "bob", "acme", "user");
        store.remove(&b);
        assert!(store.get(&b).is_none(), "logout ends it server-side");
        let ids: Vec<String> = (0..3).map(|_| store.create(3, "x", "t", "user").0).collect();
        assert!(store.get(&ids[0]).is_none(), "oldest evicted beyond max_sessions");
        assert!(store.get(&ids[2]).is_some());
    }

    #[test]
    fn a_busy_session_still_ends_at_its_absolute_lifetime() {
        let store = SessionStore::new(config(60_000, 150, 10));
        let (id, _) = store.create(1, "alice", "acme", "admin");
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(100) {
            assert!(store.get(&id).is_some(), "used within its lifetime");
            assert!(store.is_open(&id));
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(60));
        assert!(!store.is_open(&id));
        assert!(store.get(&id).is_none(), "over however busy");
    }

    #[test]
    fn ending_a_user_ends_all_its_sessions_and_only_those() {
        let store = SessionStore::new(config(60_000, 60_000, 10));
        let (a1, _) = store.create(7, "alice", "acme", "admin");
        let (a2, _) = store.create(7, "alice", "acme", "admin");
        let (b, _) = store.create(8, "bob", "acme", "admin");
        let (other, _) = store.create(7, "carol", "globex", "admin");
        assert_eq!(store.end_user("acme", 7), 2);
        assert!(store.get(&a1).is_none() && store.get(&a2).is_none() && !store.is_open(&a1));
        assert!(store.get(&b).is_some(), "another user");
        assert!(store.get(&other).is_some(), "the same id in another tenant");
    }
}
