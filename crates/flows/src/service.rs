//! [`FlowService`]: flowbroker's `/flows/v1/flow` API over the store, and what keeps the
//! engine's flows current: after every change on this node, and, in a cluster, when
//! another node says a tenant's flows changed (`flows.changed`).
//!
//! Shapes are dojot's: a flow is `{"name", "enabled", "id", "flow", "created",
//! "updated"}` (times in ms). Fixed: `enabled: false` can be set with PUT (flowbroker
//! ignored falsy values), disabled flows do not run, and a flow that would not run is
//! refused when it is saved (see [`crate::document`]). Ingot's own field: `trace`, the
//! debugger's switch (see [`crate::trace`]).

use std::sync::{Arc, OnceLock};

use bus::{Bus, Mode};
use chrono::Utc;
use model::{DeviceEvent, EventKind};
use serde_json::{Value, json};
use store::SharedStore;
use store::flows::FlowRecord;

use crate::document::compile;
use crate::{CompiledFlow, FlowEngine, FlowError};

/// The per-node bus group through which nodes follow each other's flow changes.
pub const FOLLOW_GROUP: &str = "flow-definitions";

pub struct FlowService {
    store: SharedStore,
    engine: Arc<FlowEngine>,
    max_flows: u64,
    bus: OnceLock<Arc<dyn Bus>>,
}

/// A flow as dojot's API shows it.
fn view(f: &FlowRecord) -> Value {
    let flow: Value = serde_json::from_str(&f.flow).unwrap_or(Value::Array(Vec::new()));
    json!({"name": f.label, "enabled": f.enabled, "trace": f.trace, "id": f.id, "flow": flow,
           "created": f.created_ms, "updated": f.updated_ms})
}

impl FlowService {
    pub fn new(store: SharedStore, engine: Arc<FlowEngine>, max_flows: u64) -> Self {
        Self { store, engine, max_flows, bus: OnceLock::new() }
    }

    /// Loads every tenant's flows into the engine (at start).
    pub async fn load(&self) -> Result<usize, FlowError> {
        let all = self.store.all_flows().await?;
        let mut tenants: Vec<&str> = all.iter().map(|f| f.tenant.as_str()).collect();
        tenants.dedup();
        for tenant in tenants {
            let flows: Vec<FlowRecord> = all.iter().filter(|f| f.tenant == tenant).cloned().collect();
            self.engine.set_flows(tenant, self.compiled(&flows));
        }
        Ok(all.len())
    }

    /// Re-reads the tenant's flows into the engine.
    async fn reload(&self, tenant: &str) -> Result<(), FlowError> {
        let flows = self.store.flows(tenant).await?;
        self.engine.set_flows(tenant, self.compiled(&flows));
        Ok(())
    }

    async fn changed(&self, tenant: &str) -> Result<(), FlowError> {
        self.reload(tenant).await?;
        if let Some(bus) = self.bus.get() {
            let event =
                DeviceEvent { kind: EventKind::FlowsChanged, tenant: tenant.into(), data: json!({}), ts: Utc::now() };
            if let Err(e) = bus.publish_event(event).await {
                tracing::warn!(error = %e, %tenant, "the other nodes could not be told that flows changed");
            }
        }
        Ok(())
    }

    /// Makes this node follow the other nodes' flow changes.
    pub async fn follow(self: &Arc<Self>, bus: Arc<dyn Bus>) -> Result<(), bus::BusError> {
        let events = bus.subscribe_events(FOLLOW_GROUP, Mode::EachNode);
        bus.ready().await?;
        let _ = self.bus.set(bus);
        events.follow(Arc::downgrade(self), |flows, event| async move {
            if event.kind == EventKind::FlowsChanged {
                flows.reload(&event.tenant).await?;
            }
            Ok::<(), FlowError>(())
        });
        Ok(())
    }

    /// `GET /flows/v1/flow`.
    pub async fn list(&self, tenant: &str) -> Result<Value, FlowError> {
        let flows = self.store.flows(tenant).await?;
        Ok(json!({"flows": flows.iter().map(view).collect::<Vec<_>>()}))
    }

    /// `POST /flows/v1/flow {"name", "enabled"?, "flow"}`.
    pub async fn create(&self, tenant: &str, body: &Value) -> Result<Value, FlowError> {
        let name = name(body)?.ok_or(FlowError::Missing("name"))?;
        let flow = body.get("flow").ok_or(FlowError::Missing("flow"))?;
        compile(flow)?;
        let enabled = switch(body, "enabled")?.unwrap_or(true);
        let trace = switch(body, "trace")?.unwrap_or(false);
        let now = Utc::now().timestamp_millis();
        let record = FlowRecord {
            tenant: tenant.into(),
            id: uuid::Uuid::new_v4().to_string(),
            label: name,
            enabled,
            trace,
            flow: flow.to_string(),
            created_ms: now,
            updated_ms: now,
        };
        if !self.store.insert_flow(record.clone(), self.max_flows).await? {
            return Err(FlowError::TooMany(self.max_flows));
        }
        tracing::info!(%tenant, flow = %record.id, "flow created");
        self.changed(tenant).await?;
        Ok(view(&record))
    }

    /// `GET /flows/v1/flow/{id}`.
    pub async fn get(&self, tenant: &str, id: &str) -> Result<Value, FlowError> {
        Ok(view(&self.existing(tenant, id).await?))
    }

    async fn existing(&self, tenant: &str, id: &str) -> Result<FlowRecord, FlowError> {
        self.store.flow(tenant, id).await?.ok_or_else(|| FlowError::UnknownFlow(id.into()))
    }

    /// `PUT /flows/v1/flow/{id}`: any of `name`, `enabled`, `flow`.
    pub async fn update(&self, tenant: &str, id: &str, body: &Value) -> Result<Value, FlowError> {
        let mut record = self.existing(tenant, id).await?;
        if let Some(name) = name(body)? {
            record.label = name;
        }
        if let Some(enabled) = switch(body, "enabled")? {
            record.enabled = enabled;
        }
        if let Some(trace) = switch(body, "trace")? {
            record.trace = trace;
        }
        if let Some(flow) = body.get("flow") {
            compile(flow)?;
            record.flow = flow.to_string();
        }
        record.updated_ms = Utc::now().timestamp_millis();
        if !self.store.update_flow(record.clone()).await? {
            return Err(FlowError::UnknownFlow(id.into()));
        }
        self.changed(tenant).await?;
        Ok(view(&record))
    }

    /// `DELETE /flows/v1/flow/{id}`: the flow as it was.
    pub async fn delete(&self, tenant: &str, id: &str) -> Result<Value, FlowError> {
        let gone = self.store.delete_flow(tenant, id).await?.ok_or_else(|| FlowError::UnknownFlow(id.into()))?;
        self.engine.forget_flow(tenant, id);
        self.changed(tenant).await?;
        Ok(view(&gone))
    }

    /// `DELETE /flows/v1/flow`.
    pub async fn delete_all(&self, tenant: &str) -> Result<u64, FlowError> {
        for f in self.store.flows(tenant).await? {
            self.engine.forget_flow(tenant, &f.id);
        }
        let n = self.store.delete_flows(tenant).await?;
        self.changed(tenant).await?;
        Ok(n)
    }

    /// The flows that compile (a stored flow always did when it was saved), with their
    /// traces.
    fn compiled(&self, flows: &[FlowRecord]) -> Vec<Arc<CompiledFlow>> {
        flows
            .iter()
            .filter_map(|f| {
                let doc: Value = serde_json::from_str(&f.flow).ok()?;
                match compile(&doc) {
                    Ok(graph) => Some(Arc::new(CompiledFlow {
                        id: f.id.clone(),
                        enabled: f.enabled,
                        graph,
                        trace: self.engine.trace_switch(&f.id, f.trace),
                    })),
                    Err(e) => {
                        tracing::warn!(tenant = %f.tenant, flow = %f.id, error = %e, "a stored flow no longer compiles; it does not run");
                        None
                    }
                }
            })
            .collect()
    }

    /// `GET /flows/v1/flow/{id}/trace`: what this node's runs of the flow did lately.
    pub async fn trace(&self, tenant: &str, id: &str) -> Result<Value, FlowError> {
        let record = self.existing(tenant, id).await?;
        let mut answer = match self.engine.trace(id) {
            Some(t) if record.trace => t.snapshot(),
            _ => json!({"nodes": {}, "dropped": 0}),
        };
        answer["flow"] = json!(id);
        answer["trace"] = json!(record.trace);
        Ok(answer)
    }

    /// The live trace of a flow whose switch is on (`…/trace/stream`).
    pub async fn trace_feed(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<tokio::sync::broadcast::Receiver<crate::trace::Entry>, FlowError> {
        let record = self.existing(tenant, id).await?;
        match self.engine.trace(id) {
            Some(t) if record.trace => Ok(t.subscribe()),
            _ => Err(FlowError::TraceOff(id.into())),
        }
    }
}

fn name(body: &Value) -> Result<Option<String>, FlowError> {
    match body.get("name") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.clone())),
        Some(_) => Err(FlowError::Invalid("Given flow is invalid: name must be a non-empty string".into())),
    }
}

/// A true/false field of the body (`enabled`, `trace`).
fn switch(body: &Value, key: &str) -> Result<Option<bool>, FlowError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(FlowError::Invalid(format!("Given flow is invalid: {key} must be true or false"))),
    }
}
