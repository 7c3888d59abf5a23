//! Server-side console sessions: the cookie holds only a random id; the store holds the
//! session under the id's SHA-256, so that every node of a cluster knows it.
//!
//! A session ends on sign-out, after the idle timeout, after its absolute lifetime
//! (however busy), and when its user is removed ([`SessionStore::end_user`]). What the
//! user may do is not frozen at sign-in: every request re-checks the user (see
//! `routes::SignedIn`), so a demotion takes effect at once too. "Last seen" is written
//! at most every [`touch_interval`] (a request needs a read, not a write).

use std::sync::Arc;
use std::time::Duration;

use model::secret::{hash_secret, random_hex};
use store::SharedStore;
use store::sessions::SessionRecord;

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
    created_ms: i64,
}

impl From<SessionRecord> for Session {
    fn from(r: SessionRecord) -> Self {
        Self {
            user_id: r.user_id,
            username: r.username,
            tenant: r.tenant,
            profile: r.profile,
            csrf: r.csrf,
            created_ms: r.created_ms,
        }
    }
}

/// How stale a session's stored "last seen" may get: a quarter of the idle timeout, at
/// most a minute.
fn touch_interval(idle_timeout: Duration) -> i64 {
    (idle_timeout / 4).min(Duration::from_secs(60)).as_millis() as i64
}

/// Milliseconds since the Unix epoch. The wall clock in service; tests drive their own,
/// so that expiry is checked at exact instants rather than by sleeping on a busy machine.
type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Sessions by id, expiring after the idle timeout or the absolute lifetime.
pub struct SessionStore {
    config: ConsoleConfig,
    store: SharedStore,
    clock: Clock,
}

impl SessionStore {
    pub fn new(config: ConsoleConfig, store: SharedStore) -> Self {
        Self::with_clock(config, store, Arc::new(|| chrono::Utc::now().timestamp_millis()))
    }

    fn with_clock(config: ConsoleConfig, store: SharedStore, clock: Clock) -> Self {
        Self { config, store, clock }
    }

    fn now_ms(&self) -> i64 {
        (self.clock)()
    }

    /// How long a session lasts at most.
    pub fn max_lifetime(&self) -> Duration {
        self.config.max_lifetime
    }

    fn ms(d: Duration) -> i64 {
        d.as_millis().min(i64::MAX as u128) as i64
    }

    /// Starts a session; returns its id (the cookie value).
    pub async fn create(
        &self,
        user_id: i64,
        username: &str,
        tenant: &str,
        profile: &str,
    ) -> Result<(String, Session), store::StoreError> {
        let id = random_hex(32);
        let now = self.now_ms();
        let record = SessionRecord {
            id_hash: hash_secret(id.as_bytes()),
            tenant: tenant.into(),
            user_id,
            username: username.into(),
            profile: profile.into(),
            csrf: random_hex(32),
            created_ms: now,
            last_seen_ms: now,
        };
        // Expired sessions go first, so that they do not count against the bound.
        let (idle, max) = (Self::ms(self.config.idle_timeout), Self::ms(self.config.max_lifetime));
        self.store.purge_sessions(now.saturating_sub(idle), now.saturating_sub(max)).await?;
        self.store.insert_session(record.clone(), self.config.max_sessions).await?;
        Ok((id, record.into()))
    }

    /// The live session `id`, touched; `None` if unknown or expired (then removed).
    pub async fn get(&self, id: &str) -> Result<Option<Session>, store::StoreError> {
        let id_hash = hash_secret(id.as_bytes());
        let Some(record) = self.store.session(&id_hash).await? else { return Ok(None) };
        let now = self.now_ms();
        let idle = now - record.last_seen_ms;
        if idle >= Self::ms(self.config.idle_timeout) || now - record.created_ms >= Self::ms(self.config.max_lifetime) {
            self.store.delete_session(&id_hash).await?;
            return Ok(None);
        }
        if idle >= touch_interval(self.config.idle_timeout) {
            self.store.touch_session(&id_hash, now).await?;
        }
        Ok(Some(record.into()))
    }

    /// Whether session `id` still exists and is within its absolute lifetime, without
    /// touching it: for a server push that is open already. `created_ms` is the session's,
    /// so that no read is needed once the lifetime is over.
    pub async fn is_open(&self, id: &str, session: &Session) -> bool {
        if self.now_ms() - session.created_ms >= Self::ms(self.config.max_lifetime) {
            return false;
        }
        matches!(self.store.session(&hash_secret(id.as_bytes())).await, Ok(Some(_)))
    }

    /// Ends a session on the server.
    pub async fn remove(&self, id: &str) -> Result<(), store::StoreError> {
        self.store.delete_session(&hash_secret(id.as_bytes())).await
    }

    /// Ends every session of user `user_id` of `tenant` (the user was removed); returns
    /// how many there were.
    pub async fn end_user(&self, tenant: &str, user_id: i64) -> Result<u64, store::StoreError> {
        self.store.delete_user_sessions(tenant, user_id).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};

    use super::*;

    fn config(idle_ms: u64, max_lifetime_ms: u64, max_sessions: usize) -> ConsoleConfig {
        ConsoleConfig {
            idle_timeout: Duration::from_millis(idle_ms),
            max_lifetime: Duration::from_millis(max_lifetime_ms),
            max_sessions,
        }
    }

    /// A clock the test moves by hand, starting at a plausible wall-clock time.
    #[derive(Clone)]
    struct ManualClock(Arc<AtomicI64>);

    impl ManualClock {
        fn new() -> Self {
            Self(Arc::new(AtomicI64::new(1_780_000_000_000)))
        }

        fn advance(&self, ms: i64) {
            self.0.fetch_add(ms, Ordering::SeqCst);
        }

        fn sessions(&self, config: ConsoleConfig, store: SharedStore) -> SessionStore {
            let now = self.0.clone();
            SessionStore::with_clock(config, store, Arc::new(move || now.load(Ordering::SeqCst)))
        }
    }

    #[tokio::test]
    async fn idle_timeout_logout_and_bound() {
        for engine in store::testing::engines().await {
            let clock = ManualClock::new();
            let sessions = clock.sessions(config(200, 60_000, 2), engine.store.clone());
            let (a, s) = sessions.create(1, "alice", "acme", "admin").await.unwrap();
            assert_eq!(sessions.get(&a).await.unwrap().unwrap().csrf, s.csrf);
            assert!(sessions.get("forged").await.unwrap().is_none());
            // Used every 100 ms (touched every 50): alive after 400 ms, and 1 ms short of
            // the idle timeout after the last use.
            for _ in 0..4 {
                clock.advance(100);
                assert!(sessions.get(&a).await.unwrap().is_some(), "{}: in use", engine.name);
            }
            clock.advance(199);
            assert!(sessions.get(&a).await.unwrap().is_some(), "{}: within the idle timeout", engine.name);
            clock.advance(200);
            assert!(sessions.get(&a).await.unwrap().is_none(), "{}: idle timeout", engine.name);
            let (b, _) = sessions.create(2, "bob", "acme", "user").await.unwrap();
            sessions.remove(&b).await.unwrap();
            assert!(sessions.get(&b).await.unwrap().is_none(), "logout ends it server-side");
            let mut ids = Vec::new();
            for _ in 0..3 {
                ids.push(sessions.create(3, "x", "t", "user").await.unwrap().0);
                clock.advance(5);
            }
            assert!(sessions.get(&ids[0]).await.unwrap().is_none(), "oldest evicted beyond max_sessions");
            assert!(sessions.get(&ids[1]).await.unwrap().is_some());
            assert!(sessions.get(&ids[2]).await.unwrap().is_some());
        }
    }

    #[tokio::test]
    async fn a_busy_session_still_ends_at_its_absolute_lifetime() {
        for engine in store::testing::engines().await {
            let clock = ManualClock::new();
            let sessions = clock.sessions(config(60_000, 300, 10), engine.store.clone());
            let (id, session) = sessions.create(1, "alice", "acme", "admin").await.unwrap();
            for _ in 0..14 {
                clock.advance(20);
                assert!(sessions.get(&id).await.unwrap().is_some(), "used within its lifetime");
                assert!(sessions.is_open(&id, &session).await);
            }
            clock.advance(19);
            assert!(sessions.is_open(&id, &session).await, "1 ms short of its lifetime");
            clock.advance(1);
            assert!(!sessions.is_open(&id, &session).await);
            assert!(sessions.get(&id).await.unwrap().is_none(), "over however busy");
        }
    }

    #[tokio::test]
    async fn ending_a_user_ends_all_its_sessions_and_only_those() {
        for engine in store::testing::engines().await {
            let sessions = SessionStore::new(config(60_000, 60_000, 10), engine.store.clone());
            let (a1, s1) = sessions.create(7, "alice", "acme", "admin").await.unwrap();
            let (a2, _) = sessions.create(7, "alice", "acme", "admin").await.unwrap();
            let (b, _) = sessions.create(8, "bob", "acme", "admin").await.unwrap();
            let (other, _) = sessions.create(7, "carol", "globex", "admin").await.unwrap();
            assert_eq!(sessions.end_user("acme", 7).await.unwrap(), 2);
            assert!(sessions.get(&a1).await.unwrap().is_none() && sessions.get(&a2).await.unwrap().is_none());
            assert!(!sessions.is_open(&a1, &s1).await);
            assert!(sessions.get(&b).await.unwrap().is_some(), "another user");
            assert!(sessions.get(&other).await.unwrap().is_some(), "the same id in another tenant");
        }
    }

    #[tokio::test]
    async fn the_cookie_value_is_not_stored() {
        for engine in store::testing::engines().await {
            let sessions = SessionStore::new(config(60_000, 60_000, 10), engine.store.clone());
            let (id, _) = sessions.create(1, "alice", "acme", "admin").await.unwrap();
            assert!(engine.store.session(&id).await.unwrap().is_none());
            assert!(engine.store.session(&hash_secret(id.as_bytes())).await.unwrap().is_some());
        }
    }
}
