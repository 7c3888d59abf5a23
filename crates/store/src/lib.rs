//! Persistence for Ingot, behind one trait per room ([`users::UserStore`],
//! [`catalog::CatalogStore`], [`history::HistoryStore`], [`dashboards::DashboardStore`], …;
//! together [`Store`]) so that
//! services never depend on an engine. [`SqliteStore`] is the embedded implementation:
//! an SQLite database in the data directory.
//!
//! - One **write connection** behind a mutex: SQLite allows one writer at a time anyway,
//!   and serialising in-process avoids `SQLITE_BUSY` retries.
//! - A small **pool of read connections** (WAL mode lets them read while the writer writes).
//! - All calls run on tokio's blocking pool ([`SqliteStore::read`], [`SqliteStore::write`]).
//! - Durability: `synchronous=FULL` by default, so a committed transaction survives power
//!   loss, not only a process crash. History batches many readings per transaction (group
//!   commit), which is what keeps this fast.
//!
//! Each room's trait and its SQLite queries live in the room's module ([`users`],
//! [`catalog`], [`history`], …), so the schema for a room is next to its queries; the
//! PostgreSQL queries live in [`postgres`], one module per room. The tests of what a
//! store must do are written once against [`SharedStore`] and run on both engines
//! (`contract`, [`testing::engines`]).

pub mod catalog;
pub mod certificates;
mod checkpoint;
#[cfg(test)]
mod contract;
pub mod copy;
pub mod dashboards;
pub mod flows;
pub mod history;
#[cfg(test)]
mod history_bench;
pub mod loadtests;
pub mod market;
mod migrate;
pub mod postgres;
pub mod seats;
pub mod secrets;
pub mod sessions;
pub mod tenants;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod tickets;
pub mod tokens;
pub mod users;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags, Transaction};

/// The one error type of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot open the data directory {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("stored JSON is corrupt: {0}")]
    Json(#[from] serde_json::Error),
    #[error("already exists: {0}")]
    Conflict(String),
    /// A catalog change no longer fits what is stored (another node changed it).
    #[error("{0}")]
    Catalog(#[from] catalog::CatalogConflict),
    #[error("the database task failed: {0}")]
    Task(String),
    /// A PostgreSQL statement failed (the server's own message included).
    #[error("PostgreSQL: {}", postgres::describe(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// No PostgreSQL connection could be had: server unreachable, refused, or the pool
    /// timed out. `url` never holds the password.
    #[error("cannot get a PostgreSQL connection to {url}: {}", postgres::describe_pool(source))]
    Pool { url: String, source: deadpool_postgres::PoolError },
    /// A copy between engines ([`copy`]) cannot start: the source or the target is not
    /// what it needs (the message says what to do).
    #[error("{0}")]
    CopyRefused(String),
    /// The target of a copy ([`copy`]) already holds data.
    #[error(
        "the PostgreSQL database {url} is not empty (rows in {tables}): a copy goes into an empty database only; \
         create a new one (CREATE DATABASE …) and name it instead, and do not start `ingot serve` on it before the copy"
    )]
    TargetNotEmpty { url: String, tables: String },
    /// After a copy ([`copy`]), a table has another number of rows than the source had.
    #[error("table {table} has {sqlite} rows in the SQLite snapshot but {postgres} in PostgreSQL")]
    CountMismatch { table: &'static str, sqlite: u64, postgres: u64 },
    /// A copy ([`copy`]) failed on one table.
    #[error("copying table {table}: {source}")]
    Copying { table: &'static str, source: Box<StoreError> },
}

/// Options for [`Store::open`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Number of read connections.
    pub readers: usize,
    /// `true`: fsync every commit (survives power loss). `false`: survives process crashes only.
    pub sync_full: bool,
    /// Values history's active generation takes before it seals and moves into `history`
    /// (see `history::stage`).
    pub stage_values: usize,
    /// Seconds after which it seals however few values it holds.
    pub stage_secs: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            readers: 4,
            sync_full: true,
            stage_values: history::DEFAULT_STAGE_VALUES,
            stage_secs: history::DEFAULT_STAGE_SECS,
        }
    }
}

/// Everything Ingot keeps, room by room. Services hold an `Arc<dyn Store>` ([`SharedStore`])
/// and never know which engine is behind it; [`SqliteStore`] is the embedded one.
pub trait Store:
    UserStore
    + TenantStore
    + TokenStore
    + CatalogStore
    + SeatStore
    + HistoryStore
    + SecretStore
    + SessionStore
    + TicketStore
    + DashboardStore
    + CertificateStore
    + FlowStore
    + MarketStore
    + LoadTestStore
    + 'static
{
}

impl<T> Store for T where
    T: UserStore
        + TenantStore
        + TokenStore
        + CatalogStore
        + SeatStore
        + HistoryStore
        + SecretStore
        + SessionStore
        + TicketStore
        + DashboardStore
        + CertificateStore
        + FlowStore
        + MarketStore
        + LoadTestStore
        + 'static
{
}

/// The store as services hold it.
pub type SharedStore = std::sync::Arc<dyn Store>;

/// Where a store is, as `ingot serve --store` and `ingot migrate` take it. Shown
/// (`Display` and `Debug`) without its password.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// `sqlite://PATH`: the database file (relative paths are from the working directory).
    Sqlite(PathBuf),
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?…]` (or `postgresql://`), as given.
    Postgres(String),
}

impl std::str::FromStr for StoreUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(path) = s.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err("sqlite:// needs the database file's path, e.g. sqlite://ingot-data/ingot.db".into());
            }
            Ok(Self::Sqlite(PathBuf::from(path)))
        } else if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Ok(Self::Postgres(s.to_string()))
        } else {
            Err("a store is sqlite://PATH or postgres://USER@HOST:PORT/DB".into())
        }
    }
}

impl std::fmt::Display for StoreUrl {
    /// Without a password, so it can be logged.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            Self::Postgres(url) => match url.parse::<tokio_postgres::Config>() {
                Ok(config) => f.write_str(&postgres::redacted_url(&config)),
                Err(_) => f.write_str("postgres://(unparsable URL)"),
            },
        }
    }
}

impl std::fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoreUrl({self})")
    }
}

impl StoreUrl {
    /// Opens the store, bringing its schema up to date.
    pub async fn open(&self, sqlite: StoreOptions, pg: postgres::PgOptions) -> Result<SharedStore, StoreError> {
        match self {
            Self::Sqlite(path) => {
                let path = path.clone();
                Ok(Arc::new(run_blocking(None, move || SqliteStore::open_file(&path, sqlite)).await?))
            }
            Self::Postgres(url) => postgres::PgStore::connect_shared(url, pg).await,
        }
    }
}

/// The room traits, for `use store::prelude::*` where a [`SharedStore`] is used.
pub mod prelude {
    pub use crate::catalog::CatalogStore;
    pub use crate::certificates::CertificateStore;
    pub use crate::dashboards::DashboardStore;
    pub use crate::flows::FlowStore;
    pub use crate::history::HistoryStore;
    pub use crate::loadtests::LoadTestStore;
    pub use crate::market::MarketStore;
    pub use crate::seats::SeatStore;
    pub use crate::secrets::SecretStore;
    pub use crate::sessions::SessionStore;
    pub use crate::tenants::TenantStore;
    pub use crate::tickets::TicketStore;
    pub use crate::tokens::TokenStore;
    pub use crate::users::UserStore;
    pub use crate::{SharedStore, Store};
}

use prelude::*;

/// The embedded SQLite store; cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    writer: Mutex<Connection>,
    /// Series ids by (tenant, device, attribute). Changed only while `writer` is held,
    /// in the same transaction as the `series` rows it mirrors (see [`history`]).
    series: Mutex<history::SeriesCache>,
    /// The writer's view of history's log (see `history::stage`); changed only while
    /// `writer` is held.
    stage: Mutex<history::Stage>,
    /// History's staged values in memory, for readers and the writer (see `history::stage`).
    staged: Arc<std::sync::RwLock<history::Staged>>,
    /// Set by the checkpointer: the writer finishes a checkpoint before its next
    /// transaction, so that the WAL starts over (see [`checkpoint`]).
    finish_due: std::sync::atomic::AtomicBool,
    readers: Mutex<Vec<Connection>>,
    /// One permit per pooled reader: a read waits for one (asynchronously) before it takes
    /// a blocking thread, so reads hold at most `readers` of them.
    read_slots: Arc<tokio::sync::Semaphore>,
    path: PathBuf,
    options: StoreOptions,
    /// The runtime that opened the store, if any: its blocking pool runs every read and
    /// write ([`run_blocking`]).
    runtime: Option<tokio::runtime::Handle>,
}

impl checkpoint::Writer for Inner {
    fn writer(&self) -> &Mutex<Connection> {
        &self.writer
    }

    fn finish_due(&self) -> &std::sync::atomic::AtomicBool {
        &self.finish_due
    }
}

impl SqliteStore {
    /// Opens (creating if needed) `dir/ingot.db` and brings its schema up to date.
    pub fn open(dir: &Path, options: StoreOptions) -> Result<Self, StoreError> {
        Self::open_file(&dir.join("ingot.db"), options)
    }

    /// Opens (creating if needed, with its directory) the database file `path`.
    pub fn open_file(path: &Path, options: StoreOptions) -> Result<Self, StoreError> {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io { path: dir.to_path_buf(), source })?;
        let path = path.to_path_buf();
        let mut writer = Self::connect(&path, &options, false)?;
        migrate::run(&mut writer)?;
        let readers =
            (0..options.readers.max(1)).map(|_| Self::connect(&path, &options, true)).collect::<Result<_, _>>()?;
        // Checkpoints run on a thread of their own (`checkpoint`), not in the writer's commits.
        let checkpointer = Self::connect(&path, &options, false)?;
        writer.pragma_update(None, "wal_autocheckpoint", 0)?;
        // When the WAL starts over, its file is cut back to 64 MB (it is reused, not shrunk).
        writer.pragma_update(None, "journal_size_limit", 64 << 20)?;
        let series = Mutex::new(history::SeriesCache::new(history::DEFAULT_SERIES_CACHE));
        let mut stage = history::Stage::new();
        stage.set_limit(options.stage_values);
        stage.set_max_age(std::time::Duration::from_secs(options.stage_secs));
        let staged = Arc::new(std::sync::RwLock::new(history::Staged::default()));
        history::register_functions(&writer, &staged)?;
        // History's log back into memory, before any reader looks.
        let tx = writer.transaction()?;
        stage.begin(&tx, &staged)?;
        tx.commit()?;
        let stage = Mutex::new(stage);
        let inner = Arc::new(Inner {
            writer: Mutex::new(writer),
            series,
            stage,
            staged,
            finish_due: Default::default(),
            readers: Mutex::new(readers),
            read_slots: Arc::new(tokio::sync::Semaphore::new(options.readers.max(1))),
            path,
            options,
            runtime: tokio::runtime::Handle::try_current().ok(),
        });
        checkpoint::spawn(checkpointer, Arc::downgrade(&inner), inner.path.clone());
        Ok(Self { inner })
    }

    /// [`Self::open`], as the [`SharedStore`] services take.
    pub fn open_shared(dir: &Path, options: StoreOptions) -> Result<SharedStore, StoreError> {
        Ok(Arc::new(Self::open(dir, options)?))
    }

    fn connect(path: &Path, options: &StoreOptions, read_only: bool) -> Result<Connection, StoreError> {
        let flags = if read_only {
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX
        };
        let conn = Connection::open_with_flags(path, flags)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        if !read_only {
            conn.pragma_update(None, "journal_mode", "WAL")?;
        }
        conn.pragma_update(None, "synchronous", if options.sync_full { "FULL" } else { "NORMAL" })?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(conn)
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` on a read connection, once one of the pool's is free.
    ///
    /// Reads queue for the pool rather than open connections of their own: when 10,000
    /// devices connected at once, each reading its attribute budget, the pool ran dry,
    /// 32 blocking threads opened a temporary SQLite connection each, over and over, and
    /// what those threads allocated stayed scattered over their heaps, ~0.5 KB more per
    /// idle connection (issue 16).
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        // Never closed, so `acquire` cannot fail. Held until the blocking work ends, even
        // when the caller stops waiting for it.
        let slot = self.inner.read_slots.clone().acquire_owned().await.map_err(|e| StoreError::Task(e.to_string()))?;
        let inner = self.inner.clone();
        run_blocking(self.inner.runtime.as_ref(), move || {
            let _slot = slot;
            let conn = inner.readers.lock().expect("reader pool lock").pop();
            let conn = match conn {
                Some(c) => c,
                // Only when a read panicked and its connection went with it: a new one.
                None => Self::connect(&inner.path, &inner.options, true)?,
            };
            let result = f(&conn);
            let mut pool = inner.readers.lock().expect("reader pool lock");
            if pool.len() < inner.options.readers.max(1) {
                pool.push(conn);
            }
            result
        })
        .await
    }

    /// Runs `f` in a write transaction, committed if `f` returns `Ok`.
    pub async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.clone();
        run_blocking(self.inner.runtime.as_ref(), move || store.write_blocking(f)).await
    }

    /// [`Self::write`] on the calling thread, which it blocks: for a thread of its own
    /// (the history writer), never for an async task.
    pub fn write_blocking<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    {
        self.write_blocking_then(f, |value| value)
    }

    /// [`Self::write_blocking`], then `committed` with what `f` returned once its
    /// transaction has committed, still holding the writer's lock, so before any other
    /// write: for state in memory that follows the database (history's staged values).
    pub(crate) fn write_blocking_then<T, U>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
        committed: impl FnOnce(T) -> U,
    ) -> Result<U, StoreError> {
        // A panic inside `f` poisons the lock, but leaves a consistent connection behind:
        // the transaction was rolled back as it unwound. Refusing every later write would
        // turn one bad batch into a dead store.
        let asked = std::time::Instant::now();
        let mut conn = self.inner.writer.lock().unwrap_or_else(|poisoned| {
            tracing::warn!("a database write panicked earlier; its transaction was rolled back");
            self.inner.writer.clear_poison();
            poisoned.into_inner()
        });
        let locked = asked.elapsed();
        checkpoint::finish(&conn, &self.inner.finish_due);
        let began = asked.elapsed();
        let tx = conn.transaction()?;
        let value = f(&tx)?;
        let written = asked.elapsed();
        tx.commit()?;
        let done = asked.elapsed();
        let value = committed(value);
        let applied = asked.elapsed();
        if applied >= SLOW_WRITE {
            let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
            tracing::debug!(
                lock_ms = ms(locked),
                finish_ms = ms(began - locked),
                statements_ms = ms(written - began),
                commit_ms = ms(done - written),
                after_ms = ms(applied - done),
                "slow write"
            );
        }
        Ok(value)
    }
}

/// A write this long or longer is logged (debug) with where its time went.
const SLOW_WRITE: std::time::Duration = std::time::Duration::from_millis(20);

/// Runs `f` on the blocking pool of `runtime`, or of the calling runtime without one.
///
/// A store's reads and writes pass the runtime that opened it ([`Inner::runtime`]),
/// whichever runtime asks. The MQTT agent's connections run on a runtime of their own
/// (`ingest::mqtt`) whose blocking pool would be another one, unbounded (tokio's default:
/// up to 512 threads). The serving runtime's pool is bounded (`ingot serve
/// --blocking-threads`), and reads take no more of it than the reader pool has
/// connections ([`SqliteStore::read`]).
async fn run_blocking<T: Send + 'static>(
    runtime: Option<&tokio::runtime::Handle>,
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let task = match runtime {
        Some(runtime) => runtime.spawn_blocking(f),
        None => tokio::task::spawn_blocking(f),
    };
    task.await.map_err(|e| StoreError::Task(e.to_string()))?
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_parse_and_show_no_password() {
        assert_eq!("sqlite://ingot-data/ingot.db".parse(), Ok(StoreUrl::Sqlite("ingot-data/ingot.db".into())));
        assert_eq!("sqlite:///var/lib/ingot.db".parse(), Ok(StoreUrl::Sqlite("/var/lib/ingot.db".into())));
        let pg: StoreUrl = "postgresql://ingot:s3cret@db:5433/ingot".parse().unwrap();
        assert_eq!(pg.to_string(), "postgres://ingot@db:5433/ingot");
        assert!(!format!("{pg:?}").contains("s3cret"), "{pg:?}");
        for bad in ["sqlite://", "mysql://x", "ingot.db", ""] {
            let err = bad.parse::<StoreUrl>().unwrap_err();
            assert!(err.contains("sqlite://"), "{bad}: {err}");
        }
    }

    /// The MQTT agent asks from a runtime of its own; the work runs on the bounded pool of
    /// the runtime that opened the store, not on the asker's.
    #[test]
    fn blocking_work_runs_on_the_runtime_that_opened_the_store() {
        let serving = tokio::runtime::Builder::new_multi_thread().thread_name("opened-here").build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = serving.block_on(async { SqliteStore::open(dir.path(), StoreOptions::default()) }).unwrap();
        let asking = tokio::runtime::Builder::new_current_thread().thread_name("asks-here").build().unwrap();
        let thread = |store: &SqliteStore| {
            let (read, write) = (store.clone(), store.clone());
            asking.block_on(async move {
                let name = || Ok(std::thread::current().name().map(str::to_string));
                (read.read(move |_| name()).await.unwrap(), write.write(move |_| name()).await.unwrap())
            })
        };
        let opened = Some("opened-here".to_string());
        assert_eq!(thread(&store), (opened.clone(), opened));
        // Opened outside any runtime: the asker's pool.
        let elsewhere = SqliteStore::open(&dir.path().join("other"), StoreOptions::default()).unwrap();
        let asker = Some("asks-here".to_string());
        assert_eq!(thread(&elsewhere), (asker.clone(), asker));
    }

    /// A burst of reads waits for the pool's connections; none opens one of its own.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_wait_for_the_pool_rather_than_open_connections() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::mpsc;
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions { readers: 2, sync_full: false, ..Default::default() };
        let store = SqliteStore::open(dir.path(), options).unwrap();
        let (busy, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let reads = (0..16).map(|_| {
            let (store, busy, most) = (store.clone(), busy.clone(), most.clone());
            tokio::spawn(async move {
                store
                    .read(move |c| {
                        most.fetch_max(busy.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(5));
                        let one: i64 = c.query_row("SELECT 1", [], |r| r.get(0))?;
                        busy.fetch_sub(1, Ordering::SeqCst);
                        Ok(one)
                    })
                    .await
            })
        });
        for read in futures_util::future::join_all(reads).await {
            assert_eq!(read.unwrap().unwrap(), 1);
        }
        assert!(most.load(Ordering::SeqCst) <= 2, "{most:?} reads at once");

        // A read its caller stopped waiting for keeps its connection until it ends.
        let (started, wait_started) = mpsc::channel();
        let (release, wait_release) = mpsc::channel::<()>();
        let reader = store.clone();
        let waiting = tokio::spawn(async move {
            reader
                .read(move |_| {
                    started.send(()).unwrap();
                    wait_release.recv().unwrap();
                    Ok(())
                })
                .await
        });
        tokio::task::spawn_blocking(move || wait_started.recv().unwrap()).await.unwrap();
        waiting.abort();
        assert!(waiting.await.unwrap_err().is_cancelled());
        assert_eq!(store.inner.read_slots.available_permits(), 1);
        assert_eq!(store.inner.readers.lock().unwrap().len(), 1);
        release.send(()).unwrap();
        while store.inner.read_slots.available_permits() < 2 {
            tokio::task::yield_now().await;
        }
        assert_eq!(store.inner.readers.lock().unwrap().len(), 2);
    }
}
