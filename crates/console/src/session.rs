//! Server-side console sessions: the cookie holds only a random id.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use rand::RngCore;

use crate::ConsoleConfig;

/// A signed-in user.
#[derive(Debug, Clone)]
pub struct Session {
    pub username: String,
    pub tenant: String,
    pub profile: String,
    /// Sent back in `X-CSRF-Token` on every state change.
    pub csrf: String,
    last_seen: Instant,
}

/// Sessions by id, expiring after the idle timeout.
pub struct SessionStore {
    config: ConsoleConfig,
    sessions: Mutex<HashMap<String, Session>>,
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

impl SessionStore {
    pub fn new(config: ConsoleConfig) -> Self {
        Self { config, sessions: Mutex::default() }
    }

    /// Starts a session; returns its id (the cookie value).
    pub fn create(&self, username: &str, tenant: &str, profile: &str) -> (String, Session) {
        let id = random_hex(32);
        let session = Session {
            username: username.into(),
            tenant: tenant.into(),
            profile: profile.into(),
            csrf: random_hex(32),
            last_seen: Instant::now(),
        };
        let mut sessions = self.sessions.lock().expect("session lock");
        let idle = self.config.idle_timeout;
        sessions.retain(|_, s| s.last_seen.elapsed() < idle);
        while sessions.len() >= self.config.max_sessions {
            let Some(oldest) = sessions.iter().min_by_key(|(_, s)| s.last_seen).map(|(k, _)| k.clone()) else { break };
            sessions.remove(&oldest);
        }
        sessions.insert(id.clone(), session.clone());
        (id, session)
    }

    /// The live session `id`, touched; `None` if unknown or idle too long (then removed).
    pub fn get(&self, id: &str) -> Option<Session> {
        let mut sessions = self.sessions.lock().expect("session lock");
        let s = sessions.get_mut(id)?;
        if s.last_seen.elapsed() >= self.config.idle_timeout {
            sessions.remove(id);
            return None;
        }
        s.last_seen = Instant::now();
        Some(s.clone())
    }

    /// Ends a session on the server.
    pub fn remove(&self, id: &str) {
        self.sessions.lock().expect("session lock").remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn idle_timeout_logout_and_bound() {
        let store = SessionStore::new(ConsoleConfig { idle_timeout: Duration::from_millis(50), max_sessions: 2 });
        let (a, s) = store.create("alice", "acme", "admin");
        assert_eq!(store.get(&a).unwrap().csrf, s.csrf);
        assert!(store.get("forged").is_none());
        std::thread::sleep(Duration::from_millis(60));
        assert!(store.get(&a).is_none(), "idle timeout");
        let (b, _) = store.create("bob", "acme", "user");
        store.remove(&b);
        assert!(store.get(&b).is_none(), "logout ends it server-side");
        let ids: Vec<String> = (0..3).map(|_| store.create("x", "t", "user").0).collect();
        assert!(store.get(&ids[0]).is_none(), "oldest evicted beyond max_sessions");
        assert!(store.get(&ids[2]).is_some());
    }
}
