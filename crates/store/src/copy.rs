//! Copying an installation from SQLite to PostgreSQL (`ingot migrate`): every table of an
//! SQLite database into an empty PostgreSQL database, rows and ids unchanged, then the
//! row counts of both compared.
//!
//! ## Why it is built this way
//!
//! - **Tables, not room traits.** The copy moves the rows of the schema ([`TABLES`]), not
//!   what the traits return: the traits have no "every row" reads (history is read per
//!   series, users per tenant), and going through them would lose what only the rows
//!   carry: user and series ids (JWTs name users; `dead_series` and history name
//!   series), the insertion order of readings within one ms (SQLite's rowid), the
//!   timestamps of creation. Both schemas are at the same version and mean the same
//!   tables (`postgres/migrate.rs`); a test checks that [`TABLES`] names every table and
//!   column of both, so a migration step that adds one fails it until the copy knows it.
//! - **One SQLite read transaction.** The source is opened with
//!   [`SqliteStore::open_file`] (which brings an older schema up to date, never
//!   destructively), then every count and every row is read in one read transaction:
//!   one snapshot, even while `ingot serve` keeps writing (WAL lets a reader and a writer
//!   work at once; what is written after the snapshot is not copied). The tables agree
//!   with one another and the counts can be compared exactly.
//! - **Streamed.** A blocking thread steps one statement per table and sends the rows in
//!   chunks of [`CHUNK_ROWS`] over a bounded channel to a binary `COPY … FROM STDIN`
//!   (the fastest way into PostgreSQL, as for the history writer's batches): memory
//!   stays at a few chunks however long history is, and reading SQLite overlaps writing
//!   PostgreSQL.
//! - **One PostgreSQL transaction, all or nothing.** It locks the tables (ACCESS
//!   EXCLUSIVE: an `ingot serve` started on the target meanwhile waits, then sees
//!   everything), checks that they are empty, fills them, moves the identity sequences,
//!   then counts every table (`count(*)`, not what `COPY` said) and compares the counts
//!   with the snapshot's: a difference is an error and rolls everything back, like any
//!   other failure. Verified before the commit rather than after it, so that a failed
//!   check leaves nothing behind, and no `ingot serve` started on the new database
//!   right after the commit can make a correct copy look wrong. Only the sequences may
//!   stay moved after a failure (`setval` is not transactional), harmless on an empty
//!   database; the schema the connection created stays too.
//! - **Ids kept.** `COPY` writes identity columns as given (`GENERATED ALWAYS` refuses
//!   explicit ids only in `INSERT`). `history.id` takes SQLite's rowid, so readings of
//!   one ms keep their order; readings still in SQLite's staging table
//!   (`history::stage`) follow, numbered on after the largest rowid in the order they
//!   were written. Each identity sequence then continues after the larger of
//!   the largest id copied and SQLite's `sqlite_sequence` entry: ids of deleted users and
//!   series are never handed out again, as SQLite's AUTOINCREMENT promised.
//! - **Types.** Integers are `i64` on both sides (`BIGINT`); `tenants.unsecured_mqtt`
//!   (0/1) becomes `BOOLEAN`, the `BLOB` of `secrets.value` `BYTEA`; text stays text,
//!   JSON documents and reading values byte for byte as written. A value of another
//!   type than the schema says fails the copy, naming the table.
//! - **Silent.** The store prints nothing: progress goes to a callback ([`Progress`]),
//!   which the binary turns into a progress bar.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::path::Path;

use bytes::BytesMut;
use deadpool_postgres::GenericClient;
use rusqlite::Connection;
use tokio::sync::mpsc;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use crate::postgres::{PgOptions, PgStore};
use crate::{SqliteStore, StoreError, StoreOptions, run_blocking};

/// Rows per chunk from the SQLite reader to `COPY`.
pub const CHUNK_ROWS: usize = 10_000;

/// Chunks on their way from the reader to `COPY` at most.
const CHUNKS_IN_FLIGHT: usize = 2;

/// Told `(table, rows copied, rows in the table)` as the copy goes. Tables are copied one
/// after the other in [`table_names`] order; for each, zero or more calls with
/// `done < total`, then exactly one with `done == total` (also for an empty table).
pub type Progress<'a> = &'a (dyn Fn(&str, u64, u64) + Sync);

/// Rows of one table, in the SQLite snapshot and in PostgreSQL (counted in the copy's
/// transaction, just before its commit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCount {
    pub table: &'static str,
    pub sqlite: u64,
    pub postgres: u64,
}

/// Where an identity sequence continues: after `last_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityStart {
    pub table: &'static str,
    pub last_id: i64,
}

/// What a copy did, all verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyReport {
    /// Every table, in copy order.
    pub tables: Vec<TableCount>,
    /// The identity sequences moved (tables that had no ids keep theirs).
    pub identities: Vec<IdentityStart>,
}

impl CopyReport {
    /// Rows copied, over all tables.
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|t| t.postgres).sum()
    }
}

/// The tables copied, in order (parents before the tables that reference them).
pub fn table_names() -> impl Iterator<Item = &'static str> {
    TABLES.iter().map(|t| t.name)
}

/// Copies every table of the SQLite database `from` into the empty PostgreSQL database
/// `to` (see the module docs): one snapshot, one transaction, ids kept, counts verified.
pub async fn copy_sqlite_to_postgres(from: &Path, to: &str, progress: Progress<'_>) -> Result<CopyReport, StoreError> {
    copy_in_chunks(from, to, CHUNK_ROWS, progress).await
}

/// What a column holds, on both sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    /// REAL in SQLite, DOUBLE PRECISION in PostgreSQL.
    Float,
    /// INTEGER 0/1 in SQLite, BOOLEAN in PostgreSQL.
    Bool,
    Text,
    /// Text or NULL.
    OptText,
    /// INTEGER or NULL.
    OptInt,
    /// BLOB in SQLite, BYTEA in PostgreSQL.
    Bytes,
}

struct Column {
    /// In PostgreSQL (and SQLite, but for `source`).
    name: &'static str,
    /// What SQLite selects for it.
    source: &'static str,
    kind: Kind,
}

const fn col(name: &'static str, kind: Kind) -> Column {
    Column { name, source: name, kind }
}

struct Table {
    name: &'static str,
    columns: &'static [Column],
    /// SQLite's order of reading (the primary key: deterministic, and for history the
    /// rowid, so its ids are written in order).
    order_by: &'static str,
    /// `id` is an identity column in PostgreSQL, whose sequence must continue after the
    /// copied ids.
    identity: bool,
}

use Kind::{Bool, Bytes, Float, Int, OptInt, OptText, Text};

/// Every table of schema version 9 on both engines, parents first (`users` and
/// `api_tokens` reference `tenants`).
const TABLES: &[Table] = &[
    Table {
        name: "tenants",
        columns: &[col("name", Text), col("created_ms", Int), col("unsecured_mqtt", Bool), col("retention_days", Int)],
        order_by: "name",
        identity: false,
    },
    Table {
        name: "users",
        columns: &[
            col("id", Int),
            col("username", Text),
            col("service", Text),
            col("email", Text),
            col("name", Text),
            col("profile", Text),
            col("password_hash", Text),
            col("created_date", Text),
            col("created_by", Text),
        ],
        order_by: "id",
        identity: true,
    },
    Table {
        name: "api_tokens",
        columns: &[
            col("id", Text),
            col("tenant", Text),
            col("name", Text),
            col("scopes", Text),
            col("token_hash", Text),
            col("created_ms", Int),
            col("created_by", Text),
        ],
        order_by: "id",
        identity: false,
    },
    Table {
        name: "templates",
        columns: &[col("tenant", Text), col("id", Int), col("doc", Text)],
        order_by: "tenant, id",
        identity: false,
    },
    Table {
        name: "devices",
        columns: &[col("tenant", Text), col("id", Text), col("doc", Text), col("secret_hash", OptText)],
        order_by: "tenant, id",
        identity: false,
    },
    Table {
        name: "counters",
        columns: &[col("tenant", Text), col("name", Text), col("value", Int)],
        order_by: "tenant, name",
        identity: false,
    },
    Table {
        name: "series",
        columns: &[col("id", Int), col("tenant", Text), col("device_id", Text), col("attr", Text)],
        order_by: "id",
        identity: true,
    },
    Table { name: "dead_series", columns: &[col("id", Int)], order_by: "id", identity: false },
    Table {
        name: "seat_accounts",
        columns: &[
            col("tenant", Text),
            col("account_id", Text),
            col("plan", Text),
            col("users", Int),
            col("created_ms", Int),
        ],
        order_by: "tenant, account_id",
        identity: false,
    },
    Table {
        name: "seat_users",
        columns: &[col("tenant", Text), col("account_id", Text), col("user_id", Text), col("first_seen_ms", Int)],
        order_by: "tenant, account_id, user_id",
        identity: false,
    },
    Table {
        name: "secrets",
        columns: &[col("name", Text), col("value", Bytes), col("created_ms", Int)],
        order_by: "name",
        identity: false,
    },
    Table { name: "ingested", columns: &[col("id", Bytes), col("ms", Int)], order_by: "id", identity: false },
    Table {
        name: "console_sessions",
        columns: &[
            col("id_hash", Text),
            col("tenant", Text),
            col("user_id", Int),
            col("username", Text),
            col("profile", Text),
            col("csrf", Text),
            col("created_ms", Int),
            col("last_seen_ms", Int),
        ],
        order_by: "id_hash",
        identity: false,
    },
    Table {
        name: "stream_tickets",
        columns: &[
            col("hash", Text),
            col("tenant", Text),
            col("user_id", Int),
            col("username", Text),
            col("expires_ms", Int),
        ],
        order_by: "hash",
        identity: false,
    },
    Table {
        name: "console_dashboards",
        columns: &[col("tenant", Text), col("user_id", Int), col("layout", Text), col("updated_ms", Int)],
        order_by: "tenant, user_id",
        identity: false,
    },
    Table {
        name: "certificates",
        columns: &[
            col("fingerprint", Text),
            col("tenant", Text),
            col("device", OptText),
            col("application", OptText),
            col("pem", Text),
            col("serial", Text),
            col("not_after_ms", Int),
            col("created_ms", Int),
            col("revoked_ms", OptInt),
            col("issuer", Text),
            col("auto_registered", Bool),
        ],
        order_by: "fingerprint",
        identity: false,
    },
    Table {
        name: "trusted_cas",
        columns: &[
            col("tenant", Text),
            col("fingerprint", Text),
            col("pem", Text),
            col("subject_dn", Text),
            col("not_before_ms", Int),
            col("not_after_ms", Int),
            col("allow_auto_registration", Bool),
            col("created_ms", Int),
            col("modified_ms", Int),
        ],
        order_by: "tenant, fingerprint",
        identity: false,
    },
    Table {
        name: "flows",
        columns: &[
            col("tenant", Text),
            col("id", Text),
            col("label", Text),
            col("enabled", Bool),
            col("trace", Bool),
            col("flow", Text),
            col("created_ms", Int),
            col("updated_ms", Int),
        ],
        order_by: "tenant, id",
        identity: false,
    },
    // Readings flows have not run yet: they run on the new store.
    Table {
        name: "flow_backlog",
        columns: &[col("id", Int), col("tenant", Text), col("device", Text), col("reading", Text)],
        order_by: "id",
        identity: true,
    },
    // The auction market: users, offers, then their bids (in the order placed).
    Table {
        name: "market_users",
        columns: &[col("username", Text), col("password_hash", Text), col("created_ms", Int)],
        order_by: "username",
        identity: false,
    },
    Table {
        name: "market_offers",
        columns: &[
            col("id", Text),
            col("title", Text),
            col("start_price", Float),
            col("bid_price", Float),
            col("go_live_ms", Int),
            col("lifetime_s", Int),
            col("photo_url", Text),
            col("created_by", Text),
            col("sold", Bool),
            col("winning_bid", OptText),
        ],
        order_by: "id",
        identity: false,
    },
    Table {
        name: "market_bids",
        columns: &[
            col("id", Text),
            col("offer_id", Text),
            col("username", Text),
            col("bid_price", Float),
            col("ts_ms", Int),
            col("winning", Bool),
            col("accepted", Bool),
        ],
        order_by: "id",
        identity: false,
    },
    // Load-test results.
    Table {
        name: "load_results",
        columns: &[
            col("tenant", Text),
            col("job", Text),
            col("second", Int),
            col("count", Int),
            col("errors", Int),
            col("p50_us", Int),
            col("p90_us", Int),
            col("p99_us", Int),
            col("max_us", Int),
            col("latency", Bytes),
            col("updated_ms", Int),
        ],
        order_by: "tenant, job, second",
        identity: false,
    },
    // Last: by far the longest.
    Table {
        name: "history",
        columns: &[
            Column { name: "id", source: "rowid", kind: Int },
            col("series", Int),
            col("ts", Int),
            col("value", Text),
        ],
        order_by: "rowid",
        identity: true,
    },
];

// TABLES describes schema version 16 of SQLite and 14 of PostgreSQL (SQLite's 15 and 16
// only add history's log, read as part of `history`): a new migration step must be
// copied too (and the test `tables_cover_both_schemas` names what is missing).
const _: () = assert!(crate::migrate::SCHEMA_VERSION == 16 && crate::postgres::SCHEMA_VERSION == 14);

/// History's logged readings not yet in `history` (SQLite only, see `history::stage`),
/// copied after `history`'s own rows as more rows of it: their ids continue after its
/// largest rowid in the order they were written, so readings of one ms keep their order.
const STAGED_HISTORY: &str = "SELECT (SELECT coalesce(max(rowid), 0) FROM history) + row_number() OVER (ORDER BY n),
        series, ts, value
     FROM history_log, history_log_moving AS m WHERE NOT (n < m.below_n AND series < m.below_series) ORDER BY n";

impl Table {
    /// What SQLite reads for this table beyond its own rows.
    fn staged(&self) -> Option<&'static str> {
        (self.name == "history").then_some(STAGED_HISTORY)
    }

    fn sqlite_select(&self) -> String {
        let columns: Vec<&str> = self.columns.iter().map(|c| c.source).collect();
        format!("SELECT {} FROM {} ORDER BY {}", columns.join(", "), self.name, self.order_by)
    }

    fn pg_copy(&self) -> String {
        let columns: Vec<&str> = self.columns.iter().map(|c| c.name).collect();
        format!("COPY {} ({}) FROM STDIN BINARY", self.name, columns.join(", "))
    }

    fn pg_types(&self) -> Vec<Type> {
        self.columns
            .iter()
            .map(|c| match c.kind {
                Int | OptInt => Type::INT8,
                Float => Type::FLOAT8,
                Bool => Type::BOOL,
                Text | OptText => Type::TEXT,
                Bytes => Type::BYTEA,
            })
            .collect()
    }
}

/// One value on its way.
#[derive(Debug)]
enum Cell {
    Null,
    Int(i64),
    Float(f64),
    Bool(bool),
    Text(String),
    Bytes(Vec<u8>),
}

impl Kind {
    fn read(self, row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Cell> {
        Ok(match self {
            Int => Cell::Int(row.get(i)?),
            Float => Cell::Float(row.get(i)?),
            Bool => Cell::Bool(row.get(i)?),
            Text => Cell::Text(row.get(i)?),
            OptText => row.get::<_, Option<String>>(i)?.map_or(Cell::Null, Cell::Text),
            OptInt => row.get::<_, Option<i64>>(i)?.map_or(Cell::Null, Cell::Int),
            Bytes => Cell::Bytes(row.get(i)?),
        })
    }
}

impl ToSql for Cell {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        // Checked, so that a value can only go into a column of its own type.
        match self {
            Cell::Null => Ok(IsNull::Yes),
            Cell::Int(v) => v.to_sql_checked(ty, out),
            Cell::Float(v) => v.to_sql_checked(ty, out),
            Cell::Bool(v) => v.to_sql_checked(ty, out),
            Cell::Text(v) => v.to_sql_checked(ty, out),
            Cell::Bytes(v) => v.to_sql_checked(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        <i64 as ToSql>::accepts(ty)
            || <f64 as ToSql>::accepts(ty)
            || <bool as ToSql>::accepts(ty)
            || <String as ToSql>::accepts(ty)
            || <Vec<u8> as ToSql>::accepts(ty)
    }

    to_sql_checked!();
}

/// What the reader found when its snapshot began, per table of [`TABLES`].
#[derive(Debug)]
struct Snapshot {
    counts: Vec<u64>,
    /// For identity tables, the id after which the sequence must continue.
    last_ids: Vec<Option<i64>>,
}

/// From the SQLite reader to `COPY`: one `Snapshot`, then for each table in turn its
/// rows (`Rows`, each the cells of up to a chunk of rows, row after row) and `End`.
enum Msg {
    Snapshot(Snapshot),
    Rows(Vec<Cell>),
    End,
}

/// Why writing stopped early.
enum Stop {
    /// The reader's channel closed: the reader failed (its error says why).
    Reader,
    Failed(StoreError),
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Self {
        Stop::Failed(e)
    }
}

impl From<tokio_postgres::Error> for Stop {
    fn from(e: tokio_postgres::Error) -> Self {
        Stop::Failed(e.into())
    }
}

fn in_table(table: &'static str) -> impl FnOnce(StoreError) -> StoreError {
    move |e| StoreError::Copying { table, source: Box::new(e) }
}

async fn copy_in_chunks(
    from: &Path,
    to: &str,
    chunk_rows: usize,
    progress: Progress<'_>,
) -> Result<CopyReport, StoreError> {
    // open_file would create a missing database: a mistyped path would copy nothing.
    if !from.is_file() {
        return Err(StoreError::CopyRefused(format!(
            "there is no SQLite database at {} (ingot serve keeps it in <data-dir>/ingot.db)",
            from.display()
        )));
    }
    let path = from.to_path_buf();
    let sqlite = run_blocking(None, move || {
        SqliteStore::open_file(&path, StoreOptions { readers: 1, sync_full: true, ..Default::default() })
    })
    .await?;
    let pg = PgStore::connect(to, PgOptions { pool_size: 1, ..PgOptions::default() }).await?;
    let version = pg.schema_version().await?;
    if version != crate::postgres::SCHEMA_VERSION {
        return Err(StoreError::CopyRefused(format!(
            "the PostgreSQL database {} has schema version {version}, newer than this Ingot's {}: \
             copy with the Ingot that created it, or into an empty database",
            pg.url(),
            crate::postgres::SCHEMA_VERSION
        )));
    }

    let mut client = pg.client().await?;
    let tx = client.transaction().await?;
    let names: Vec<&str> = table_names().collect();
    tx.batch_execute(&format!("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE", names.join(", "))).await?;
    let non_empty = non_empty_tables(&tx).await?;
    if !non_empty.is_empty() {
        return Err(StoreError::TargetNotEmpty { url: pg.url().to_string(), tables: non_empty.join(", ") });
    }

    let (send, mut recv) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let read = sqlite.read(move |c| read_snapshot(c, chunk_rows, &send));
    let write = async {
        let written = write_tables(&tx, &mut recv, progress).await;
        // Unblocks a reader waiting to send, should writing have stopped early.
        drop(recv);
        written
    };
    let (written, read) = tokio::join!(write, read);
    let snapshot = match written {
        Ok(snapshot) => {
            read?;
            snapshot
        }
        Err(Stop::Reader) => {
            return Err(read.err().unwrap_or_else(|| StoreError::Task("the SQLite reader stopped early".into())));
        }
        Err(Stop::Failed(e)) => return Err(e),
    };

    let mut identities = Vec::new();
    for (table, last_id) in TABLES.iter().zip(&snapshot.last_ids) {
        // Sequences start at 1: with no id ever used, the sequence stays as it is.
        if let Some(last_id) = last_id.filter(|id| *id >= 1) {
            tx.query_one("SELECT setval(pg_get_serial_sequence($1, 'id'), $2)", &[&table.name, &last_id])
                .await
                .map_err(|e| in_table(table.name)(e.into()))?;
            identities.push(IdentityStart { table: table.name, last_id });
        }
    }
    let tables = verify(&snapshot.counts, &count_rows(&tx).await?)?;
    tx.commit().await?;
    Ok(CopyReport { tables, identities })
}

/// Runs on a blocking thread: reads the snapshot and every row, and sends them.
fn read_snapshot(c: &Connection, chunk_rows: usize, out: &mpsc::Sender<Msg>) -> Result<(), StoreError> {
    let send = |msg| out.blocking_send(msg).map_err(|_| StoreError::Task("the copy into PostgreSQL stopped".into()));
    // Rolled back when dropped; the snapshot begins with its first read, the counts.
    let tx = c.unchecked_transaction()?;
    let mut counts = Vec::with_capacity(TABLES.len());
    let mut staged_counts = Vec::with_capacity(TABLES.len());
    for t in TABLES {
        let n: i64 = tx.query_row(&format!("SELECT count(*) FROM {}", t.name), [], |r| r.get(0))?;
        let staged: i64 = match t.staged() {
            Some(sql) => tx.query_row(&format!("SELECT count(*) FROM ({sql})"), [], |r| r.get(0))?,
            None => 0,
        };
        counts.push((n + staged) as u64);
        staged_counts.push(staged);
    }
    let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version != crate::migrate::SCHEMA_VERSION {
        return Err(StoreError::CopyRefused(format!(
            "the SQLite database has schema version {version}, newer than this Ingot's {}: \
             copy it with the Ingot that last ran on it",
            crate::migrate::SCHEMA_VERSION
        )));
    }
    // AUTOINCREMENT's high-water marks, beyond the largest id left when rows were deleted.
    let mut sequences = HashMap::new();
    let mut st = tx.prepare("SELECT name, seq FROM sqlite_sequence")?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        sequences.insert(r.get::<_, String>(0)?, r.get::<_, i64>(1)?);
    }
    drop(rows);
    drop(st);
    let mut last_ids = Vec::with_capacity(TABLES.len());
    for (t, staged) in TABLES.iter().zip(staged_counts) {
        let last = if t.identity {
            let max: i64 =
                tx.query_row(&format!("SELECT coalesce(max(rowid), 0) FROM {}", t.name), [], |r| r.get(0))?;
            Some((max + staged).max(sequences.get(t.name).copied().unwrap_or(0)))
        } else {
            None
        };
        last_ids.push(last);
    }
    send(Msg::Snapshot(Snapshot { counts, last_ids }))?;

    for t in TABLES {
        let read_table = || -> Result<(), StoreError> {
            let width = t.columns.len();
            let mut cells = Vec::with_capacity(chunk_rows * width);
            for select in std::iter::once(t.sqlite_select()).chain(t.staged().map(String::from)) {
                let mut st = tx.prepare(&select)?;
                let mut rows = st.query([])?;
                while let Some(r) = rows.next()? {
                    for (i, c) in t.columns.iter().enumerate() {
                        cells.push(c.kind.read(r, i)?);
                    }
                    if cells.len() >= chunk_rows * width {
                        send(Msg::Rows(std::mem::replace(&mut cells, Vec::with_capacity(chunk_rows * width))))?;
                    }
                }
            }
            if !cells.is_empty() {
                send(Msg::Rows(cells))?;
            }
            send(Msg::End)
        };
        read_table().map_err(in_table(t.name))?;
    }
    Ok(())
}

/// Writes every table with `COPY` as the reader sends it; returns the reader's snapshot.
async fn write_tables(
    tx: &tokio_postgres::Transaction<'_>,
    recv: &mut mpsc::Receiver<Msg>,
    progress: Progress<'_>,
) -> Result<Snapshot, Stop> {
    let Some(Msg::Snapshot(snapshot)) = recv.recv().await else { return Err(Stop::Reader) };
    for (t, &total) in TABLES.iter().zip(&snapshot.counts) {
        if total > 0 {
            progress(t.name, 0, total);
        }
        let copied = async {
            let sink = tx.copy_in(&t.pg_copy()).await?;
            let writer = BinaryCopyInWriter::new(sink, &t.pg_types());
            let mut writer = std::pin::pin!(writer);
            let width = t.columns.len();
            let mut done = 0u64;
            loop {
                match recv.recv().await {
                    Some(Msg::Rows(cells)) => {
                        for row in cells.chunks(width) {
                            writer.as_mut().write_raw(row).await?;
                        }
                        done += (cells.len() / width) as u64;
                        if done < total {
                            progress(t.name, done, total);
                        }
                    }
                    Some(Msg::End) => break,
                    Some(Msg::Snapshot(_)) | None => return Err(Stop::Reader),
                }
            }
            Ok::<_, Stop>(writer.as_mut().finish().await?)
        };
        let copied = match copied.await {
            Ok(n) => n,
            Err(Stop::Failed(e)) => return Err(Stop::Failed(in_table(t.name)(e))),
            Err(Stop::Reader) => return Err(Stop::Reader),
        };
        if copied != total {
            return Err(StoreError::CountMismatch { table: t.name, sqlite: total, postgres: copied }.into());
        }
        progress(t.name, copied, total);
    }
    Ok(snapshot)
}

/// The tables of [`TABLES`] that have a row.
async fn non_empty_tables(client: &impl GenericClient) -> Result<Vec<String>, StoreError> {
    let checks: Vec<String> =
        table_names().map(|t| format!("SELECT '{t}'::text WHERE EXISTS (SELECT 1 FROM {t})")).collect();
    let rows = client.query(&checks.join(" UNION ALL "), &[]).await?;
    rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
}

/// Rows of every table of [`TABLES`], in order, in one statement.
async fn count_rows(client: &impl GenericClient) -> Result<Vec<u64>, StoreError> {
    let counts: Vec<String> = table_names().map(|t| format!("(SELECT count(*) FROM {t})")).collect();
    let row = client.query_one(&format!("SELECT {}", counts.join(", ")), &[]).await?;
    (0..TABLES.len()).map(|i| Ok(row.try_get::<_, i64>(i)? as u64)).collect()
}

/// The counts side by side, or the first table whose counts differ.
fn verify(sqlite: &[u64], postgres: &[u64]) -> Result<Vec<TableCount>, StoreError> {
    let tables: Vec<TableCount> = TABLES
        .iter()
        .zip(sqlite.iter().zip(postgres))
        .map(|(t, (&sqlite, &postgres))| TableCount { table: t.name, sqlite, postgres })
        .collect();
    match tables.iter().find(|t| t.sqlite != t.postgres) {
        Some(t) => Err(StoreError::CountMismatch { table: t.table, sqlite: t.sqlite, postgres: t.postgres }),
        None => Ok(tables),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    use model::DeviceData;
    use serde_json::{Value, json};

    use super::*;
    use crate::catalog::{CatalogChange, DeviceRow};
    use crate::history::HistoryQuery;
    use crate::prelude::*;
    use crate::seats::LoginRow;
    use crate::testing::TestDb;
    use crate::tokens::TokenRecord;
    use crate::users::UserRecord;

    fn reading(tenant: &str, device: &str, ts: i64, attrs: Value) -> Arc<DeviceData> {
        crate::contract::reading_of(tenant, device, ts, attrs)
    }

    fn user(name: &str, tenant: &str) -> UserRecord {
        UserRecord {
            id: 0,
            username: name.into(),
            service: tenant.into(),
            email: format!("{name}@example.com"),
            name: format!("{name} Example"),
            profile: "admin".into(),
            password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1${name}"),
            created_date: "2024-05-01T10:00:00Z".into(),
            created_by: "admin".into(),
        }
    }

    fn token(id: &str, tenant: &str, ms: i64) -> TokenRecord {
        TokenRecord {
            id: id.into(),
            tenant: tenant.into(),
            name: format!("token {id}"),
            scopes: "metrics:write,devices:read".into(),
            token_hash: format!("hash-{id}"),
            created_ms: ms,
            created_by: "admin".into(),
        }
    }

    fn all(tenant: &str, device: &str, attr: &str) -> HistoryQuery {
        HistoryQuery {
            tenant: tenant.into(),
            device_id: device.into(),
            attr: attr.into(),
            from_ms: None,
            to_ms: None,
            newest_first: false,
            limit: None,
        }
    }

    /// Its staged history moves every 7 values, so that readings are both in `history`
    /// and staged when copied (see `history::stage`).
    fn open_sqlite(dir: &Path) -> SqliteStore {
        let store =
            SqliteStore::open(dir, StoreOptions { readers: 2, sync_full: false, ..Default::default() }).unwrap();
        store.set_history_stage_limit(7);
        store
    }

    /// Readings of device `gone`, deleted with its device (left for retention).
    const GONE_READINGS: usize = 4;
    /// Readings of `acme/d1/n`, enough for several chunks.
    const N_READINGS: i64 = 50;

    /// Every kind of row, through the traits, as a running installation makes them.
    /// Returns the id of the deleted user and of the purged (last created) series.
    async fn fill(s: &SqliteStore) -> (i64, i64) {
        s.ensure_tenant("acme", 30).await.unwrap();
        s.ensure_tenant("globex", 7).await.unwrap();
        let mut acme = s.tenant("acme").await.unwrap().unwrap();
        acme.unsecured_mqtt = true;
        acme.retention_days = 3;
        s.update_tenant(acme).await.unwrap();

        for (name, tenant) in [("alice", "acme"), ("bob", "acme"), ("carol", "globex")] {
            s.insert_user(user(name, tenant)).await.unwrap();
        }
        let dave = s.insert_user(user("dave", "acme")).await.unwrap();
        assert!(s.delete_user("acme", dave.id).await.unwrap());

        for (id, tenant, ms) in [("t1", "acme", 10), ("t2", "acme", 11), ("t3", "globex", 12)] {
            s.insert_token(token(id, tenant, ms)).await.unwrap();
        }

        let device = |id: &str, secret: Option<&str>| DeviceRow {
            id: id.into(),
            doc: json!({"id": id, "label": format!("Device {id}"), "attrs": {"1": [{"label": "t", "type": "dynamic"}]}}),
            secret_hash: secret.map(str::to_string),
            templates: vec![],
        };
        let acme_catalog = CatalogChange {
            new_templates: vec![
                (1, json!({"id": 1, "label": "Thermometer"})),
                (2, json!({"label": "é ünïcode", "id": 2})),
            ],
            new_devices: vec![
                device("d1", Some("$argon2id$d1")),
                device("d2", None),
                device("gone", Some("$argon2id$gone")),
            ],
            ..CatalogChange::default()
        };
        s.save_catalog("acme", acme_catalog).await.unwrap();
        s.allocate_ids("acme", "template", 2).await.unwrap();
        s.allocate_ids("acme", "attr", 7).await.unwrap();
        let globex_catalog = CatalogChange {
            new_templates: vec![(1, json!({"id": 1}))],
            new_devices: vec![device("d1", Some("$argon2id$globex"))],
            ..CatalogChange::default()
        };
        s.save_catalog("globex", globex_catalog).await.unwrap();
        s.allocate_ids("globex", "template", 1).await.unwrap();
        let session = crate::sessions::SessionRecord {
            id_hash: "0f".repeat(32),
            tenant: "acme".into(),
            user_id: 1,
            username: "admin".into(),
            profile: "admin".into(),
            csrf: "c".repeat(64),
            created_ms: 1_700_000_000_000,
            last_seen_ms: 1_700_000_000_500,
        };
        s.insert_session(session, 10).await.unwrap();
        let ticket = crate::tickets::TicketRecord {
            hash: "1e".repeat(32),
            tenant: "acme".into(),
            user_id: 1,
            username: "admin".into(),
            expires_ms: i64::MAX,
        };
        assert!(s.insert_ticket(ticket, 0, 1).await.unwrap());
        let layout = r#"{"widgets":[{"type":"tile","device":"d1","attr":"t"}]}"#;
        let dashboard = crate::dashboards::DashboardRecord { layout: layout.into(), updated_ms: 1_700_000_000_900 };
        s.save_dashboard("acme", 1, dashboard).await.unwrap();
        for (n, revoked) in [(1, None), (2, Some(1_700_000_000_900))] {
            let cert = crate::certificates::CertificateRecord {
                fingerprint: format!("AB:{n:02}"),
                tenant: "acme".into(),
                device: (n == 1).then(|| "d1".into()),
                application: None,
                pem: "-----BEGIN CERTIFICATE-----".into(),
                serial: format!("{n:x}"),
                not_after_ms: 1_800_000_000_000,
                created_ms: 1_700_000_000_000,
                revoked_ms: revoked,
                issuer: (n == 2).then(|| "CA:01".into()),
                auto_registered: n == 2,
            };
            assert!(s.insert_certificate(cert).await.unwrap());
        }
        let ca = crate::certificates::TrustedCaRecord {
            tenant: "acme".into(),
            fingerprint: "CA:01".into(),
            pem: "-----BEGIN CERTIFICATE-----".into(),
            subject_dn: "CN=Acme Devices".into(),
            not_before_ms: 1_600_000_000_000,
            not_after_ms: 1_900_000_000_000,
            allow_auto_registration: true,
            created_ms: 1_700_000_000_000,
            modified_ms: 1_700_000_000_100,
        };
        s.insert_trusted_ca(ca, 10).await.unwrap();
        let flow = crate::flows::FlowRecord {
            tenant: "acme".into(),
            id: "0b7c6f1e-0000-4000-8000-000000000001".into(),
            label: "kitchen".into(),
            enabled: true,
            trace: true,
            flow: r#"[{"id":"a","type":"tab"}]"#.into(),
            created_ms: 1_700_000_000_000,
            updated_ms: 1_700_000_000_200,
        };
        assert!(s.insert_flow(flow, 10).await.unwrap());
        let seller = crate::market::MarketUser {
            username: "Azerbaijan".into(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            created_ms: 1_700_000_000_000,
        };
        assert!(s.insert_market_user(seller).await.unwrap());
        let offer = crate::market::OfferRecord {
            id: "5ca3414276889736ba1d7efd".into(),
            title: "Swiss Shales".into(),
            start_price: 12.34,
            bid_price: 12.34,
            go_live_ms: 1_700_000_000_000,
            lifetime_s: 0,
            photo_url: String::new(),
            created_by: "Azerbaijan".into(),
            sold: false,
            winning_bid: None,
        };
        s.insert_offer(offer).await.unwrap();
        let bid = crate::market::BidRecord {
            id: "5ca34c2f7688973f34f8dee1".into(),
            offer_id: "5ca3414276889736ba1d7efd".into(),
            username: "baku".into(),
            bid_price: 6832427.5,
            ts_ms: 1_700_000_000_100,
            winning: false,
            accepted: false,
        };
        s.place_bids(vec![bid], 1_700_000_000_100).await.unwrap();
        s.push_backlog(vec![("acme".into(), "d1".into(), r#"{"attrs":{"t":1}}"#.into())]).await.unwrap();
        let second = crate::loadtests::LoadBucket {
            second: 1_700_000_000,
            count: 3,
            errors: 1,
            p50_us: 900,
            p90_us: 1000,
            p99_us: 1200,
            max_us: 1200,
            latency: vec![0, 1, 2, 255],
            updated_ms: 1_700_000_000_500,
        };
        let whole = crate::loadtests::LoadBucket { second: crate::loadtests::WHOLE_JOB, ..second.clone() };
        s.add_load_results("acme", "smoke", vec![second, whole], |_, new| Ok(new.clone())).await.unwrap();

        let logins = [("acme", "a1", "u1"), ("acme", "a1", "u2"), ("acme", "a2", "u1"), ("globex", "g1", "u9")].map(
            |(tenant, account, user)| LoginRow {
                tenant: tenant.into(),
                account_id: account.into(),
                user_id: user.into(),
            },
        );
        s.record_logins(logins.to_vec(), "free", 10).await.unwrap();
        s.set_plan("acme", "a2", "pro").await.unwrap();

        // Two readings of one ms (their order is the rowid's), values of every JSON form.
        let t0 = 1_700_000_000_000;
        s.write_history(vec![
            reading("acme", "d1", t0, json!({"t": 1, "s": "first"})),
            reading("acme", "d1", t0, json!({"t": 2, "s": "second"})),
            reading("globex", "d1", t0, json!({"t": 3})),
        ])
        .await
        .unwrap();
        let odd = json!({"nested": {"b": 1, "a": [1.5, null, "é\u{0}"]}, "big": 12345678901234567_i64});
        s.write_history(vec![reading("acme", "d1", t0 + 1, json!({"t": 2.5, "s": odd, "flag": true}))]).await.unwrap();
        let many = (0..N_READINGS).map(|i| reading("acme", "d1", t0 + 10 + i, json!({"n": i}))).collect();
        s.write_history(many).await.unwrap();
        let gone = (0..GONE_READINGS as i64).map(|i| reading("acme", "gone", t0 + i, json!({"a": i}))).collect();
        s.write_history(gone).await.unwrap();
        // Deleted with its device: its series ids go to dead_series, its readings stay.
        let remove = CatalogChange { remove_devices: vec!["gone".into()], ..CatalogChange::default() };
        s.save_catalog("acme", remove).await.unwrap();
        // The newest series, expired and purged: sqlite_sequence stays beyond max(series.id).
        s.write_history(vec![reading("acme", "d2", 1_000, json!({"once": "old"}))]).await.unwrap();
        let purged: i64 =
            s.read(|c| Ok(c.query_row("SELECT id FROM series WHERE attr = 'once'", [], |r| r.get(0))?)).await.unwrap();
        assert_eq!(s.purge_history("acme", 5_000).await.unwrap(), 1);
        assert_eq!(s.purge_empty_series().await.unwrap(), 1);

        s.secret_or_insert("jwt", vec![0, 1, 2, 255, 0, 128]).await.unwrap();
        s.secret_or_insert("ca.key", b"-----BEGIN PRIVATE KEY-----\n".to_vec()).await.unwrap();
        // A reading from a bus that may deliver twice: its id goes to `ingested`.
        let store = s.clone();
        let once = vec![reading("acme", "d1", t0 + 5, json!({"n": -1}))];
        tokio::task::spawn_blocking(move || store.write_history_blocking(&once, Some(&[u128::MAX - 1])))
            .await
            .unwrap()
            .unwrap();
        (dave.id, purged)
    }

    /// Rows of a table in SQLite, by a query of the test's own.
    /// Rows of `table`; for history, its staged readings too.
    async fn sqlite_count(s: &SqliteStore, table: &'static str) -> u64 {
        let sql = match table {
            "history" => format!("SELECT (SELECT count(*) FROM history) + (SELECT count(*) FROM ({STAGED_HISTORY}))"),
            _ => format!("SELECT count(*) FROM {table}"),
        };
        s.read(move |c| Ok(c.query_row(&sql, [], |r| r.get::<_, i64>(0))? as u64)).await.unwrap()
    }

    type Calls = Mutex<Vec<(String, u64, u64)>>;

    /// The progress calls are per table in copy order, rising, each table's last one
    /// complete, and agree with the report.
    fn check_progress(calls: &Calls, report: &CopyReport) {
        let calls = calls.lock().unwrap();
        let mut at = 0;
        for t in &report.tables {
            let mine: Vec<_> = calls[at..].iter().take_while(|c| c.0 == t.table).collect();
            assert!(!mine.is_empty(), "no progress for {}: {calls:?}", t.table);
            at += mine.len();
            assert!(mine.windows(2).all(|w| w[0].1 < w[1].1), "{}: rising: {mine:?}", t.table);
            assert!(mine.iter().all(|c| c.2 == t.sqlite), "{}: total: {mine:?}", t.table);
            assert_eq!(mine.last().unwrap().1, t.sqlite, "{}: ends complete", t.table);
        }
        assert_eq!(at, calls.len(), "no other calls: {calls:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_row_reads_back_the_same_from_postgres_and_ids_are_never_reused() {
        let Some(db) = TestDb::create().await else { return };
        let dir = tempfile::tempdir().unwrap();
        let sqlite = open_sqlite(dir.path());
        let (deleted_user, purged_series) = fill(&sqlite).await;

        let calls = Calls::default();
        let record = |t: &str, done: u64, total: u64| calls.lock().unwrap().push((t.to_string(), done, total));
        // Chunks of 3 rows: many chunks per table, some partial.
        let report = copy_in_chunks(&dir.path().join("ingot.db"), &db.url, 3, &record).await.unwrap();

        let names: Vec<&str> = report.tables.iter().map(|t| t.table).collect();
        assert_eq!(names, table_names().collect::<Vec<_>>());
        for t in &report.tables {
            assert_eq!(t.sqlite, sqlite_count(&sqlite, t.table).await, "{}", t.table);
            assert_eq!(t.postgres, t.sqlite, "{}", t.table);
            assert!(t.sqlite > 0, "the test fills every table: {} is empty", t.table);
        }
        let count = |table: &str| report.tables.iter().find(|t| t.table == table).unwrap().postgres;
        assert_eq!(count("users"), 3);
        assert_eq!(count("history"), 5 + 3 + 1 + N_READINGS as u64 + GONE_READINGS as u64);
        check_progress(&calls, &report);
        let history_calls = calls.lock().unwrap().iter().filter(|c| c.0 == "history").count();
        assert!(history_calls > 10, "history in chunks of 3: {history_calls} calls");

        let pg = PgStore::connect(&db.url, PgOptions::default()).await.unwrap();
        assert_eq!(pg.tenants().await.unwrap(), sqlite.tenants().await.unwrap());
        assert!(pg.tenant("acme").await.unwrap().unwrap().unsecured_mqtt, "0/1 became a boolean");
        for tenant in ["acme", "globex"] {
            assert_eq!(pg.users_of(tenant, None).await.unwrap(), sqlite.users_of(tenant, None).await.unwrap());
            assert_eq!(pg.tokens_of(tenant).await.unwrap(), sqlite.tokens_of(tenant).await.unwrap());
            assert_eq!(pg.accounts(tenant).await.unwrap(), sqlite.accounts(tenant).await.unwrap());
        }
        let alice = sqlite.user_by_login("alice").await.unwrap().unwrap();
        assert_eq!(pg.user_by_login("alice@example.com").await.unwrap(), Some(alice.clone()));
        assert_eq!(pg.user_by_id("acme", alice.id).await.unwrap(), Some(alice), "the id a JWT names");
        assert_eq!(pg.token_by_hash("hash-t2").await.unwrap(), Some(token("t2", "acme", 11)));
        assert_eq!(pg.account("acme", "a1").await.unwrap().unwrap().users, 2);

        let (mut from, mut to) = (sqlite.load_catalog().await.unwrap(), pg.load_catalog().await.unwrap());
        assert_eq!(to.templates, from.templates);
        assert_eq!(to.devices, from.devices);
        assert!(to.devices.iter().any(|d| d.3.is_none()) && to.devices.iter().any(|d| d.3.is_some()));
        from.counters.sort();
        to.counters.sort();
        assert_eq!(to.counters, from.counters);

        for (tenant, device) in [("acme", "d1"), ("acme", "d2"), ("acme", "gone"), ("globex", "d1")] {
            let attrs = sqlite.history_attrs(tenant, device).await.unwrap();
            assert_eq!(pg.history_attrs(tenant, device).await.unwrap(), attrs, "{tenant}/{device}");
            for attr in &attrs {
                let q = all(tenant, device, attr);
                assert_eq!(pg.history(q.clone()).await.unwrap(), sqlite.history(q.clone()).await.unwrap());
                let newest = HistoryQuery { newest_first: true, limit: Some(2), ..q };
                assert_eq!(pg.history(newest.clone()).await.unwrap(), sqlite.history(newest).await.unwrap());
            }
            assert_eq!(pg.latest(tenant, device).await.unwrap(), sqlite.latest(tenant, device).await.unwrap());
        }
        let t: Vec<Value> = pg.history(all("acme", "d1", "t")).await.unwrap().into_iter().map(|p| p.value).collect();
        assert_eq!(t, [json!(1), json!(2), json!(2.5)], "same-ms readings in the order written");
        assert_eq!(pg.history_attrs("acme", "gone").await.unwrap(), Vec::<String>::new());
        for name in ["jwt", "ca.key", "nothing"] {
            assert_eq!(pg.secret(name).await.unwrap(), sqlite.secret(name).await.unwrap(), "{name}");
        }
        assert_eq!(pg.dashboard("acme", 1).await.unwrap(), sqlite.dashboard("acme", 1).await.unwrap());
        assert!(pg.dashboard("acme", 1).await.unwrap().is_some());

        // Row for row, ids included: history's are SQLite's rowids, then its staged
        // readings' in the order written.
        let client = pg.client().await.unwrap();
        let got: Vec<(i64, i64, i64, String)> = client
            .query("SELECT id, series, ts, value FROM history ORDER BY id", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect();
        let (stored, staged) = sqlite
            .read(|c| {
                let rows = |sql: &str| -> Result<Vec<(i64, i64, i64, String)>, StoreError> {
                    let mut st = c.prepare(sql)?;
                    Ok(st
                        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                        .collect::<Result<_, _>>()?)
                };
                Ok((
                    rows("SELECT rowid, series, ts, value FROM history ORDER BY rowid")?,
                    rows(
                        "SELECT n, series, ts, value FROM history_log, history_log_moving AS m
                         WHERE NOT (n < m.below_n AND series < m.below_series) ORDER BY n",
                    )?,
                ))
            })
            .await
            .unwrap();
        assert!(!stored.is_empty() && !staged.is_empty(), "readings both moved and staged");
        let last = stored.last().unwrap().0;
        let want: Vec<_> = stored
            .into_iter()
            .chain(
                staged
                    .into_iter()
                    .enumerate()
                    .map(|(i, (_, series, ts, value))| (last + 1 + i as i64, series, ts, value)),
            )
            .collect();
        assert_eq!(got, want, "history");
        for (pg_sql, sqlite_sql) in [
            (
                "SELECT id, 0::int8, 0::int8, tenant || device_id || attr FROM series ORDER BY id",
                "SELECT id, 0, 0, tenant || device_id || attr FROM series ORDER BY id",
            ),
            (
                "SELECT id, 0::int8, 0::int8, '' FROM dead_series ORDER BY id",
                "SELECT id, 0, 0, '' FROM dead_series ORDER BY id",
            ),
        ] {
            let got: Vec<(i64, i64, i64, String)> = client
                .query(pg_sql, &[])
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
                .collect();
            let want: Vec<(i64, i64, i64, String)> = sqlite
                .read(move |c| {
                    let mut st = c.prepare(sqlite_sql)?;
                    Ok(st
                        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                        .collect::<Result<_, _>>()?)
                })
                .await
                .unwrap();
            assert_eq!(got, want, "{sqlite_sql}");
        }
        let max_history: i64 = client.query_one("SELECT max(id) FROM history", &[]).await.unwrap().get(0);

        // New rows continue after every id SQLite ever handed out, as SQLite would.
        let erin_pg = pg.insert_user(user("erin", "acme")).await.unwrap();
        let erin_sqlite = sqlite.insert_user(user("erin", "acme")).await.unwrap();
        assert!(erin_pg.id > deleted_user, "a deleted user's id is not reused: {} after {deleted_user}", erin_pg.id);
        assert_eq!(erin_pg.id, erin_sqlite.id);
        let again = vec![reading("acme", "d2", 1_700_000_100_000, json!({"once": "again"}))];
        pg.write_history(again.clone()).await.unwrap();
        sqlite.write_history(again).await.unwrap();
        let once_pg: i64 = client.query_one("SELECT id FROM series WHERE attr = 'once'", &[]).await.unwrap().get(0);
        let once_sqlite: i64 = sqlite
            .read(|c| Ok(c.query_row("SELECT id FROM series WHERE attr = 'once'", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert!(once_pg > purged_series, "a purged series' id is not reused: {once_pg} after {purged_series}");
        assert_eq!(once_pg, once_sqlite);
        let newest: i64 = client.query_one("SELECT max(id) FROM history", &[]).await.unwrap().get(0);
        assert!(newest > max_history, "new readings sort after the copied ones");
        let starts: Vec<(&str, i64)> = report.identities.iter().map(|i| (i.table, i.last_id)).collect();
        assert_eq!(
            starts,
            [("users", deleted_user), ("series", purged_series), ("flow_backlog", 1), ("history", max_history)]
        );

        // dead_series came along: retention removes the deleted device's readings.
        assert_eq!(pg.purge_orphan_history().await.unwrap(), GONE_READINGS);

        // Not a second time: the target has data now.
        let err = copy_sqlite_to_postgres(&dir.path().join("ingot.db"), &db.url, &|_, _, _| {}).await.unwrap_err();
        assert!(matches!(&err, StoreError::TargetNotEmpty { tables, .. } if tables.contains("users")), "{err:?}");
        assert!(err.to_string().contains("empty database"), "{err}");
        assert_eq!(pg.count_users().await.unwrap(), 4, "nothing was added");
    }

    /// Writes to the source while the copy runs (as a running `ingot serve` does) are
    /// not copied, and the counts still agree: one snapshot for every table.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_during_the_copy_are_left_out_of_the_snapshot() {
        let Some(db) = TestDb::create().await else { return };
        let dir = tempfile::tempdir().unwrap();
        let sqlite = open_sqlite(dir.path());
        fill(&sqlite).await;
        let count_before = |table| sqlite_count(&sqlite, table);
        let (history, secrets) = (count_before("history").await, count_before("secrets").await);

        let (wrote_early, wrote_midway) = (AtomicBool::new(false), AtomicBool::new(false));
        let writer = sqlite.clone();
        let late =
            |from: i64| -> Vec<_> { (0..20).map(|i| reading("acme", "d1", from + i, json!({"late": i}))).collect() };
        let meanwhile = |table: &str, done: u64, total: u64| {
            // The first call: the reader has its snapshot but, two chunks ahead at most
            // (CHUNKS_IN_FLIGHT), has not begun reading secrets or history yet.
            if table == "tenants" && !wrote_early.swap(true, Ordering::SeqCst) {
                writer.write_history_blocking(&late(1_800_000_000_000), None).unwrap();
                writer
                    .write_blocking(|tx| {
                        Ok(tx.execute("INSERT INTO secrets (name, value, created_ms) VALUES ('late', x'00', 1)", [])?)
                    })
                    .unwrap();
            }
            // Half-way through history.
            if table == "history" && done > 0 && done < total && !wrote_midway.swap(true, Ordering::SeqCst) {
                writer.write_history_blocking(&late(1_800_000_001_000), None).unwrap();
            }
        };
        let report = copy_in_chunks(&dir.path().join("ingot.db"), &db.url, 3, &meanwhile).await.unwrap();
        assert!(wrote_early.load(Ordering::SeqCst) && wrote_midway.load(Ordering::SeqCst));

        let count = |table: &str| report.tables.iter().find(|t| t.table == table).unwrap().postgres;
        assert_eq!((count("history"), count("secrets")), (history, secrets), "the snapshot's rows");
        assert_eq!(sqlite_count(&sqlite, "history").await, history + 40);
        assert_eq!(sqlite_count(&sqlite, "secrets").await, secrets + 1);
        let pg = PgStore::connect(&db.url, PgOptions::default()).await.unwrap();
        assert_eq!(pg.secret("late").await.unwrap(), None);
        assert!(pg.history(all("acme", "d1", "late")).await.unwrap().is_empty());
    }

    /// [`TABLES`] names every table and column of both schemas, with their types: a new
    /// migration step fails this until the copy knows about it.
    #[tokio::test]
    async fn tables_cover_both_schemas() {
        let want_sqlite: Vec<(String, Vec<(String, String)>)> = {
            let mut tables: Vec<_> = TABLES
                .iter()
                .map(|t| {
                    let mut columns: Vec<(String, String)> = t
                        .columns
                        .iter()
                        .filter(|c| c.source != "rowid")
                        .map(|c| {
                            let ty = match c.kind {
                                Int | OptInt | Bool => "INTEGER",
                                Float => "REAL",
                                Text | OptText => "TEXT",
                                Bytes => "BLOB",
                            };
                            (c.name.to_string(), ty.to_string())
                        })
                        .collect();
                    columns.sort();
                    (t.name.to_string(), columns)
                })
                .collect();
            tables.sort();
            tables
        };
        let dir = tempfile::tempdir().unwrap();
        let got_sqlite = open_sqlite(dir.path())
            .read(|c| {
                // Not history's log: copied as part of `history` (`Table::staged`).
                let mut st = c.prepare(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'
                     AND name NOT IN ('history_log', 'history_log_moving') ORDER BY name",
                )?;
                let names: Vec<String> = st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
                let mut tables = Vec::new();
                for name in names {
                    let mut st =
                        c.prepare(&format!("SELECT name, type FROM pragma_table_info('{name}') ORDER BY name"))?;
                    let columns = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
                    tables.push((name, columns));
                }
                Ok(tables)
            })
            .await
            .unwrap();
        assert_eq!(got_sqlite, want_sqlite, "SQLite's schema and TABLES");

        let Some(db) = TestDb::create().await else { return };
        let pg = PgStore::connect(&db.url, PgOptions::default()).await.unwrap();
        let rows = pg
            .client()
            .await
            .unwrap()
            .query(
                "SELECT table_name::text, column_name::text, data_type::text, is_nullable::text
                 FROM information_schema.columns
                 WHERE table_schema = current_schema() AND table_name <> 'schema_version'
                 ORDER BY 1, 2",
                &[],
            )
            .await
            .unwrap();
        let got: Vec<(String, String, String, String)> =
            rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect();
        let mut want: Vec<(String, String, String, String)> = TABLES
            .iter()
            .flat_map(|t| {
                t.columns.iter().map(|c| {
                    let ty = match c.kind {
                        Int | OptInt => "bigint",
                        Float => "double precision",
                        Bool => "boolean",
                        Text | OptText => "text",
                        Bytes => "bytea",
                    };
                    let nullable = if matches!(c.kind, OptText | OptInt) { "YES" } else { "NO" };
                    (t.name.to_string(), c.name.to_string(), ty.to_string(), nullable.to_string())
                })
            })
            .collect();
        want.sort();
        assert_eq!(got, want, "PostgreSQL's schema and TABLES");
        let identities: Vec<String> = pg
            .client()
            .await
            .unwrap()
            .query(
                "SELECT table_name::text FROM information_schema.columns
                 WHERE table_schema = current_schema() AND is_identity = 'YES' AND column_name = 'id' ORDER BY 1",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut want: Vec<&str> = TABLES.iter().filter(|t| t.identity).map(|t| t.name).collect();
        want.sort();
        assert_eq!(identities, want);
    }

    #[tokio::test]
    async fn a_missing_source_is_refused_and_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("typo.db");
        let err =
            copy_sqlite_to_postgres(&path, "postgres://ingot@127.0.0.1:1/ingot", &|_, _, _| {}).await.unwrap_err();
        assert!(matches!(err, StoreError::CopyRefused(_)), "{err:?}");
        assert!(err.to_string().contains("no SQLite database at"), "{err}");
        assert!(!path.exists());
    }

    #[test]
    fn a_count_that_differs_names_its_table() {
        let mut counts: Vec<u64> = (0..TABLES.len() as u64).collect();
        assert_eq!(verify(&counts, &counts).unwrap().len(), TABLES.len());
        let sqlite = counts.clone();
        counts[1] += 1;
        let err = verify(&sqlite, &counts).unwrap_err();
        assert!(matches!(err, StoreError::CountMismatch { table: "users", sqlite: 1, postgres: 2 }), "{err:?}");
    }
}
