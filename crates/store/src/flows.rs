//! Flows (`flows`): each tenant's flow documents, as dojot's flowbroker kept them in
//! MongoDB: the node-red list as JSON text, with a name, whether it is enabled, and when
//! it was made and changed. The engine compiles them when they change and at start, on
//! every node (so flows run after a restart: dojot #2577).

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

/// The flows, every query scoped by tenant but [`FlowStore::all_flows`].
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
}
