//! How should the history writer's group commit go to PostgreSQL? One batch of 4,096
//! readings per transaction, committed (fsync on), written each [`Way`] into a table of
//! its own shaped like `history`: binary `COPY … FROM STDIN`, one multi-row
//! `INSERT … VALUES`, `INSERT … SELECT FROM unnest(…)`, one pipelined `INSERT` per
//! reading; and, to price `history.id` (the tie-break between readings of one ms),
//! binary COPY without it, with it unindexed, and with ids computed by the writer.
//!
//! A measurement, not a check (it only asserts that every way wrote every row), so it is
//! ignored by default. Against a private server:
//!
//! ```text
//! dir=$(mktemp -d); export INGOT_TEST_POSTGRES_URL=$(scripts/postgres.sh start $dir)
//! cargo test --release -p store history_batch -- --ignored --nocapture
//! scripts/postgres.sh stop $dir
//! ```

use std::time::{Duration, Instant};

use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

use super::{PgOptions, PgStore};
use crate::testing::TestDb;

const N: usize = 4096;
const ROUNDS: usize = 30;

type Row = (i64, i64, String);

#[derive(Clone, Copy, Debug)]
enum Way {
    /// Binary COPY into `history` as migrated: `id` an identity, index (series, ts, id).
    CopyBinary,
    /// Binary COPY into a table without `id`, index (series, ts).
    CopyNoId,
    /// Binary COPY, `id` an identity but not in the index.
    CopyIdNotIndexed,
    /// Binary COPY, `id` computed by the writer (one `nextval` per batch), index (series, ts, id).
    CopyClientId,
    /// One `INSERT … VALUES (…), (…), …` of the whole batch (12,288 parameters).
    MultiRowValues,
    /// `INSERT … SELECT * FROM unnest($1, $2, $3)`: three arrays, one statement for any size.
    Unnest,
    /// One prepared single-row `INSERT` per reading, pipelined on the connection.
    PipelinedRows,
}

const WAYS: [Way; 7] = [
    Way::CopyBinary,
    Way::CopyNoId,
    Way::CopyIdNotIndexed,
    Way::CopyClientId,
    Way::MultiRowValues,
    Way::Unnest,
    Way::PipelinedRows,
];

impl Way {
    /// Each way writes a table of its own, so that all grow alike.
    fn table(self) -> &'static str {
        match self {
            Way::CopyBinary => "history",
            Way::CopyNoId => "h_no_id",
            Way::CopyIdNotIndexed => "h_id_not_indexed",
            Way::CopyClientId => "h_client_id",
            Way::MultiRowValues => "h_values",
            Way::Unnest => "h_unnest",
            Way::PipelinedRows => "h_rows",
        }
    }
}

const TABLES: &str = "
    CREATE TABLE h_no_id (series BIGINT NOT NULL, ts BIGINT NOT NULL, value TEXT NOT NULL);
    CREATE INDEX ON h_no_id (series, ts);
    CREATE TABLE h_id_not_indexed (LIKE history INCLUDING IDENTITY);
    CREATE INDEX ON h_id_not_indexed (series, ts);
    CREATE TABLE h_client_id (series BIGINT NOT NULL, ts BIGINT NOT NULL, id BIGINT NOT NULL, value TEXT NOT NULL);
    CREATE INDEX ON h_client_id (series, ts, id);
    CREATE SEQUENCE h_client_batches;
    CREATE TABLE h_values (LIKE history INCLUDING ALL);
    CREATE TABLE h_unnest (LIKE history INCLUDING ALL);
    CREATE TABLE h_rows (LIKE history INCLUDING ALL);
    CREATE TABLE h_commit (LIKE history INCLUDING ALL);
";

fn batch(round: usize) -> Vec<Row> {
    (0..N).map(|i| ((i % 1000) as i64 + 1, (round * N + i) as i64, format!("{}.{}", i % 40, i % 10))).collect()
}

async fn write(client: &mut deadpool_postgres::Object, way: Way, rows: &[Row]) -> Result<(), tokio_postgres::Error> {
    let table = way.table();
    let tx = client.transaction().await?;
    match way {
        Way::CopyBinary | Way::CopyNoId | Way::CopyIdNotIndexed => {
            let sink = tx.copy_in(&format!("COPY {table} (series, ts, value) FROM STDIN BINARY")).await?;
            let writer = BinaryCopyInWriter::new(sink, &[Type::INT8, Type::INT8, Type::TEXT]);
            tokio::pin!(writer);
            for (series, ts, value) in rows {
                writer.as_mut().write(&[series as &(dyn ToSql + Sync), ts, value]).await?;
            }
            writer.finish().await?;
        }
        Way::CopyClientId => {
            let batch: i64 = tx.query_one("SELECT nextval('h_client_batches')", &[]).await?.get(0);
            let sink = tx.copy_in(&format!("COPY {table} (series, ts, id, value) FROM STDIN BINARY")).await?;
            let writer = BinaryCopyInWriter::new(sink, &[Type::INT8, Type::INT8, Type::INT8, Type::TEXT]);
            tokio::pin!(writer);
            for (i, (series, ts, value)) in rows.iter().enumerate() {
                let id = batch * N as i64 + i as i64;
                writer.as_mut().write(&[series as &(dyn ToSql + Sync), ts, &id, value]).await?;
            }
            writer.finish().await?;
        }
        Way::MultiRowValues => {
            let mut sql = format!("INSERT INTO {table} (series, ts, value) VALUES ");
            for i in 0..rows.len() {
                let p = i * 3;
                sql.push_str(&format!("{}(${}, ${}, ${})", if i == 0 { "" } else { ", " }, p + 1, p + 2, p + 3));
            }
            let statement = tx.prepare_cached(&sql).await?;
            let params: Vec<&(dyn ToSql + Sync)> =
                rows.iter().flat_map(|(s, t, v)| [s as &(dyn ToSql + Sync), t, v]).collect();
            tx.execute(&statement, &params).await?;
        }
        Way::Unnest => {
            let sql = format!(
                "INSERT INTO {table} (series, ts, value) SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[])"
            );
            let statement = tx.prepare_cached(&sql).await?;
            let series: Vec<i64> = rows.iter().map(|r| r.0).collect();
            let ts: Vec<i64> = rows.iter().map(|r| r.1).collect();
            let values: Vec<&str> = rows.iter().map(|r| r.2.as_str()).collect();
            tx.execute(&statement, &[&series, &ts, &values]).await?;
        }
        Way::PipelinedRows => {
            let statement =
                tx.prepare_cached(&format!("INSERT INTO {table} (series, ts, value) VALUES ($1, $2, $3)")).await?;
            let params: Vec<[&(dyn ToSql + Sync); 3]> = rows.iter().map(|(s, t, v)| [s as _, t as _, v as _]).collect();
            futures_util::future::try_join_all(params.iter().map(|p| tx.execute(&statement, p))).await?;
        }
    }
    tx.commit().await
}

/// Median, min and max; with `readings`, the rate at the median.
fn summary(mut times: Vec<Duration>, readings: Option<usize>) -> String {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let median = times[times.len() / 2];
    let rate = readings.map(|n| format!("  ({:.0} readings/s at the median)", n as f64 / median.as_secs_f64()));
    format!(
        "median {:7.2} ms  min {:7.2} ms  max {:7.2} ms{}",
        ms(median),
        ms(times[0]),
        ms(times[times.len() - 1]),
        rate.unwrap_or_default()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: cargo test --release -p store history_batch -- --ignored --nocapture"]
async fn history_batch_of_4096_copy_vs_insert() {
    let Some(db) = TestDb::create().await else { return };
    let store = PgStore::connect(&db.url, PgOptions { pool_size: 2, ..PgOptions::default() }).await.unwrap();
    let mut client = store.client().await.unwrap();
    client.batch_execute(TABLES).await.unwrap();

    // The price of a commit alone (one fsync of the WAL), for scale.
    let mut commits = vec![];
    for round in 0..ROUNDS {
        let started = Instant::now();
        let tx = client.transaction().await.unwrap();
        tx.execute("INSERT INTO h_commit (series, ts, value) VALUES (1, $1, '1')", &[&(round as i64)]).await.unwrap();
        tx.commit().await.unwrap();
        commits.push(started.elapsed());
    }

    // Round-robin, so that a slow moment of the machine hits every way alike; round 0
    // warms up (statement preparation, first pages) and is not counted.
    let mut times: Vec<Vec<Duration>> = vec![vec![]; WAYS.len()];
    for round in 0..=ROUNDS {
        for (w, way) in WAYS.iter().enumerate() {
            let rows = batch(round * WAYS.len() + w + ROUNDS);
            let started = Instant::now();
            write(&mut client, *way, &rows).await.unwrap();
            if round > 0 {
                times[w].push(started.elapsed());
            }
        }
    }

    for way in WAYS {
        let table = way.table();
        let rows: i64 = client.query_one(&format!("SELECT count(*) FROM {table}"), &[]).await.unwrap().get(0);
        assert_eq!(rows as usize, (ROUNDS + 1) * N, "{table}");
    }

    println!("\none batch of {N} readings per transaction, committed, {ROUNDS} rounds each:");
    println!("  {:<18} {}", "commit of 1 row", summary(commits, None));
    for (way, times) in WAYS.iter().zip(times) {
        println!("  {:<18} {}", format!("{way:?}"), summary(times, Some(N)));
    }
}
