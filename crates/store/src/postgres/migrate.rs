//! PostgreSQL schema migrations, applied in order at connect. Never edit a released step:
//! add one. No step drops or rewrites data.
//!
//! The steps mirror the SQLite ones (`crate::migrate`) one for one, so that a schema
//! version means the same tables on both backends (what `ingot migrate` checks). There
//! are no released PostgreSQL databases before them, so step 1 already has what SQLite
//! only got in step 3 (series ids that are never reused), and step 3 only adds
//! `dead_series`.
//!
//! Translation rules:
//! - Every integer is `BIGINT`, so the Rust side binds `i64` as with rusqlite
//!   (tokio-postgres checks types strictly); ms timestamps and ids alike. Counts and
//!   retention that are unsigned in Rust get a `CHECK (… >= 0)`.
//! - `unsecured_mqtt` is `BOOLEAN` (SQLite has no boolean; 0/1 there).
//! - Ids never reused (`users.id`, `series.id`): `GENERATED ALWAYS AS IDENTITY`, a
//!   sequence that only moves forward. `ALWAYS` refuses an explicit id in a plain
//!   `INSERT`; a copy from SQLite keeps the old ids with `COPY` (which writes identity
//!   columns as given) or `OVERRIDING SYSTEM VALUE`, then must move the sequence past
//!   them (`setval`).
//! - Documents (`templates.doc`, `devices.doc`) and reading values (`history.value`) stay
//!   `TEXT` holding JSON, as in SQLite, not `JSONB`: they are always read and written
//!   whole (the catalog lives in memory; readings are returned as stored), never queried
//!   inside, so JSONB would only add a parse on every insert and normalise what was
//!   written (key order, duplicate keys).
//! - Keys and names are `TEXT COLLATE "C"`: byte order, as SQLite's BINARY collation, so
//!   `ORDER BY` gives the same answers whatever the database's locale, and index
//!   comparisons are memcmp, not locale-aware.
//! - `history` has no primary key (as in SQLite, where the hidden rowid plays that part).
//!   Its `id` column (an identity, not reused) replaces SQLite's `rowid` as the
//!   tie-break between readings of one series with the same ms timestamp (insertion
//!   order; "latest" must be the last one written), and is the last column of the
//!   `(series, ts, id)` index so that "newest first, limit n" is one index range scan.
//!   Its sequence must keep `CACHE 1` (the default): cached ranges per session would
//!   number readings out of insertion order across connections. Chunked deletes use
//!   `ctid`, not `id` (no index on `id` alone: it would cost every insert).

use deadpool_postgres::{GenericClient, Object};

use crate::StoreError;

/// Key of the advisory lock held while migrating (per database): "ingot" in ASCII, then 1.
const LOCK_KEY: i64 = 0x0069_6e67_6f74_0001;

/// The schema version this code brings a database to.
pub const SCHEMA_VERSION: i64 = STEPS.len() as i64;

const STEPS: &[&str] = &[
    // 1: tenants, users, catalog documents, history.
    r#"
    CREATE TABLE tenants (
        name TEXT COLLATE "C" PRIMARY KEY,
        created_ms BIGINT NOT NULL,
        unsecured_mqtt BOOLEAN NOT NULL DEFAULT FALSE,
        retention_days BIGINT NOT NULL DEFAULT 7 CHECK (retention_days >= 0)
    );
    CREATE TABLE users (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        username TEXT COLLATE "C" NOT NULL UNIQUE,
        service TEXT COLLATE "C" NOT NULL REFERENCES tenants(name),
        email TEXT COLLATE "C" NOT NULL UNIQUE,
        name TEXT NOT NULL,
        profile TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        created_date TEXT NOT NULL,
        created_by TEXT NOT NULL
    );
    CREATE TABLE templates (
        tenant TEXT COLLATE "C" NOT NULL,
        id BIGINT NOT NULL,
        doc TEXT NOT NULL,
        PRIMARY KEY (tenant, id)
    );
    CREATE TABLE devices (
        tenant TEXT COLLATE "C" NOT NULL,
        id TEXT COLLATE "C" NOT NULL,
        doc TEXT NOT NULL,
        secret_hash TEXT,
        PRIMARY KEY (tenant, id)
    );
    CREATE TABLE counters (
        tenant TEXT COLLATE "C" NOT NULL,
        name TEXT COLLATE "C" NOT NULL,
        value BIGINT NOT NULL,
        PRIMARY KEY (tenant, name)
    );
    CREATE TABLE series (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        tenant TEXT COLLATE "C" NOT NULL,
        device_id TEXT COLLATE "C" NOT NULL,
        attr TEXT COLLATE "C" NOT NULL,
        UNIQUE (tenant, device_id, attr)
    );
    CREATE TABLE history (
        series BIGINT NOT NULL,
        ts BIGINT NOT NULL,
        id BIGINT GENERATED ALWAYS AS IDENTITY,
        value TEXT NOT NULL
    );
    CREATE INDEX history_series_ts ON history (series, ts, id);
    "#,
    // 2: API tokens (bearer tokens for machines, e.g. fakeiot) and seat metering.
    r#"
    CREATE TABLE api_tokens (
        id TEXT COLLATE "C" PRIMARY KEY,
        tenant TEXT COLLATE "C" NOT NULL REFERENCES tenants(name),
        name TEXT NOT NULL,
        scopes TEXT NOT NULL,
        token_hash TEXT COLLATE "C" NOT NULL UNIQUE,
        created_ms BIGINT NOT NULL,
        created_by TEXT NOT NULL
    );
    CREATE TABLE seat_accounts (
        tenant TEXT COLLATE "C" NOT NULL,
        account_id TEXT COLLATE "C" NOT NULL,
        plan TEXT NOT NULL,
        users BIGINT NOT NULL DEFAULT 0 CHECK (users >= 0),
        created_ms BIGINT NOT NULL,
        PRIMARY KEY (tenant, account_id)
    );
    CREATE TABLE seat_users (
        tenant TEXT COLLATE "C" NOT NULL,
        account_id TEXT COLLATE "C" NOT NULL,
        user_id TEXT COLLATE "C" NOT NULL,
        first_seen_ms BIGINT NOT NULL,
        PRIMARY KEY (tenant, account_id, user_id)
    );
    "#,
    // 3: the series whose readings still await removal by retention (series ids are
    // identities from step 1, never reused).
    r#"
    CREATE TABLE dead_series (id BIGINT PRIMARY KEY);
    "#,
    // 4: installation-wide secrets (JWT secret, CA), so every node shares them.
    r#"
    CREATE TABLE secrets (
        name TEXT COLLATE "C" PRIMARY KEY,
        value BYTEA NOT NULL,
        created_ms BIGINT NOT NULL
    );
    "#,
    // 5: ids of readings already stored, for buses that may deliver one twice.
    r#"
    CREATE TABLE ingested (
        id BYTEA PRIMARY KEY,
        ms BIGINT NOT NULL
    );
    "#,
    // 6: console sessions, so that a browser may reach any node.
    r#"
    CREATE TABLE console_sessions (
        id_hash TEXT COLLATE "C" PRIMARY KEY,
        tenant TEXT COLLATE "C" NOT NULL,
        user_id BIGINT NOT NULL,
        username TEXT NOT NULL,
        profile TEXT NOT NULL,
        csrf TEXT NOT NULL,
        created_ms BIGINT NOT NULL,
        last_seen_ms BIGINT NOT NULL
    );
    CREATE INDEX console_sessions_user ON console_sessions (tenant, user_id);
    "#,
    // 7: single-use stream tickets (kafka-ws, socket.io, SSE), taken on any node.
    r#"
    CREATE TABLE stream_tickets (
        hash TEXT COLLATE "C" PRIMARY KEY,
        tenant TEXT COLLATE "C" NOT NULL,
        user_id BIGINT NOT NULL,
        username TEXT NOT NULL,
        expires_ms BIGINT NOT NULL
    );
    CREATE INDEX stream_tickets_user ON stream_tickets (tenant, user_id);
    CREATE INDEX stream_tickets_expiry ON stream_tickets (expires_ms);
    "#,
    // 8: console dashboards, one layout (JSON) per user.
    r#"
    CREATE TABLE console_dashboards (
        tenant TEXT COLLATE "C" NOT NULL,
        user_id BIGINT NOT NULL,
        layout TEXT NOT NULL,
        updated_ms BIGINT NOT NULL,
        PRIMARY KEY (tenant, user_id)
    );
    "#,
    // 9: device certificates issued by the CA (x509-identity-mgmt's registry).
    r#"
    CREATE TABLE certificates (
        fingerprint TEXT COLLATE "C" PRIMARY KEY,
        tenant TEXT COLLATE "C" NOT NULL,
        device TEXT COLLATE "C",
        application TEXT,
        pem TEXT NOT NULL,
        serial TEXT COLLATE "C" NOT NULL UNIQUE,
        not_after_ms BIGINT NOT NULL,
        created_ms BIGINT NOT NULL,
        revoked_ms BIGINT
    );
    CREATE INDEX certificates_tenant ON certificates (tenant, created_ms);
    "#,
    // 10: tenants' own CAs (x509 trusted CAs). A certificate now says which CA issued it
    // (`issuer`: a trusted CA's fingerprint, '' for Ingot's) and whether a device's first
    // CONNECT registered it; serials are unique per issuer, not overall.
    r#"
    CREATE TABLE trusted_cas (
        tenant TEXT COLLATE "C" NOT NULL,
        fingerprint TEXT COLLATE "C" NOT NULL,
        pem TEXT NOT NULL,
        subject_dn TEXT NOT NULL,
        not_before_ms BIGINT NOT NULL,
        not_after_ms BIGINT NOT NULL,
        allow_auto_registration BOOLEAN NOT NULL,
        created_ms BIGINT NOT NULL,
        modified_ms BIGINT NOT NULL,
        PRIMARY KEY (tenant, fingerprint)
    );
    ALTER TABLE certificates ADD COLUMN issuer TEXT COLLATE "C" NOT NULL DEFAULT '';
    ALTER TABLE certificates ADD COLUMN auto_registered BOOLEAN NOT NULL DEFAULT false;
    ALTER TABLE certificates DROP CONSTRAINT certificates_serial_key;
    ALTER TABLE certificates ADD CONSTRAINT certificates_issuer_serial UNIQUE (issuer, serial);
    CREATE INDEX certificates_issuer ON certificates (tenant, issuer);
    "#,
    // 11: flows (flowbroker's documents).
    r#"
    CREATE TABLE flows (
        tenant TEXT COLLATE "C" NOT NULL,
        id TEXT COLLATE "C" NOT NULL,
        label TEXT NOT NULL,
        enabled BOOLEAN NOT NULL,
        trace BOOLEAN NOT NULL,
        flow TEXT NOT NULL,
        created_ms BIGINT NOT NULL,
        updated_ms BIGINT NOT NULL,
        PRIMARY KEY (tenant, id)
    );
    "#,
    // 12: the flow backlog (readings waiting for flows on the in-process bus).
    r#"
    CREATE TABLE flow_backlog (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        tenant TEXT COLLATE "C" NOT NULL,
        device TEXT COLLATE "C" NOT NULL,
        reading TEXT NOT NULL
    );
    "#,
    // 13: the auction market (seed 003): its own users, offers, bids.
    r#"
    CREATE TABLE market_users (
        username TEXT COLLATE "C" PRIMARY KEY,
        password_hash TEXT NOT NULL,
        created_ms BIGINT NOT NULL
    );
    CREATE TABLE market_offers (
        id TEXT COLLATE "C" PRIMARY KEY,
        title TEXT NOT NULL,
        start_price DOUBLE PRECISION NOT NULL,
        bid_price DOUBLE PRECISION NOT NULL,
        go_live_ms BIGINT NOT NULL,
        lifetime_s BIGINT NOT NULL,
        photo_url TEXT NOT NULL,
        created_by TEXT COLLATE "C" NOT NULL,
        sold BOOLEAN NOT NULL,
        winning_bid TEXT COLLATE "C"
    );
    CREATE INDEX market_offers_go_live ON market_offers (go_live_ms);
    CREATE TABLE market_bids (
        id TEXT COLLATE "C" PRIMARY KEY,
        offer_id TEXT COLLATE "C" NOT NULL REFERENCES market_offers (id),
        username TEXT COLLATE "C" NOT NULL,
        bid_price DOUBLE PRECISION NOT NULL,
        ts_ms BIGINT NOT NULL,
        winning BOOLEAN NOT NULL,
        accepted BOOLEAN NOT NULL
    );
    CREATE INDEX market_bids_offer ON market_bids (offer_id, ts_ms);
    "#,
    // 14: load-test results pushed to Ingot as a collector.
    r#"
    CREATE TABLE load_results (
        tenant TEXT COLLATE "C" NOT NULL,
        job TEXT COLLATE "C" NOT NULL,
        second BIGINT NOT NULL,
        count BIGINT NOT NULL,
        errors BIGINT NOT NULL,
        p50_us BIGINT NOT NULL,
        p90_us BIGINT NOT NULL,
        p99_us BIGINT NOT NULL,
        max_us BIGINT NOT NULL,
        latency BYTEA NOT NULL,
        updated_ms BIGINT NOT NULL,
        PRIMARY KEY (tenant, job, second)
    );
    "#,
];

/// Brings the database to [`SCHEMA_VERSION`]. Each step runs in a transaction of its
/// own that first takes a transaction-scoped advisory lock and re-reads the version, so
/// two nodes starting at once against one database apply each step exactly once: the
/// second waits for the first's commit, then finds the step done.
pub(crate) async fn run(client: &mut Object) -> Result<(), StoreError> {
    for (i, step) in STEPS.iter().enumerate() {
        let version = i as i64 + 1;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY]).await?;
        let current = current_version(&tx).await?;
        if current == 0 {
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version BIGINT PRIMARY KEY, applied_ms BIGINT NOT NULL)",
            )
            .await?;
        }
        if current >= version {
            tx.commit().await?;
            continue;
        }
        tx.batch_execute(step).await?;
        tx.execute("INSERT INTO schema_version (version, applied_ms) VALUES ($1, $2)", &[&version, &crate::now_ms()])
            .await?;
        tx.commit().await?;
        tracing::info!(version, "applied PostgreSQL migration");
    }
    let current = current_version(&*client).await?;
    if current > SCHEMA_VERSION {
        tracing::warn!(
            database = current,
            known = SCHEMA_VERSION,
            "the PostgreSQL schema is newer than this Ingot knows; a newer Ingot migrated it: run that one"
        );
    }
    Ok(())
}

/// The database's schema version: the last step applied (0 on an empty database).
pub(crate) async fn current_version(client: &impl GenericClient) -> Result<i64, StoreError> {
    let exists: bool = client.query_one("SELECT to_regclass('schema_version') IS NOT NULL", &[]).await?.get(0);
    if !exists {
        return Ok(0);
    }
    Ok(client.query_one("SELECT COALESCE(max(version), 0) FROM schema_version", &[]).await?.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::{PgOptions, PgStore};
    use crate::testing::TestDb;

    /// The first column of every row of `sql`, as text.
    async fn texts(client: &tokio_postgres::Client, sql: &str) -> Vec<String> {
        client.query(sql, &[]).await.unwrap().iter().map(|r| r.get(0)).collect()
    }

    /// (version, applied_ms) of every step recorded in `schema_version`.
    async fn applied_steps(client: &tokio_postgres::Client) -> Vec<(i64, i64)> {
        let rows = client.query("SELECT version, applied_ms FROM schema_version ORDER BY version", &[]).await.unwrap();
        rows.iter().map(|r| (r.get(0), r.get(1))).collect()
    }

    #[tokio::test]
    async fn migrations_apply_on_an_empty_database_and_a_second_run_is_a_no_op() {
        let Some(db) = TestDb::create().await else { return };
        let first = PgStore::connect(&db.url, PgOptions::default()).await.unwrap();
        assert_eq!(first.schema_version().await.unwrap(), SCHEMA_VERSION);
        let client = first.client().await.unwrap();
        let applied = applied_steps(&client).await;
        assert_eq!(applied.iter().map(|a| a.0).collect::<Vec<_>>(), (1..=SCHEMA_VERSION).collect::<Vec<_>>());
        client
            .execute("INSERT INTO tenants (name, created_ms) VALUES ('kept', 1)", &[])
            .await
            .expect("the schema has tenants");

        let second = PgStore::connect(&db.url, PgOptions::default()).await.unwrap();
        assert_eq!(second.schema_version().await.unwrap(), SCHEMA_VERSION);
        let client = second.client().await.unwrap();
        let again = applied_steps(&client).await;
        assert_eq!(again, applied, "a second run applies nothing");
        let kept: i64 = client.query_one("SELECT count(*) FROM tenants WHERE name = 'kept'", &[]).await.unwrap().get(0);
        assert_eq!(kept, 1, "a second run keeps the data");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn nodes_migrating_at_once_all_succeed_and_each_step_runs_once() {
        let Some(db) = TestDb::create().await else { return };
        let connects = (0..4).map(|_| {
            let url = db.url.clone();
            tokio::spawn(
                async move { PgStore::connect(&url, PgOptions { pool_size: 2, ..PgOptions::default() }).await },
            )
        });
        let stores: Vec<PgStore> = futures_util::future::join_all(connects)
            .await
            .into_iter()
            .map(|r| r.expect("task").expect("every node's connect succeeds"))
            .collect();
        for store in &stores {
            assert_eq!(store.schema_version().await.unwrap(), SCHEMA_VERSION);
        }
        let client = stores[0].client().await.unwrap();
        let rows: i64 = client.query_one("SELECT count(*) FROM schema_version", &[]).await.unwrap().get(0);
        assert_eq!(rows, SCHEMA_VERSION, "each step recorded once");
    }

    #[tokio::test]
    async fn a_newer_schema_is_left_alone() {
        let Some(db) = TestDb::create().await else { return };
        let store = PgStore::connect(&db.url, PgOptions::default()).await.unwrap();
        store
            .client()
            .await
            .unwrap()
            .execute("INSERT INTO schema_version (version, applied_ms) VALUES ($1, 0)", &[&(SCHEMA_VERSION + 1)])
            .await
            .unwrap();
        let again = PgStore::connect(&db.url, PgOptions::default()).await.expect("an older node still starts");
        assert_eq!(again.schema_version().await.unwrap(), SCHEMA_VERSION + 1);
    }

    /// Every table of every room, with its primary key (in order), as in the SQLite schema.
    #[tokio::test]
    async fn every_table_exists_with_its_keys() {
        let Some(db) = TestDb::create().await else { return };
        let store = PgStore::connect(&db.url, PgOptions::default()).await.unwrap();
        let client = store.client().await.unwrap();

        let constraint_columns = |kind: &'static str| {
            let client = &client;
            async move {
                let rows = client
                    .query(
                        "SELECT tc.table_name::text, string_agg(k.column_name::text, ',' ORDER BY k.ordinal_position)
                         FROM information_schema.table_constraints tc
                         JOIN information_schema.key_column_usage k
                           ON k.constraint_name = tc.constraint_name AND k.table_schema = tc.table_schema
                         WHERE tc.table_schema = current_schema() AND tc.constraint_type = $1
                         GROUP BY tc.table_name, tc.constraint_name ORDER BY 1, 2",
                        &[&kind],
                    )
                    .await
                    .unwrap();
                rows.iter().map(|r| format!("{}({})", r.get::<_, String>(0), r.get::<_, String>(1))).collect::<Vec<_>>()
            }
        };
        assert_eq!(
            constraint_columns("PRIMARY KEY").await,
            [
                "api_tokens(id)",
                "certificates(fingerprint)",
                "console_dashboards(tenant,user_id)",
                "console_sessions(id_hash)",
                "counters(tenant,name)",
                "dead_series(id)",
                "devices(tenant,id)",
                "flow_backlog(id)",
                "flows(tenant,id)",
                "ingested(id)",
                "load_results(tenant,job,second)",
                "market_bids(id)",
                "market_offers(id)",
                "market_users(username)",
                "schema_version(version)",
                "seat_accounts(tenant,account_id)",
                "seat_users(tenant,account_id,user_id)",
                "secrets(name)",
                "series(id)",
                "stream_tickets(hash)",
                "templates(tenant,id)",
                "tenants(name)",
                "trusted_cas(tenant,fingerprint)",
                "users(id)",
            ]
        );
        assert_eq!(
            constraint_columns("UNIQUE").await,
            [
                "api_tokens(token_hash)",
                "certificates(issuer,serial)",
                "series(tenant,device_id,attr)",
                "users(email)",
                "users(username)"
            ]
        );
        assert_eq!(
            constraint_columns("FOREIGN KEY").await,
            ["api_tokens(tenant)", "market_bids(offer_id)", "users(service)"]
        );

        let tables = texts(
            &client,
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY 1",
        )
        .await;
        assert!(tables.contains(&"history".to_string()), "history exists (without a primary key, as in SQLite)");
        let index: String = client
            .query_one("SELECT indexdef FROM pg_indexes WHERE indexname = 'history_series_ts'", &[])
            .await
            .unwrap()
            .get(0);
        assert!(index.ends_with("(series, ts, id)"), "{index}");

        // Key columns compare bytes, whatever the database's locale.
        let not_c = texts(
            &client,
            "SELECT k.table_name::text || '.' || k.column_name::text
             FROM information_schema.key_column_usage k
             JOIN information_schema.columns c
               ON c.table_schema = k.table_schema AND c.table_name = k.table_name AND c.column_name = k.column_name
             WHERE k.table_schema = current_schema() AND c.data_type = 'text'
               AND c.collation_name IS DISTINCT FROM 'C'",
        )
        .await;
        assert!(not_c.is_empty(), "text key columns without COLLATE \"C\": {not_c:?}");
    }

    #[tokio::test]
    async fn series_ids_are_never_reused_and_history_ids_follow_insertion_order() {
        let Some(db) = TestDb::create().await else { return };
        let store = PgStore::connect(&db.url, PgOptions::default()).await.unwrap();
        let client = store.client().await.unwrap();
        let insert = "INSERT INTO series (tenant, device_id, attr) VALUES ('t', 'd', 'a') RETURNING id";
        let first: i64 = client.query_one(insert, &[]).await.unwrap().get(0);
        client.execute("DELETE FROM series", &[]).await.unwrap();
        let second: i64 = client.query_one(insert, &[]).await.unwrap().get(0);
        assert!(second > first, "a deleted series' id is not handed out again ({first} then {second})");
        let explicit =
            client.execute("INSERT INTO series (id, tenant, device_id, attr) VALUES (1, 't', 'd', 'b')", &[]);
        assert!(explicit.await.is_err(), "an explicit id is refused (GENERATED ALWAYS)");

        for v in ["1", "2", "3"] {
            client.execute("INSERT INTO history (series, ts, value) VALUES (1, 5, $1)", &[&v]).await.unwrap();
        }
        let latest: String = client
            .query_one("SELECT value FROM history WHERE series = 1 ORDER BY ts DESC, id DESC LIMIT 1", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(latest, "3", "same ms: the last reading written is the latest");
    }
}
