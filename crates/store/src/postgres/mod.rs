//! PostgreSQL as the store: a connection pool, the schema and its migrations, and one
//! module per room with that room's queries (the same traits as SQLite's, the same
//! contract tests in `crate::contract`).
//!
//! ## Client and pool
//!
//! - **tokio-postgres 0.7** (rust-postgres): the maintained native async client, pure
//!   Rust (no libpq). It pipelines queries on one connection, speaks binary `COPY … FROM
//!   STDIN` (`binary_copy::BinaryCopyInWriter`, the fastest bulk path for history), and
//!   checks Rust ↔ SQL types strictly, with the SQL as visible as in the rusqlite modules.
//! - **deadpool-postgres 0.14** (deadpool 0.13): the pool most used with tokio-postgres,
//!   actively released, MSRV 1.85 (the project's is 1.95). A per-connection statement
//!   cache (`prepare_cached`), and recycling that drops connections the server closed,
//!   so the store recovers by itself after a PostgreSQL restart.
//! - Not sqlx: its query checking wants a database (or prepared offline data) at build
//!   time, its COPY support is text-level, and it is a much larger dependency for what we
//!   use. Not bb8-postgres: same client, a less used pool.
//!
//! Connections are plain TCP (`NoTls`): the server is on the machine or a private
//! network. A URL with `sslmode=require` is refused with a clear error; TLS to the
//! database would be tokio-postgres-rustls on the rustls Ingot already has.
//!
//! ## Failure
//!
//! `connect` fails at once (within [`PgOptions::connect_timeout`] for a host that does
//! not answer) when the server cannot be reached, with an error that names the URL
//! without its password ([`redacted_url`]). Later, a pool that cannot get a connection
//! fails the caller ([`StoreError::Pool`]) instead of waiting forever, so a device's
//! publish is refused, never acknowledged, while PostgreSQL is down.

mod catalog;
mod certificates;
mod dashboards;
mod flows;
mod history;
#[cfg(test)]
mod ingest_bench;
mod loadtests;
mod market;
mod migrate;
mod seats;
mod secrets;
mod sessions;
mod tenants;
mod tickets;
mod tokens;
mod users;

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::{BuildError, Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime};
use tokio_postgres::config::Host;
use tokio_postgres::{Config, NoTls};

pub use migrate::SCHEMA_VERSION;

use crate::StoreError;
use crate::history::SeriesCache;

/// Options for [`PgStore::connect`].
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Most connections open at once.
    pub pool_size: usize,
    /// How long to wait for the server to accept a new connection (TCP, startup and
    /// authentication), unless the URL sets `connect_timeout`.
    pub connect_timeout: Duration,
    /// How long a caller waits for a free connection when all `pool_size` are busy.
    pub wait_timeout: Duration,
    /// `true`: a commit returns once its WAL is flushed to disk on the server (survives
    /// a crash of the server's machine). `false`: `synchronous_commit = off` for Ingot's
    /// sessions, as `--sync-full false` on SQLite: an Ingot crash loses nothing, a crash of
    /// PostgreSQL's machine may lose the last few hundred milliseconds of commits.
    pub sync_full: bool,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            pool_size: 16,
            connect_timeout: Duration::from_secs(5),
            wait_timeout: Duration::from_secs(30),
            sync_full: true,
        }
    }
}

/// Handle to a PostgreSQL database with Ingot's schema; cheap to clone.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    /// The URL without its password, for errors and logs.
    url: Arc<str>,
    /// Series ids by (tenant, device, attribute), as SQLite's; checked against the
    /// table in every batch, since another process may delete series (see [`history`]).
    series: Arc<Mutex<SeriesCache>>,
    /// How to connect, for the history writer's own connection.
    config: Arc<Config>,
    /// The history writer thread's connection (see [`history`]).
    writer: Arc<Mutex<history::WriterConnection>>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("url", &self.url).field("pool", &self.pool.status()).finish()
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?…]`, or libpq's
    /// `key=value` form) and brings the schema up to date ([`SCHEMA_VERSION`]).
    pub async fn connect(url: &str, options: PgOptions) -> Result<Self, StoreError> {
        let mut config: Config = url.parse()?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(options.connect_timeout);
        }
        if config.get_application_name().is_none() {
            config.application_name("ingot");
        }
        if !options.sync_full {
            let options = config.get_options().map_or(String::new(), |o| format!("{o} "));
            config.options(format!("{options}-c synchronous_commit=off"));
        }
        let url: Arc<str> = redacted_url(&config).into();
        let create_timeout = config.get_connect_timeout().copied().unwrap_or(options.connect_timeout);
        let manager =
            Manager::from_config(config.clone(), NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(create_timeout))
            .wait_timeout(Some(options.wait_timeout))
            .recycle_timeout(Some(create_timeout))
            .build()
            .map_err(|e| StoreError::Pool {
                url: url.to_string(),
                source: match e {
                    BuildError::NoRuntimeSpecified => PoolError::NoRuntimeSpecified,
                },
            })?;
        let series = Arc::new(Mutex::new(SeriesCache::new(crate::history::DEFAULT_SERIES_CACHE)));
        let writer = Arc::default();
        let store = Self { pool, url, series, config: Arc::new(config), writer };
        let mut client = store.client().await?;
        migrate::run(&mut client).await?;
        tracing::info!(url = %store.url, version = SCHEMA_VERSION, "PostgreSQL store ready");
        Ok(store)
    }

    /// A pooled connection (returned to the pool when dropped).
    pub async fn client(&self) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(|source| StoreError::Pool { url: self.url.to_string(), source })
    }

    /// The pool itself (sizes, status).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The URL connected to, without its password.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's schema version (the last migration step applied).
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        migrate::current_version(&self.client().await?).await
    }

    /// [`Self::connect`], as the [`crate::SharedStore`] services take.
    pub async fn connect_shared(url: &str, options: PgOptions) -> Result<crate::SharedStore, StoreError> {
        Ok(Arc::new(Self::connect(url, options).await?))
    }

    /// A connection that could not be made, as the pool says it.
    fn unreachable(&self, e: tokio_postgres::Error) -> StoreError {
        StoreError::Pool { url: self.url.to_string(), source: PoolError::Backend(e) }
    }

    fn series_cache(&self) -> std::sync::MutexGuard<'_, SeriesCache> {
        crate::history::lock_cache(&self.series)
    }
}

/// A unique-key violation (SQLSTATE 23505) as [`StoreError::Conflict`], other errors as they are.
pub(crate) fn conflict(e: tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) if *db.code() == tokio_postgres::error::SqlState::UNIQUE_VIOLATION => {
            StoreError::Conflict(db.detail().unwrap_or(db.message()).to_string())
        }
        _ => StoreError::Postgres(e),
    }
}

/// Advisory lock keys (per database), "ingot" in ASCII then a room number; the
/// migrations' is 1.
pub(crate) mod lock {
    /// Taken shared by every history batch and exclusively by whatever deletes series, so
    /// that no batch writes under a series id deleted after it checked it.
    pub const SERIES: i64 = 0x0069_6e67_6f74_0002;
    /// First key of the two-key lock a seat batch takes per tenant (the second is the
    /// tenant name's hash): the accounts limit check and the account's creation are
    /// one step for every node.
    pub const SEATS: i32 = 0x696e_0003;
}

/// `config` as a `postgres://` URL without the password (and without options, which
/// may hold one), for messages.
pub fn redacted_url(config: &Config) -> String {
    let mut out = String::from("postgres://");
    if let Some(user) = config.get_user() {
        let _ = write!(out, "{user}@");
    }
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let host = match host {
                Host::Tcp(h) if h.contains(':') => format!("[{h}]"),
                Host::Tcp(h) => h.clone(),
                Host::Unix(path) => path.display().to_string(),
            };
            match ports.get(i).or(ports.first()) {
                Some(port) => format!("{host}:{port}"),
                None => host,
            }
        })
        .collect();
    out.push_str(&hosts.join(","));
    if let Some(db) = config.get_dbname() {
        let _ = write!(out, "/{db}");
    }
    out
}

/// A tokio-postgres error with its causes (the server's message, the I/O error), which
/// its own `Display` leaves out.
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let _ = write!(out, ": {cause}");
        source = cause.source();
    }
    if e.as_db_error().is_none() && find_io_error(e).is_some() {
        out.push_str(" (is PostgreSQL running and listening there?)");
    }
    out
}

/// A pool error, said plainly.
pub(crate) fn describe_pool(e: &PoolError) -> String {
    use deadpool_postgres::TimeoutType;
    match e {
        PoolError::Backend(e) => describe(e),
        PoolError::Timeout(TimeoutType::Create) => {
            "the server did not accept a connection within the connect timeout (is the host reachable?)".into()
        }
        PoolError::Timeout(TimeoutType::Wait) => {
            "every pooled connection stayed busy for the whole wait timeout".into()
        }
        PoolError::Timeout(TimeoutType::Recycle) => "checking a pooled connection timed out".into(),
        other => other.to_string(),
    }
}

fn find_io_error(e: &tokio_postgres::Error) -> Option<&std::io::Error> {
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        source = cause.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::testing::TestDb;

    #[test]
    fn redacted_url_never_shows_the_password() {
        let cases = [
            ("postgres://ingot:s3cret@db.example:5433/ingot", "postgres://ingot@db.example:5433/ingot"),
            ("postgresql://ingot:s3cret@db.example/ingot?sslmode=disable", "postgres://ingot@db.example:5432/ingot"),
            ("postgres://u@127.0.0.1:1,[::1]:2/d?password=s3cret", "postgres://u@127.0.0.1:1,[::1]:2/d"),
            ("host=db.example port=6000 user=u password=s3cret dbname=d", "postgres://u@db.example:6000/d"),
        ];
        for (url, want) in cases {
            let config: Config = url.parse().unwrap();
            assert_eq!(redacted_url(&config), want, "{url}");
        }
    }

    /// Needs no server: a closed port is refused at once, and the error says where.
    #[tokio::test]
    async fn connect_to_a_closed_port_fails_fast_naming_the_url_without_its_password() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let url = format!("postgres://ingot:s3cret@127.0.0.1:{port}/ingot");
        let started = Instant::now();
        let err = PgStore::connect(&url, PgOptions::default()).await.expect_err("nothing listens there");
        assert!(started.elapsed() < Duration::from_secs(3), "failed fast: {:?}", started.elapsed());
        let message = err.to_string();
        assert!(matches!(err, StoreError::Pool { .. }), "{err:?}");
        assert!(message.contains(&format!("postgres://ingot@127.0.0.1:{port}/ingot")), "{message}");
        assert!(message.contains("refused"), "says why: {message}");
        assert!(!message.contains("s3cret"), "{message}");
    }

    /// A server restart ends the history writer's own connection while it is idle: the
    /// next batch opens a new one instead of failing (and refusing its readings).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_history_writer_reconnects_before_a_batch_when_the_server_ended_its_connection() {
        use crate::history::HistoryStore;
        let Some(db) = TestDb::create().await else { return };
        let store = Arc::new(PgStore::connect(&db.url, PgOptions::default()).await.unwrap());
        let reading = |ts: i64| crate::contract::reading("d", ts, serde_json::json!({"a": ts}));
        let write = |ts: i64| {
            let store = store.clone();
            tokio::task::spawn_blocking(move || store.write_history_blocking(&[reading(ts)], None))
        };
        write(1).await.unwrap().unwrap();
        // What a restart does to it: the server ends every other session of the database.
        let admin = store.client().await.unwrap();
        let ended = admin
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0);
        assert!(ended >= 1, "the writer's connection was ended");
        tokio::time::sleep(Duration::from_millis(200)).await;
        write(2).await.unwrap().expect("the first batch after the restart is written");
    }

    #[tokio::test]
    async fn an_unparsable_url_is_a_clear_error() {
        let err = PgStore::connect("postgres://u@h:notaport/d", PgOptions::default()).await.unwrap_err();
        assert!(err.to_string().contains("invalid connection string"), "{err}");
    }

    #[tokio::test]
    async fn the_pool_has_the_configured_size_and_a_caller_does_not_wait_forever() {
        let Some(db) = TestDb::create().await else { return };
        let options = PgOptions { pool_size: 2, wait_timeout: Duration::from_millis(200), ..PgOptions::default() };
        let store = PgStore::connect(&db.url, options).await.unwrap();
        assert_eq!(store.pool().status().max_size, 2);
        let _held = (store.client().await.unwrap(), store.client().await.unwrap());
        let started = Instant::now();
        let err = store.client().await.expect_err("both connections are held");
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
        assert!(matches!(err, StoreError::Pool { .. }), "{err:?}");
        assert!(err.to_string().contains("busy"), "{err}");
    }

    #[tokio::test]
    async fn commits_wait_for_the_disk_unless_told_not_to() {
        let Some(db) = TestDb::create().await else { return };
        for (sync_full, want) in [(true, "on"), (false, "off")] {
            let store = PgStore::connect(&db.url, PgOptions { sync_full, ..PgOptions::default() }).await.unwrap();
            let client = store.client().await.unwrap();
            let got: String = client.query_one("SHOW synchronous_commit", &[]).await.unwrap().get(0);
            assert_eq!(got, want, "sync_full {sync_full}");
        }
    }

    #[tokio::test]
    async fn statement_errors_carry_the_servers_message() {
        let Some(db) = TestDb::create().await else { return };
        let store = PgStore::connect(&db.url, PgOptions::default()).await.unwrap();
        let client = store.client().await.unwrap();
        let err: StoreError = client.execute("SELECT * FROM no_such_table", &[]).await.unwrap_err().into();
        assert!(err.to_string().contains("relation \"no_such_table\" does not exist"), "{err}");
    }
}
