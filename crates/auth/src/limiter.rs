//! Failed-login limiting: after `max_failures` failures for one user name or one client
//! address within `window`, further attempts are refused until the window passes.
//! Successful logins are never limited.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Counts failed logins per user name and per client address.
pub struct LoginLimiter {
    max_failures: u32,
    window: Duration,
    entries: Mutex<HashMap<Key, (u32, Instant)>>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum Key {
    User(String),
    Ip(IpAddr),
}

/// Beyond this many tracked keys, expired entries are swept on insert.
const SWEEP_AT: usize = 10_000;

impl LoginLimiter {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self { max_failures, window, entries: Mutex::default() }
    }

    /// `Err(seconds to wait)` if either the user name or the address is locked out.
    pub fn check(&self, username: &str, ip: IpAddr) -> Result<(), u64> {
        let now = Instant::now();
        let entries = self.entries.lock().expect("limiter lock");
        for key in [Key::User(username.to_string()), Key::Ip(ip)] {
            if let Some((n, start)) = entries.get(&key) {
                let age = now.duration_since(*start);
                if *n >= self.max_failures && age < self.window {
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
        if entries.len() > SWEEP_AT {
            entries.retain(|_, (_, start)| now.duration_since(*start) < self.window);
        }
        for key in [Key::User(username.to_string()), Key::Ip(ip)] {
            let e = entries.entry(key).or_insert((0, now));
            if now.duration_since(e.1) >= self.window {
                *e = (0, now);
            }
            e.0 += 1;
        }
    }

    /// Forgets a user's failures after a successful login.
    pub fn record_success(&self, username: &str) {
        self.entries.lock().expect("limiter lock").remove(&Key::User(username.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_max_failures_per_user_and_ip() {
        let l = LoginLimiter::new(3, Duration::from_secs(60));
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
        let l = LoginLimiter::new(1, Duration::from_millis(30));
        let ip: IpAddr = "::1".parse().unwrap();
        l.record_failure("bob", ip);
        assert!(l.check("bob", ip).is_err());
        std::thread::sleep(Duration::from_millis(40));
        assert!(l.check("bob", ip).is_ok());
    }
}
