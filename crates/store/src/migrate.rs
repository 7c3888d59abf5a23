//! Schema migrations, applied in order at start. Never edit a released step: add one.

use rusqlite::Connection;

use crate::StoreError;

pub(crate) const STEPS: &[&str] = &[
    // 1: tenants, users, catalog documents, history.
    r#"
    CREATE TABLE tenants (
        name TEXT PRIMARY KEY,
        created_ms INTEGER NOT NULL,
        unsecured_mqtt INTEGER NOT NULL DEFAULT 0,
        retention_days INTEGER NOT NULL DEFAULT 7
    );
    CREATE TABLE users (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        username TEXT NOT NULL UNIQUE,
        service TEXT NOT NULL REFERENCES tenants(name),
        email TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        profile TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        created_date TEXT NOT NULL,
        created_by TEXT NOT NULL
    );
    -- Templates and devices are stored as the JSON documents the API shows; the devices
    -- service keeps them in memory and writes through. Ids are per tenant, as in dojot
    -- (one schema per tenant).
    CREATE TABLE templates (
        tenant TEXT NOT NULL,
        id INTEGER NOT NULL,
        doc TEXT NOT NULL,
        PRIMARY KEY (tenant, id)
    );
    CREATE TABLE devices (
        tenant TEXT NOT NULL,
        id TEXT NOT NULL,
        doc TEXT NOT NULL,
        secret_hash TEXT,
        PRIMARY KEY (tenant, id)
    );
    CREATE TABLE counters (
        tenant TEXT NOT NULL,
        name TEXT NOT NULL,
        value INTEGER NOT NULL,
        PRIMARY KEY (tenant, name)
    );
    -- One series per (tenant, device, attribute); readings reference it by integer so
    -- the history index stays small.
    CREATE TABLE series (
        id INTEGER PRIMARY KEY,
        tenant TEXT NOT NULL,
        device_id TEXT NOT NULL,
        attr TEXT NOT NULL,
        UNIQUE (tenant, device_id, attr)
    );
    CREATE TABLE history (
        series INTEGER NOT NULL,
        ts INTEGER NOT NULL,
        value TEXT NOT NULL
    );
    CREATE INDEX history_series_ts ON history (series, ts);
    "#,
    // 2: API tokens (bearer tokens for machines, e.g. fakeiot) and seat metering.
    r#"
    CREATE TABLE api_tokens (
        id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL REFERENCES tenants(name),
        name TEXT NOT NULL,
        scopes TEXT NOT NULL,
        token_hash TEXT NOT NULL UNIQUE,
        created_ms INTEGER NOT NULL,
        created_by TEXT NOT NULL
    );
    CREATE TABLE seat_accounts (
        tenant TEXT NOT NULL,
        account_id TEXT NOT NULL,
        plan TEXT NOT NULL,
        users INTEGER NOT NULL DEFAULT 0,
        created_ms INTEGER NOT NULL,
        PRIMARY KEY (tenant, account_id)
    );
    CREATE TABLE seat_users (
        tenant TEXT NOT NULL,
        account_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        first_seen_ms INTEGER NOT NULL,
        PRIMARY KEY (tenant, account_id, user_id)
    ) WITHOUT ROWID;
    "#,
    // 3: series ids are never reused (AUTOINCREMENT), so readings of a deleted device's
    // series, removed later by retention, can never appear under a new series; the ids
    // whose readings still await removal are listed in dead_series.
    r#"
    CREATE TABLE series_v3 (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant TEXT NOT NULL,
        device_id TEXT NOT NULL,
        attr TEXT NOT NULL,
        UNIQUE (tenant, device_id, attr)
    );
    INSERT INTO series_v3 (id, tenant, device_id, attr) SELECT id, tenant, device_id, attr FROM series;
    DROP TABLE series;
    ALTER TABLE series_v3 RENAME TO series;
    CREATE TABLE dead_series (id INTEGER PRIMARY KEY);
    "#,
    // 4: installation-wide secrets (JWT secret, CA), so every node of a cluster shares them.
    r#"
    CREATE TABLE secrets (
        name TEXT PRIMARY KEY,
        value BLOB NOT NULL,
        created_ms INTEGER NOT NULL
    );
    "#,
    // 5: ids of readings already stored, for buses that may deliver one twice (NATS
    // JetStream redelivers what a crashed node did not acknowledge); kept a day.
    r#"
    CREATE TABLE ingested (
        id BLOB PRIMARY KEY,
        ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    "#,
    // 6: console sessions, so that a browser may reach any node of a cluster.
    r#"
    CREATE TABLE console_sessions (
        id_hash TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        user_id INTEGER NOT NULL,
        username TEXT NOT NULL,
        profile TEXT NOT NULL,
        csrf TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        last_seen_ms INTEGER NOT NULL
    );
    CREATE INDEX console_sessions_user ON console_sessions (tenant, user_id);
    "#,
    // 7: single-use stream tickets (kafka-ws, socket.io, SSE), taken on any node.
    r#"
    CREATE TABLE stream_tickets (
        hash TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        user_id INTEGER NOT NULL,
        username TEXT NOT NULL,
        expires_ms INTEGER NOT NULL
    );
    CREATE INDEX stream_tickets_user ON stream_tickets (tenant, user_id);
    CREATE INDEX stream_tickets_expiry ON stream_tickets (expires_ms);
    "#,
    // 8: console dashboards, one layout (JSON) per user.
    r#"
    CREATE TABLE console_dashboards (
        tenant TEXT NOT NULL,
        user_id INTEGER NOT NULL,
        layout TEXT NOT NULL,
        updated_ms INTEGER NOT NULL,
        PRIMARY KEY (tenant, user_id)
    );
    "#,
    // 9: device certificates issued by the CA (x509-identity-mgmt's registry).
    r#"
    CREATE TABLE certificates (
        fingerprint TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        device TEXT,
        application TEXT,
        pem TEXT NOT NULL,
        serial TEXT NOT NULL UNIQUE,
        not_after_ms INTEGER NOT NULL,
        created_ms INTEGER NOT NULL,
        revoked_ms INTEGER
    );
    CREATE INDEX certificates_tenant ON certificates (tenant, created_ms);
    "#,
    // 10: tenants' own CAs (x509 trusted CAs). A certificate now says which CA issued it
    // (`issuer`: a trusted CA's fingerprint, '' for Ingot's) and whether a device's first
    // CONNECT registered it; serials are unique per issuer, not overall. SQLite cannot
    // drop a constraint: the table is rebuilt.
    r#"
    CREATE TABLE trusted_cas (
        tenant TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        pem TEXT NOT NULL,
        subject_dn TEXT NOT NULL,
        not_before_ms INTEGER NOT NULL,
        not_after_ms INTEGER NOT NULL,
        allow_auto_registration INTEGER NOT NULL,
        created_ms INTEGER NOT NULL,
        modified_ms INTEGER NOT NULL,
        PRIMARY KEY (tenant, fingerprint)
    );
    CREATE TABLE certificates_v10 (
        fingerprint TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        device TEXT,
        application TEXT,
        pem TEXT NOT NULL,
        serial TEXT NOT NULL,
        not_after_ms INTEGER NOT NULL,
        created_ms INTEGER NOT NULL,
        revoked_ms INTEGER,
        issuer TEXT NOT NULL DEFAULT '',
        auto_registered INTEGER NOT NULL DEFAULT 0,
        UNIQUE (issuer, serial)
    );
    INSERT INTO certificates_v10
        (fingerprint, tenant, device, application, pem, serial, not_after_ms, created_ms, revoked_ms)
        SELECT fingerprint, tenant, device, application, pem, serial, not_after_ms, created_ms, revoked_ms
        FROM certificates;
    DROP TABLE certificates;
    ALTER TABLE certificates_v10 RENAME TO certificates;
    CREATE INDEX certificates_tenant ON certificates (tenant, created_ms);
    CREATE INDEX certificates_issuer ON certificates (tenant, issuer);
    "#,
    // 11: flows (flowbroker's documents).
    r#"
    CREATE TABLE flows (
        tenant TEXT NOT NULL,
        id TEXT NOT NULL,
        label TEXT NOT NULL,
        enabled INTEGER NOT NULL,
        trace INTEGER NOT NULL,
        flow TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL,
        PRIMARY KEY (tenant, id)
    );
    "#,
    // 12: the flow backlog (readings waiting for flows on the in-process bus).
    r#"
    CREATE TABLE flow_backlog (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant TEXT NOT NULL,
        device TEXT NOT NULL,
        reading TEXT NOT NULL
    );
    "#,
    // 13: the auction market (seed 003): its own users, offers, bids.
    r#"
    CREATE TABLE market_users (
        username TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL,
        created_ms INTEGER NOT NULL
    );
    CREATE TABLE market_offers (
        id TEXT PRIMARY KEY,
        title TEXT NOT NULL,
        start_price REAL NOT NULL,
        bid_price REAL NOT NULL,
        go_live_ms INTEGER NOT NULL,
        lifetime_s INTEGER NOT NULL,
        photo_url TEXT NOT NULL,
        created_by TEXT NOT NULL,
        sold INTEGER NOT NULL,
        winning_bid TEXT
    );
    CREATE INDEX market_offers_go_live ON market_offers (go_live_ms);
    CREATE TABLE market_bids (
        id TEXT PRIMARY KEY,
        offer_id TEXT NOT NULL REFERENCES market_offers (id),
        username TEXT NOT NULL,
        bid_price REAL NOT NULL,
        ts_ms INTEGER NOT NULL,
        winning INTEGER NOT NULL,
        accepted INTEGER NOT NULL
    );
    CREATE INDEX market_bids_offer ON market_bids (offer_id, ts_ms);
    "#,
    // 14: load-test results pushed to Ingot as a collector.
    r#"
    CREATE TABLE load_results (
        tenant TEXT NOT NULL,
        job TEXT NOT NULL,
        second INTEGER NOT NULL,
        count INTEGER NOT NULL,
        errors INTEGER NOT NULL,
        p50_us INTEGER NOT NULL,
        p90_us INTEGER NOT NULL,
        p99_us INTEGER NOT NULL,
        max_us INTEGER NOT NULL,
        latency BLOB NOT NULL,
        updated_ms INTEGER NOT NULL,
        PRIMARY KEY (tenant, job, second)
    );
    "#,
    // 15: history's staging table (SQLite only, see `history::stage`): readings are
    // written here, clustered by series, in one of two parts, and move into `history` in
    // sorted slices, so a commit rewrites a few small pages instead of one index page
    // per series.
    r#"
    CREATE TABLE history_stage (
        part INTEGER NOT NULL,
        series INTEGER NOT NULL,
        ts INTEGER NOT NULL,
        n INTEGER NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (part, series, ts, n)
    ) WITHOUT ROWID;
    "#,
    // 16: history's staging becomes an append-only log, its values indexed in memory (see
    // `history::stage`): what was staged moves into `history` (every staged row of a
    // series is newer than its rows there), and the table goes. `history_log_moving`
    // says which logged values are in `history` already.
    r#"
    INSERT INTO history (series, ts, value) SELECT series, ts, value FROM history_stage ORDER BY series, ts, n;
    DROP TABLE history_stage;
    CREATE TABLE history_log (
        n INTEGER PRIMARY KEY,
        series INTEGER NOT NULL,
        ts INTEGER NOT NULL,
        value TEXT NOT NULL
    );
    CREATE TABLE history_log_moving (
        id INTEGER PRIMARY KEY CHECK (id = 0),
        below_n INTEGER NOT NULL,
        below_series INTEGER NOT NULL
    );
    INSERT INTO history_log_moving VALUES (0, 0, 0);
    "#,
];

/// The schema version this code brings a database to (`PRAGMA user_version`).
pub(crate) const SCHEMA_VERSION: i64 = STEPS.len() as i64;

pub fn run(conn: &mut Connection) -> Result<(), StoreError> {
    let version: usize = conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))? as usize;
    for (i, step) in STEPS.iter().enumerate().skip(version) {
        let tx = conn.transaction()?;
        tx.execute_batch(step)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "applied database migration");
    }
    Ok(())
}
