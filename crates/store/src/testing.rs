//! Stores for tests, of every engine: [`engines`] gives two SQLite stores and one
//! PostgreSQL store (each empty, each its own), so a test written once against
//! [`SharedStore`] runs on both engines. The second SQLite store moves its staged
//! history into `history` every few values (`history::stage`), where the first keeps
//! a test's few readings staged, as a real store does for its newest ones. Used by this crate's contract tests and, through the `testing` feature, by
//! the services' tests.
//!
//! ## PostgreSQL
//!
//! `INGOT_TEST_POSTGRES_URL` names a role that may create databases (scripts/test.sh
//! starts a private server with scripts/postgres.sh and sets it). Each test creates a
//! database of its own, `ingot_test_<random>`, and drops it when done (also when it
//! fails), so tests run in parallel and leave nothing behind. Without the variable the
//! tests say SKIPPED loudly, and fail under `CI=true`.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio_postgres::NoTls;

use crate::postgres::{PgOptions, PgStore, describe, redacted_url};
use crate::{SharedStore, SqliteStore, StoreOptions};

const VAR: &str = "INGOT_TEST_POSTGRES_URL";

/// A store of one engine for one test, and what keeps its data alive (a temporary
/// directory, a temporary database): drop it last.
pub struct Engine {
    /// "sqlite", "sqlite-moving" or "postgres", for assertion messages.
    pub name: &'static str,
    pub store: SharedStore,
    place: Place,
}

enum Place {
    /// With the values a part of its staging table takes before it moves (see `history::stage`).
    Dir(tempfile::TempDir, usize),
    Db(TestDb),
}

impl Engine {
    /// A new empty SQLite store in a temporary directory.
    pub fn sqlite() -> Engine {
        Self::sqlite_staging(crate::history::DEFAULT_STAGE_VALUES, "sqlite")
    }

    /// A new empty SQLite store whose staged history moves every 3 values.
    pub fn sqlite_moving() -> Engine {
        Self::sqlite_staging(3, "sqlite-moving")
    }

    fn sqlite_staging(stage: usize, name: &'static str) -> Engine {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = open_sqlite(dir.path(), stage);
        Engine { name, store, place: Place::Dir(dir, stage) }
    }

    /// A new empty PostgreSQL store in a database of its own, or `None` (after a loud
    /// SKIPPED) without a server; panics under `CI=true` without one.
    pub async fn postgres() -> Option<Engine> {
        let db = TestDb::create().await?;
        let store = PgStore::connect_shared(&db.url, pg_options()).await.expect("connect to the test database");
        Some(Engine { name: "postgres", store, place: Place::Db(db) })
    }

    /// Another store on the same data, as after a restart (the old one may still be open).
    pub async fn reopen(&self) -> SharedStore {
        match &self.place {
            Place::Dir(dir, stage) => open_sqlite(dir.path(), *stage),
            Place::Db(db) => PgStore::connect_shared(&db.url, pg_options()).await.expect("reconnect"),
        }
    }

    /// The store another node of a cluster would have on the same data: for PostgreSQL a
    /// pool of its own with caches of its own; SQLite is one process's database, so there
    /// it is the same store.
    pub async fn node(&self) -> SharedStore {
        match &self.place {
            Place::Dir(..) => self.store.clone(),
            Place::Db(_) => self.reopen().await,
        }
    }

    /// The data directory (SQLite) or database URL (PostgreSQL), as `ingot serve --store` takes it.
    pub fn url(&self) -> String {
        match &self.place {
            Place::Dir(dir, _) => format!("sqlite://{}", dir.path().join("ingot.db").display()),
            Place::Db(db) => db.url.clone(),
        }
    }
}

fn open_sqlite(dir: &std::path::Path, stage: usize) -> SharedStore {
    let store = SqliteStore::open(dir, StoreOptions { readers: 2, sync_full: false, ..Default::default() })
        .expect("open SQLite");
    store.set_history_stage_limit(stage);
    std::sync::Arc::new(store)
}

fn pg_options() -> PgOptions {
    PgOptions { pool_size: 4, ..PgOptions::default() }
}

/// One new empty store per engine: SQLite always (two: see the module docs), PostgreSQL when a server is
/// configured (see the module docs).
pub async fn engines() -> Vec<Engine> {
    let mut all = vec![Engine::sqlite(), Engine::sqlite_moving()];
    all.extend(Engine::postgres().await);
    all
}

/// A fresh database, dropped with the value.
pub struct TestDb {
    /// URL of the new database (the admin URL with another database name).
    pub url: String,
    admin: String,
    name: String,
}

impl TestDb {
    /// A new empty database, or `None` (after a loud SKIPPED) when no server is
    /// configured. Panics under `CI=true` without one.
    pub async fn create() -> Option<TestDb> {
        let admin = admin_url()?;
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let name = format!("ingot_test_{}_{nanos:x}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let client = admin_client(&admin).await;
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("cannot create the test database {name}: {}", describe(&e)));
        Some(TestDb { url: with_dbname(&admin, &name), admin, name })
    }
}

impl TestDb {
    /// The database's URL; the database is kept (not dropped with the value) until the
    /// server itself goes, for a test process that outlives its handle.
    pub fn keep(self) -> String {
        let url = self.url.clone();
        std::mem::forget(self);
        url
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop runs outside async code, maybe on a runtime thread: a thread of its own
        // with a runtime of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async {
                let (client, connection) = tokio_postgres::connect(&admin, NoTls).await?;
                tokio::spawn(connection);
                // FORCE: the test's pools may still hold connections.
                client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await
            })?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("warning: could not drop the test database {}: {dropped:?}", self.name);
        }
    }
}

fn admin_url() -> Option<String> {
    match std::env::var(VAR) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            let test = std::thread::current().name().unwrap_or("a PostgreSQL test").to_string();
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{test}: {VAR} is not set; scripts/test.sh starts a PostgreSQL server and sets it");
            }
            eprintln!(
                "\n!!!!! SKIPPED {test}: {VAR} is not set (no PostgreSQL server); run scripts/test.sh, or \
                 scripts/postgres.sh start DIR and export the URL it prints !!!!!\n"
            );
            None
        }
    }
}

async fn admin_client(admin: &str) -> tokio_postgres::Client {
    let shown = admin.parse().map(|c| redacted_url(&c)).unwrap_or_else(|_| "(unparsable URL)".into());
    let (client, connection) = tokio_postgres::connect(admin, NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {VAR} ({shown}): {}", describe(&e)));
    tokio::spawn(connection);
    client
}

/// `url` with its database replaced by `db`, in either connection-string form.
fn with_dbname(url: &str, db: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return format!("{url} dbname={db}"); // key=value form: the last key wins
    };
    let (base, query) = match url.find('?') {
        Some(q) => url.split_at(q),
        None => (url, ""),
    };
    let authority_start = scheme_end + 3;
    let authority_end = base[authority_start..].find('/').map_or(base.len(), |i| authority_start + i);
    format!("{}/{db}{query}", &base[..authority_end])
}

#[cfg(test)]
mod tests {
    use super::with_dbname;

    #[test]
    fn with_dbname_replaces_only_the_database() {
        assert_eq!(with_dbname("postgres://u@h:1/ingot", "x"), "postgres://u@h:1/x");
        assert_eq!(with_dbname("postgres://u@h:1", "x"), "postgres://u@h:1/x");
        assert_eq!(
            with_dbname("postgresql://u:p@h/ingot?sslmode=disable", "x"),
            "postgresql://u:p@h/x?sslmode=disable"
        );
        assert_eq!(with_dbname("host=h user=u dbname=ingot", "x"), "host=h user=u dbname=ingot dbname=x");
    }
}
