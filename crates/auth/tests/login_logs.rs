//! What a failed login writes to the log. A test binary of its own: the subscriber is
//! the process-wide default, so no test running on another thread can make tracing
//! cache "nobody listens" for the log lines checked here.

use std::sync::{Arc, Mutex};

use auth::{AuthConfig, AuthError, AuthService};
use model::secret::hash_secret;

/// Tracing output captured in memory.
#[derive(Clone, Default)]
struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for CapturedLogs {
    type Writer = Self;
    fn make_writer(&'a self) -> Self {
        self.clone()
    }
}

#[tokio::test]
async fn failed_logins_log_an_unknown_name_only_as_a_short_hash() {
    let logs = CapturedLogs::default();
    let subscriber =
        tracing_subscriber::fmt().with_writer(logs.clone()).with_max_level(tracing::Level::TRACE).with_ansi(false);
    tracing::subscriber::set_global_default(subscriber.finish()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = store::SqliteStore::open_shared(
        dir.path(),
        store::StoreOptions { readers: 1, sync_full: false, ..Default::default() },
    )
    .unwrap();
    let auth = AuthService::open(store, None, AuthConfig::default()).await.unwrap();
    auth.bootstrap(Some("admin password".into())).await.unwrap();
    let client = "127.0.0.1".parse().unwrap();
    // What a user types into the name field by mistake is often a password.
    let typed = "Correct-Horse-Battery";
    assert!(matches!(auth.login(typed, "whatever", client).await, Err(AuthError::InvalidCredentials)));
    assert!(matches!(auth.login("admin", "wrong", client).await, Err(AuthError::InvalidCredentials)));
    let out = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(!out.contains(typed), "the unknown name is not logged: {out}");
    let short = &hash_secret(typed.as_bytes())[..12];
    assert!(out.contains(&format!("login_sha256={short}")), "its short hash is: {out}");
    assert!(out.contains("failed login user=admin"), "an existing user's name is: {out}");
}
