//! Flows (`flows`): each tenant's flow documents, as dojot's flowbroker kept them in
//! MongoDB: the node-red list as JSON text, with a name, whether it is enabled, and when
//! it was made and changed. The engine compiles them when they change and at start, on
//! every node (so flows run after a restart: dojot #2577).
//!
//! Also the **flow backlog** (`flow_backlog`): on the in-process bus, the readings that
//! an enabled flow will run on, stored before the device's publish is acknowledged and
//! removed once the flows ran, so that a slow flow falls behind without losing readings
//! or slowing devices, and what it had not run yet survives a restart. One writer (the
//! node's flow admission) appends, in order; ids are never reused (`AUTOINCREMENT`). It
//! belongs to no tenant: each row names its own, and only the engine reads it.

use rusqlite::{OptionalExtension, params};

use crate::{SqliteStore, StoreError};

/// One flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowRecord {
    pub tenant: String,
    /// A UUID.
    pub id: String,
    /// dojot's `name` (it stored it as `label`).
    pub label: String,
    pub enabled: bool,
    /// Its runs are traced (the debugger, `GET /flows/v1/flow/{id}/trace`).
    pub trace: bool,
    /// The node list, JSON.
    pub flow: String,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// A reading waiting in the flow backlog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingReading {
    /// Its place in the backlog (increasing).
    pub id: i64,
    pub tenant: String,
    pub device: String,
    /// The reading, JSON.
    pub reading: String,
}

/// The flows, every query scoped by tenant but [`FlowStore::all_flows`] and the backlog's.
#[async_trait::async_trait]
pub trait FlowStore: Send + Sync {
    /// Adds a flow unless the tenant has `max_per_tenant` already; whether it was added.
    async fn insert_flow(&self, flow: FlowRecord, max_per_tenant: u64) -> Result<bool, StoreError>;
    async fn flow(&self, tenant: &str, id: &str) -> Result<Option<FlowRecord>, StoreError>;
    /// The tenant's flows, oldest first.
    async fn flows(&self, tenant: &str) -> Result<Vec<FlowRecord>, StoreError>;
    /// Every tenant's: what the engine runs.
    async fn all_flows(&self) -> Result<Vec<FlowRecord>, StoreError>;
    /// Replaces a flow's name, state and nodes; false if there is no such flow.
    async fn update_flow(&self, flow: FlowRecord) -> Result<bool, StoreError>;
    /// Removes a flow; it as it was.
    async fn delete_flow(&self, tenant: &str, id: &str) -> Result<Option<FlowRecord>, StoreError>;
    /// Removes all the tenant's flows; how many.
    async fn delete_flows(&self, tenant: &str) -> Result<u64, StoreError>;
    /// Appends readings `(tenant, device, JSON)` to the backlog, in order, in one
    /// transaction.
    async fn push_backlog(&self, readings: Vec<(String, String, String)>) -> Result<(), StoreError>;
    /// The oldest `limit` readings of the backlog.
    async fn backlog(&self, limit: usize) -> Result<Vec<PendingReading>, StoreError>;
    /// Removes the backlog's readings up to id `upto`, inclusive.
    async fn trim_backlog(&self, upto: i64) -> Result<(), StoreError>;
    /// How many readings the backlog holds.
    async fn backlog_len(&self) -> Result<u64, StoreError>;
}

pub(crate) const COLUMNS: &str = "tenant, id, label, enabled, trace, flow, created_ms, updated_ms";

fn record(r: &rusqlite::Row<'_>) -> rusqlite::Result<FlowRecord> {
    Ok(FlowRecord {
        tenant: r.get(0)?,
        id: r.get(1)?,
        label: r.get(2)?,
        enabled: r.get(3)?,
        trace: r.get(4)?,
        flow: r.get(5)?,
        created_ms: r.get(6)?,
        updated_ms: r.get(7)?,
    })
}

#[async_trait::async_trait]
impl FlowStore for SqliteStore {
    async fn insert_flow(&self, f: FlowRecord, max_per_tenant: u64) -> Result<bool, StoreError> {
        self.write(move |tx| {
            let count: i64 = tx
                .prepare_cached("SELECT count(*) FROM flows WHERE tenant = ?1")?
                .query_row([&f.tenant], |r| r.get(0))?;
            if count as u64 >= max_per_tenant {
                return Ok(false);
            }
            tx.prepare_cached(&format!("INSERT INTO flows ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"))?
                .execute(params![f.tenant, f.id, f.label, f.enabled, f.trace, f.flow, f.created_ms, f.updated_ms])?;
            Ok(true)
        })
        .await
    }

    async fn flow(&self, tenant: &str, id: &str) -> Result<Option<FlowRecord>, StoreError> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.read(move |c| {
            Ok(c.prepare_cached(&format!("SELECT {COLUMNS} FROM flows WHERE tenant = ?1 AND id = ?2"))?
                .query_row(params![tenant, id], record)
                .optional()?)
        })
        .await
    }

    async fn flows(&self, tenant: &str) -> Result<Vec<FlowRecord>, StoreError> {
        let tenant = tenant.to_string();
        self.read(move |c| {
            Ok(c.prepare_cached(&format!("SELECT {COLUMNS} FROM flows WHERE tenant = ?1 ORDER BY created_ms, id"))?
                .query_map([tenant], record)?
                .collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn all_flows(&self) -> Result<Vec<FlowRecord>, StoreError> {
        self.read(move |c| {
            Ok(c.prepare_cached(&format!("SELECT {COLUMNS} FROM flows ORDER BY tenant, created_ms, id"))?
                .query_map([], record)?
                .collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn update_flow(&self, f: FlowRecord) -> Result<bool, StoreError> {
        self.write(move |tx| {
            Ok(tx.execute(
                "UPDATE flows SET label = ?3, enabled = ?4, trace = ?5, flow = ?6, updated_ms = ?7
                 WHERE tenant = ?1 AND id = ?2",
                params![f.tenant, f.id, f.label, f.enabled, f.trace, f.flow, f.updated_ms],
            )? > 0)
        })
        .await
    }

    async fn delete_flow(&self, tenant: &str, id: &str) -> Result<Option<FlowRecord>, StoreError> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.write(move |tx| {
            let found = tx
                .prepare_cached(&format!("SELECT {COLUMNS} FROM flows WHERE tenant = ?1 AND id = ?2"))?
                .query_row(params![tenant, id], record)
                .optional()?;
            tx.execute("DELETE FROM flows WHERE tenant = ?1 AND id = ?2", params![tenant, id])?;
            Ok(found)
        })
        .await
    }

    async fn delete_flows(&self, tenant: &str) -> Result<u64, StoreError> {
        let tenant = tenant.to_string();
        self.write(move |tx| Ok(tx.execute("DELETE FROM flows WHERE tenant = ?1", [tenant])? as u64)).await
    }

    async fn push_backlog(&self, readings: Vec<(String, String, String)>) -> Result<(), StoreError> {
        self.write(move |tx| {
            let mut insert =
                tx.prepare_cached("INSERT INTO flow_backlog (tenant, device, reading) VALUES (?1, ?2, ?3)")?;
            for (tenant, device, reading) in readings {
                insert.execute(params![tenant, device, reading])?;
            }
            Ok(())
        })
        .await
    }

    async fn backlog(&self, limit: usize) -> Result<Vec<PendingReading>, StoreError> {
        self.read(move |c| {
            Ok(c.prepare_cached("SELECT id, tenant, device, reading FROM flow_backlog ORDER BY id LIMIT ?1")?
                .query_map([limit as i64], |r| {
                    Ok(PendingReading { id: r.get(0)?, tenant: r.get(1)?, device: r.get(2)?, reading: r.get(3)? })
                })?
                .collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn trim_backlog(&self, upto: i64) -> Result<(), StoreError> {
        self.write(move |tx| {
            tx.prepare_cached("DELETE FROM flow_backlog WHERE id <= ?1")?.execute([upto])?;
            Ok(())
        })
        .await
    }

    async fn backlog_len(&self) -> Result<u64, StoreError> {
        self.read(|c| Ok(c.query_row("SELECT count(*) FROM flow_backlog", [], |r| r.get::<_, i64>(0))? as u64)).await
    }
}
