//! Failed-login limiting: after `max_failures` failures for one user name or one client
//! address within `window`, further attempts are refused until the window passes.
//! Successful logins are never limited.
//!
//! Memory is bounded: at most `max_entries` user names and addresses are tracked (and a
//! name is at most `MAX_EMAIL_LEN` bytes: longer logins are refused before they get
//! here). When a new key finds the table full, expired entries go first; if it is still
//! full, about a tenth of the table is evicted, ranked so that a flood cannot lift a
//! lock-out cheaply:
//! 1. entries that are not locked out go before any lock-out, fewest failures first,
//!    then the oldest: a flood of fresh names (one failure each) only displaces other
//!    fresh names, never a name or address close to or at its limit;
//! 2. lock-outs go only once the whole table is lock-outs, the one ending soonest first.
//!    Getting there takes `max_failures × max_entries` failed logins (each an argon2
//!    verification, each address itself locked after `max_failures`) within one window.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Counts failed logins per user name and per client address.
pub struct LoginLimiter {
    max_failures: u32,
    window: Duration,
    max_entries: usize,
    entries: Mutex<HashMap<Key, Entry>>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum Key {
    User(String),
    Ip(IpAddr),
}

/// Failures counted since `start`.
#[derive(Clone, Copy)]
struct Entry {
    failures: u32,
    start: Instant,
}

impl LoginLimiter {
    /// `max_entries`: most user names and addresses tracked at once (at least 2).
    pub fn new(max_failures: u32, window: Duration, max_entries: usize) -> Self {
        Self { max_failures, window, max_entries: max_entries.max(2), entries: Mutex::default() }
    }

    /// `Err(seconds to wait)` if either the user name or the address is locked out.
    pub fn check(&self, username: &str, ip: IpAddr) -> Result<(), u64> {
        let now = Instant::now();
        let entries = self.entries.lock().expect("limiter lock");
        for key in [Key::User(username.to_string()), Key::Ip(ip)] {
            if let Some(e) = entries.get(&key) {
                let age = now.duration_since(e.start);
                if e.failures >= self.max_failures && age < self.window {
                    return Err((self.window - age).as_secs().max(1));
                }
            }
        }
        Ok(())
    }

    /// Records a failure for both the user name and the address.
    pub fn record_failure(&self, username: &str, ip: IpAddr) {
        let now = Instant::now();
        let mut entries = self.entries.lock().expect("limiter lock");
        for key in [Key::User(username.to_string()), Key::Ip(ip)] {
            if !entries.contains_key(&key) && entries.len() >= self.max_entries {
                self.make_room(&mut entries, now);
            }
            let e = entries.entry(key).or_insert(Entry { failures: 0, start: now });
            if now.duration_since(e.start) >= self.window {
                *e = Entry { failures: 0, start: now };
            }
            e.failures += 1;
        }
    }

    /// Forgets a user's failures after a successful login.
    pub fn record_success(&self, username: &str) {
        self.entries.lock().expect("limiter lock").remove(&Key::User(username.to_string()));
    }

    /// How many user names and addresses are tracked.
    pub fn tracked(&self) -> usize {
        self.entries.lock().expect("limiter lock").len()
    }

    /// Frees at least one place; see the module documentation for what goes.
    fn make_room(&self, entries: &mut HashMap<Key, Entry>, now: Instant) {
        entries.retain(|_, e| now.duration_since(e.start) < self.window);
        if entries.len() < self.max_entries {
            return;
        }
        // A tenth at a time keeps the ranking's cost small per failed login.
        let evict = (self.max_entries / 10).max(1);
        let rank = |e: &Entry| {
            let locked = e.failures >= self.max_failures;
            (locked, if locked { 0 } else { e.failures }, e.start)
        };
        let mut ranks: Vec<_> = entries.values().map(rank).collect();
        let (_, &mut threshold, _) = ranks.select_nth_unstable(evict - 1);
        entries.retain(|_, e| rank(e) > threshold);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nth_ip(n: u32) -> IpAddr {
        IpAddr::from((0x0a00_0000 + n).to_be_bytes())
    }

    #[test]
    fn locks_after_max_failures_per_user_and_ip() {
        let l = LoginLimiter::new(3, Duration::from_secs(60), 100);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert!(l.check("bob", ip).is_ok());
            l.record_failure("bob", ip);
        }
        assert!(l.check("bob", other).is_err(), "user locked from any address");
        assert!(l.check("alice", ip).is_err(), "address locked for any user");
        assert!(l.check("alice", other).is_ok());
        l.record_success("bob");
        assert!(l.check("bob", other).is_ok());
    }

    #[test]
    fn window_expires() {
        let l = LoginLimiter::new(1, Duration::from_millis(30), 100);
        let ip: IpAddr = "::1".parse().unwrap();
        l.record_failure("bob", ip);
        assert!(l.check("bob", ip).is_err());
        std::thread::sleep(Duration::from_millis(40));
        assert!(l.check("bob", ip).is_ok());
    }

    #[test]
    fn tracked_entries_are_bounded_while_nothing_expires() {
        let l = LoginLimiter::new(3, Duration::from_secs(3600), 100);
        for n in 0..5_000 {
            l.record_failure(&format!("name{n}"), nth_ip(n));
            assert!(l.tracked() <= 100, "{} entries after {n} failures", l.tracked());
        }
    }

    #[test]
    fn flooding_fresh_names_lifts_no_lockout_nor_near_lockout() {
        let l = LoginLimiter::new(3, Duration::from_secs(3600), 100);
        let (attacker, victim_ip): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        for _ in 0..3 {
            l.record_failure("victim", attacker);
        }
        // Two failures: one short of a lock-out.
        l.record_failure("target", victim_ip);
        l.record_failure("target", victim_ip);
        // One failure each for many fresh names from many addresses.
        for n in 0..5_000 {
            l.record_failure(&format!("flood{n}"), nth_ip(n));
        }
        assert!(l.check("victim", victim_ip).is_err(), "the lock-out holds");
        assert!(l.check("nobody", attacker).is_err(), "the address lock-out holds");
        l.record_failure("target", victim_ip);
        assert!(l.check("target", nth_ip(9_999)).is_err(), "the near lock-out was not forgotten");
    }

    #[test]
    fn a_table_full_of_lockouts_evicts_the_oldest_lockout_first() {
        let l = LoginLimiter::new(1, Duration::from_secs(3600), 10);
        for n in 0..5 {
            l.record_failure(&format!("locked{n}"), nth_ip(n));
            std::thread::sleep(Duration::from_millis(2));
        }
        // Full of lock-outs (10 entries); one more name must push out the oldest.
        l.record_failure("newest", nth_ip(100));
        assert!(l.tracked() <= 10);
        assert!(l.check("newest", nth_ip(200)).is_err(), "the newest lock-out is kept");
        assert!(l.check("locked4", nth_ip(200)).is_err(), "recent lock-outs are kept");
        assert!(l.check("locked0", nth_ip(200)).is_ok(), "the oldest went first");
    }
}
