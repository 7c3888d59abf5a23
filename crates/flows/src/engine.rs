//! The engine: runs every tenant's enabled flows on the readings and device events of
//! the bus.
//!
//! - **A durable consumer** (group `flows`), so each reading runs the flows once, on one
//!   node, in per-device order. On a NATS bus the backlog is the stream's (one consumer
//!   task, acking in order): a slow flow falls behind without slowing devices, and
//!   survives a restart. On the in-process bus, where a durable subscriber's ack is what
//!   a publisher waits for, the engine keeps its own durable queue, the **flow backlog**
//!   in the store (`flow_backlog`): a reading that an enabled flow's head names (the
//!   device, or one of its templates) is stored there, a batch per transaction, before
//!   its publish is acknowledged; a drainer runs the flows on the backlog in order (a few
//!   workers, one per core, the same one for a device) and then removes what ran. So a
//!   slow flow falls behind (its lag is `ingot_flow_backlog` and
//!   `ingot_flow_lag_seconds`) without slowing devices or losing readings, and catches
//!   up after a restart. The backlog is bounded (`--flow-backlog`); past it a reading
//!   runs no flow, counted in `ingot_flow_readings_dropped_total`.
//! - **What a flow sees** is dojot's: an event head gets `{"payload": {"event",
//!   "data": {"id", "attrs"}, "metadata": {"tenant", "timestamp"}}}`, a deprecated head
//!   `{"payload": attrs}`; the device's static attribute values are merged into the
//!   attributes, as flowbroker did.
//! - **A run** copies the message to every wire, stops a branch at a node's error (logged
//!   and counted, never a crash), and stops the whole run after [`MAX_STEPS`] nodes.
//! - **Outputs** are carried out after the run: readings go on the bus as new
//!   [`DeviceData`] (so history, streams and flows see them) with one more `hops`;
//!   actuation goes through the devices service. A reading [`EngineConfig::max_hops`] flow
//!   outputs deep runs no flow: a flow that feeds itself is cut there and counted
//!   (`ingot_flow_loops_total`), where dojot spun forever.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bus::{Bus, Mode};
use chrono::Utc;
use devices::DeviceService;
use model::{DeviceData, DeviceEvent, EventKind};
use serde_json::{Map, Value, json};
use store::SharedStore;

use crate::nodes::http::HttpPolicy;
use crate::nodes::{Head, HttpEnv, Kind, RunContext};
use crate::trace::Trace;
use crate::{CompiledFlow, Effect};

/// Most node runs one trigger may cause.
pub const MAX_STEPS: usize = 10_000;
/// Most readings stored in the backlog in one transaction (in-process bus).
const ADMIT_BATCH: usize = 512;
/// Readings of the backlog run, then removed, at a time.
const BACKLOG_PAGE: usize = 512;
/// Runs' outputs waiting to be published at most (in-process bus); the flows wait beyond.
const OUTPUT_QUEUE: usize = 1024;

/// A tenant's flows, and which devices and templates their enabled heads name (so that
/// a reading no flow can start is not queued at all).
struct TenantFlows {
    flows: Vec<Arc<CompiledFlow>>,
    devices: std::collections::HashSet<String>,
    templates: std::collections::HashSet<String>,
}

impl TenantFlows {
    /// Whether an enabled flow names a device or a template.
    fn names_devices(&self) -> bool {
        !(self.devices.is_empty() && self.templates.is_empty())
    }

    fn new(flows: Vec<Arc<CompiledFlow>>) -> Self {
        let (mut devices, mut templates) = (std::collections::HashSet::new(), std::collections::HashSet::new());
        for (_, head) in flows.iter().filter(|f| f.enabled).flat_map(|f| f.graph.heads()) {
            match head {
                Head::EventDevice { device, .. } | Head::Device { device } => devices.insert(device.clone()),
                Head::EventTemplate { template, .. } | Head::DeviceTemplate { template } => {
                    templates.insert(template.clone())
                }
            };
        }
        Self { flows, devices, templates }
    }
}

/// The outputs of one run: what to publish or actuate, for whom.
struct Outputs {
    tenant: String,
    /// How deep the reading that ran the flows was.
    hops: u8,
    effects: Vec<Effect>,
}

/// The engine's limits.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// A reading this many flow outputs deep runs no flow.
    pub max_hops: u8,
    /// Readings waiting in the flow backlog at most (in-process bus).
    pub backlog: usize,
    /// What http nodes may reach.
    pub http: HttpPolicy,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self { max_hops: 8, backlog: 1_000_000, http: HttpPolicy::default() }
    }
}

/// What starts flows: a reading or a device event.
#[derive(Debug, Clone)]
pub struct Trigger {
    pub tenant: String,
    pub device: String,
    /// `publish`, `configure`, `create`, `update`, `remove`.
    pub event: &'static str,
    pub attrs: Map<String, Value>,
    /// The event's `data` for lifecycle events (the device as the API shows it).
    pub data: Option<Value>,
    pub timestamp_ms: Option<i64>,
    pub hops: u8,
}

/// A device's template ids and static attribute values (`DeviceService::flow_facts`).
type Facts = (Vec<i64>, Map<String, Value>);

impl Trigger {
    /// A reading's trigger (`publish`).
    fn reading(reading: &DeviceData) -> Self {
        Self {
            tenant: reading.tenant.clone(),
            device: reading.device_id.clone(),
            event: "publish",
            attrs: reading.attrs.clone(),
            data: None,
            timestamp_ms: Some(reading.ts.timestamp_millis()),
            hops: reading.hops,
        }
    }
}

pub struct FlowEngine {
    devices: Arc<DeviceService>,
    bus: Arc<dyn Bus>,
    /// The flow backlog's (in-process bus).
    store: SharedStore,
    /// Readings in the backlog.
    waiting: AtomicU64,
    config: EngineConfig,
    http: HttpEnv,
    contexts: crate::context::Contexts,
    flows: RwLock<HashMap<String, Arc<TenantFlows>>>,
    /// On the in-process bus, where the flows' outputs go to be published (see `start`).
    outputs: std::sync::OnceLock<tokio::sync::mpsc::Sender<Outputs>>,
    /// Traces of the flows whose switch is on, by flow id (they outlive recompilation).
    traces: std::sync::Mutex<HashMap<String, Arc<Trace>>>,
}

impl FlowEngine {
    pub fn new(devices: Arc<DeviceService>, bus: Arc<dyn Bus>, store: SharedStore, config: EngineConfig) -> Arc<Self> {
        Arc::new(Self {
            devices,
            bus,
            store,
            waiting: AtomicU64::new(0),
            http: HttpEnv::new(config.http.clone()),
            contexts: crate::context::Contexts::default(),
            config,
            flows: RwLock::new(HashMap::new()),
            traces: std::sync::Mutex::new(HashMap::new()),
            outputs: std::sync::OnceLock::new(),
        })
    }

    /// The trace of flow `id`, made if `on` and dropped if not.
    pub fn trace_switch(&self, id: &str, on: bool) -> Option<Arc<Trace>> {
        let mut traces = self.traces.lock().unwrap_or_else(|p| p.into_inner());
        if on {
            Some(traces.entry(id.to_string()).or_default().clone())
        } else {
            traces.remove(id);
            None
        }
    }

    /// Forgets what a removed flow kept in its contexts.
    pub fn forget_flow(&self, tenant: &str, id: &str) {
        self.contexts.forget_flow(tenant, id);
        self.trace_switch(id, false);
    }

    /// The trace of flow `id`, if its switch is on.
    pub fn trace(&self, id: &str) -> Option<Arc<Trace>> {
        self.traces.lock().unwrap_or_else(|p| p.into_inner()).get(id).cloned()
    }

    /// Replaces the flows the engine runs for `tenant`.
    pub fn set_flows(&self, tenant: &str, flows: Vec<Arc<CompiledFlow>>) {
        let mut all = self.flows.write().unwrap_or_else(|p| p.into_inner());
        if flows.is_empty() {
            all.remove(tenant);
        } else {
            all.insert(tenant.to_string(), Arc::new(TenantFlows::new(flows)));
        }
    }

    /// Whether an enabled flow of `tenant` names a device or a template (so a reading
    /// of the tenant may start one).
    fn names_devices(&self, tenant: &str) -> bool {
        self.tenant_flows(tenant).is_some_and(|t| t.names_devices())
    }

    fn tenant_flows(&self, tenant: &str) -> Option<Arc<TenantFlows>> {
        self.flows.read().unwrap_or_else(|p| p.into_inner()).get(tenant).cloned()
    }

    fn loop_cut(&self, tenant: &str, device: &str, hops: u8) {
        metrics::counter!("ingot_flow_loops_total").increment(1);
        tracing::warn!(%tenant, %device, hops, "a reading made by flows {hops} times over runs no flow (a loop?)");
    }

    /// What flows need of the reading's device, if an enabled flow of the tenant names
    /// the device or one of its templates (else the reading is not queued at all).
    async fn wanted(&self, reading: &DeviceData) -> Option<Facts> {
        let t = self.tenant_flows(&reading.tenant)?;
        if !t.names_devices() {
            return None;
        }
        let facts = self.devices.flow_facts(&reading.tenant, &reading.device_id).await?;
        let named =
            t.devices.contains(&reading.device_id) || facts.0.iter().any(|id| t.templates.contains(&id.to_string()));
        named.then_some(facts)
    }

    /// Subscribes to readings and device events and runs flows on them until the bus
    /// ends. `decoupled`: the bus is in-process (see the module docs).
    pub fn start(self: &Arc<Self>, decoupled: bool) {
        // Readings of tenants whose flows name no device or template are not even handed
        // over (nor waited for): `wanted` says no to them anyway.
        let engine = Arc::downgrade(self);
        let interest: bus::Interest =
            Arc::new(move |d| engine.upgrade().is_some_and(|engine| engine.names_devices(&d.tenant)));
        let mut data = self.bus.subscribe_data_where("flows", Mode::Durable, interest);
        let mut events = self.bus.subscribe_events("flows", Mode::Durable);
        let engine = self.clone();
        if decoupled {
            // Outputs are published by a task of their own, taking what has piled up
            // while the previous batches were being stored: the flows go on meanwhile.
            let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<Outputs>(OUTPUT_QUEUE);
            let _ = self.outputs.set(out_tx);
            let publisher = engine.clone();
            tokio::spawn(async move {
                while let Some(first) = out_rx.recv().await {
                    let mut batches = vec![first];
                    while batches.len() < OUTPUT_QUEUE {
                        match out_rx.try_recv() {
                            Ok(b) => batches.push(b),
                            Err(_) => break,
                        }
                    }
                    publisher.carry_out_all(batches).await;
                }
            });
            // Readings a flow may start are stored in the backlog before their publish is
            // acknowledged; a drainer runs the flows on them in order and removes them.
            // The backlog is counted before anything is added to it or taken from it.
            let wake = Arc::new(tokio::sync::Notify::new());
            let backlog = engine.clone();
            tokio::spawn(async move {
                backlog.count_backlog().await;
                tokio::spawn(backlog.clone().drain_backlog(wake.clone()));
                backlog.admit(data, wake).await;
            });
        } else {
            let worker = engine.clone();
            tokio::spawn(async move {
                while let Some(delivery) = data.recv().await {
                    worker.on_reading(&delivery.msg).await;
                    delivery.ack();
                }
            });
        }
        tokio::spawn(async move {
            while let Some(delivery) = events.recv().await {
                engine.on_event(&delivery.msg).await;
                delivery.ack();
            }
        });
    }

    /// On the in-process bus: takes what has arrived (up to [`ADMIT_BATCH`]), stores the
    /// readings an enabled flow will run on in the backlog in one transaction, and only
    /// then acknowledges them; the rest at once. If the backlog cannot be written, those
    /// publishes fail (the device is told, and may send again): nothing acknowledged is
    /// lost. Past `--flow-backlog` readings waiting, a reading runs no flow (counted,
    /// logged once a second): the bound on the disk a stalled flow may fill.
    async fn admit(self: Arc<Self>, mut data: bus::Subscription<DeviceData>, wake: Arc<tokio::sync::Notify>) {
        let mut buf = Vec::with_capacity(ADMIT_BATCH);
        let mut warned: Option<std::time::Instant> = None;
        let mut dropped_since = 0u64;
        while data.recv_many(&mut buf, ADMIT_BATCH).await > 0 {
            let (mut held, mut rows) = (Vec::new(), Vec::new());
            for delivery in buf.drain(..) {
                let reading = delivery.msg.clone();
                if reading.hops >= self.config.max_hops {
                    self.loop_cut(&reading.tenant, &reading.device_id, reading.hops);
                    delivery.ack();
                    continue;
                }
                if self.wanted(&reading).await.is_none() {
                    delivery.ack();
                    continue;
                }
                let waiting = self.waiting.load(Ordering::Relaxed) as usize + rows.len();
                if waiting >= self.config.backlog {
                    metrics::counter!("ingot_flow_readings_dropped_total").increment(1);
                    dropped_since += 1;
                    // One line a second at most, with the count: a flood would be the log's
                    // own outage.
                    if warned.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                        tracing::warn!(tenant = %reading.tenant, dropped = dropped_since, waiting,
                            "flows are too far behind: readings run no flow (--flow-backlog)");
                        warned = Some(std::time::Instant::now());
                        dropped_since = 0;
                    }
                    delivery.ack();
                    continue;
                }
                match serde_json::to_string(&*reading) {
                    Ok(json) => rows.push((reading.tenant.clone(), reading.device_id.clone(), json)),
                    Err(e) => {
                        tracing::error!(error = %e, "a reading could not be written for flows");
                        delivery.ack();
                        continue;
                    }
                }
                held.push(delivery);
            }
            if rows.is_empty() {
                continue;
            }
            let n = rows.len() as u64;
            match self.store.push_backlog(rows).await {
                Ok(()) => {
                    let waiting = self.waiting.fetch_add(n, Ordering::Relaxed) + n;
                    metrics::gauge!("ingot_flow_backlog").set(waiting as f64);
                    held.into_iter().for_each(bus::Delivery::ack);
                    wake.notify_one();
                }
                // Dropped unacknowledged: their publishes fail.
                Err(e) => tracing::warn!(error = %e, readings = n,
                    "readings could not be stored for flows; their publishes fail and devices may send them again"),
            }
        }
    }

    /// At start: what the backlog holds from before (retried until the store answers).
    async fn count_backlog(&self) {
        loop {
            match self.store.backlog_len().await {
                Ok(n) => {
                    self.waiting.store(n, Ordering::Relaxed);
                    metrics::gauge!("ingot_flow_backlog").set(n as f64);
                    if n > 0 {
                        tracing::info!(readings = n, "flows resume: readings from before the restart wait for them");
                    }
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot count the flow backlog; retrying in a second");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// On the in-process bus: runs the flows on the backlog, oldest first, a page at a
    /// time: each device's readings in order on one of a few workers (one per core, the
    /// same one for a device), then removes the page. A crash in between runs that page
    /// again after the restart (at least once, as on NATS). The backlog's size and the
    /// age of its oldest reading (by the reading's own timestamp) are the flows' lag
    /// (`ingot_flow_backlog`, `ingot_flow_lag_seconds`).
    async fn drain_backlog(self: Arc<Self>, wake: Arc<tokio::sync::Notify>) {
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 8);
        loop {
            let page = match self.store.backlog(BACKLOG_PAGE).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the flow backlog; retrying in a second");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let Some(last) = page.last().map(|p| p.id) else {
                metrics::gauge!("ingot_flow_lag_seconds").set(0.0);
                // A second at most between looks, in case a wake-up was missed.
                let _ = tokio::time::timeout(Duration::from_secs(1), wake.notified()).await;
                continue;
            };
            let mut shards: Vec<Vec<DeviceData>> = vec![Vec::new(); workers];
            let count = page.len() as u64;
            for pending in page {
                match serde_json::from_str::<DeviceData>(&pending.reading) {
                    Ok(reading) => shards[shard_of(&pending.tenant, &pending.device, workers)].push(reading),
                    Err(e) => {
                        tracing::error!(error = %e, id = pending.id, "a stored reading is unreadable; no flow runs on it")
                    }
                }
            }
            let oldest = shards.iter().filter_map(|s| s.first()).map(|r| r.ts).min();
            if let Some(oldest) = oldest {
                let lag = (Utc::now() - oldest).num_milliseconds().max(0) as f64 / 1000.0;
                metrics::gauge!("ingot_flow_lag_seconds").set(lag);
            }
            let runs = shards.into_iter().filter(|s| !s.is_empty()).map(|readings| {
                let engine = self.clone();
                tokio::spawn(async move {
                    for reading in readings {
                        engine.on_trigger(Trigger::reading(&reading), None).await;
                    }
                })
            });
            futures_util::future::join_all(runs.collect::<Vec<_>>()).await;
            while let Err(e) = self.store.trim_backlog(last).await {
                tracing::warn!(error = %e, "cannot remove run readings from the flow backlog; retrying in a second");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            let before = self
                .waiting
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| Some(w.saturating_sub(count)))
                .unwrap_or_default();
            metrics::gauge!("ingot_flow_backlog").set(before.saturating_sub(count) as f64);
        }
    }

    /// Runs the tenant's flows on a reading.
    pub async fn on_reading(&self, reading: &DeviceData) {
        self.on_trigger(Trigger::reading(reading), None).await;
    }

    async fn on_event(&self, event: &DeviceEvent) {
        let (name, attrs) = match event.kind {
            EventKind::Configure => {
                ("configure", event.data.get("attrs").and_then(Value::as_object).cloned().unwrap_or_default())
            }
            EventKind::Create => ("create", Map::new()),
            EventKind::Update => ("update", Map::new()),
            EventKind::Remove => ("remove", Map::new()),
            _ => return,
        };
        let Some(device) = event.device_id() else { return };
        let trigger = Trigger {
            tenant: event.tenant.clone(),
            device: device.to_string(),
            event: name,
            attrs,
            data: (name != "configure").then(|| event.data.clone()),
            timestamp_ms: (name == "configure").then(|| event.ts.timestamp_millis()),
            hops: 0,
        };
        self.on_trigger(trigger, None).await;
    }

    /// Runs the tenant's flows on `trigger`; `facts`: the device's, if already read.
    async fn on_trigger(&self, mut trigger: Trigger, facts: Option<Facts>) {
        let Some(flows) = self.tenant_flows(&trigger.tenant) else { return };
        if trigger.hops >= self.config.max_hops {
            self.loop_cut(&trigger.tenant, &trigger.device, trigger.hops);
            return;
        }
        // Removed devices are gone from the catalog: their event runs with what it says.
        let facts = match facts {
            Some(f) => Some(f),
            None => self.devices.flow_facts(&trigger.tenant, &trigger.device).await,
        };
        let (templates, statics) = match facts {
            Some(facts) => facts,
            None if trigger.event == "remove" => (templates_of(trigger.data.as_ref()), Map::new()),
            None => return,
        };
        for (k, v) in statics {
            trigger.attrs.insert(k, v);
        }
        let templates: Vec<String> = templates.iter().map(i64::to_string).collect();
        let mut effects = Vec::new();
        for flow in flows.flows.iter().filter(|f| f.enabled) {
            run(flow, &trigger, &templates, &self.http, &self.contexts, &mut effects).await;
        }
        if effects.is_empty() {
            return;
        }
        let batch = Outputs { tenant: trigger.tenant, hops: trigger.hops, effects };
        match self.outputs.get() {
            // In-process bus: the outputs' own task publishes them, batches at a time.
            Some(tx) => {
                if tx.send(batch).await.is_err() {
                    tracing::warn!("the flows' output task is gone; outputs are lost");
                }
            }
            // NATS: published before the reading is acked (at least once).
            None => self.carry_out_all(vec![batch]).await,
        }
    }

    /// Carries out batches of outputs, all at once and in order: readings are published
    /// (and their durability awaited) together, as the history writer commits them in
    /// one transaction anyway.
    async fn carry_out_all(&self, batches: Vec<Outputs>) {
        let all = batches.iter().flat_map(|b| b.effects.iter().map(move |e| self.carry_out(&b.tenant, b.hops, e)));
        futures_util::future::join_all(all).await;
    }

    async fn carry_out(&self, tenant: &str, hops: u8, effect: &Effect) {
        let effect = effect.clone();
        match effect {
            Effect::Publish { device, attrs } => {
                if !self.devices.device_exists(tenant, &device).await {
                    metrics::counter!("ingot_flow_output_errors_total").increment(1);
                    tracing::warn!(%tenant, %device, "a flow's output names a device that does not exist");
                    return;
                }
                let data =
                    DeviceData { tenant: tenant.to_string(), device_id: device, ts: Utc::now(), attrs, hops: hops + 1 };
                if let Err(e) = self.bus.publish_data(data).await {
                    metrics::counter!("ingot_flow_output_errors_total").increment(1);
                    tracing::warn!(%tenant, error = %e, "a flow's output could not be published");
                } else {
                    metrics::counter!("ingot_flow_outputs_total").increment(1);
                }
            }
            Effect::Actuate { device, attrs } => match self.devices.actuate(tenant, &device, attrs).await {
                Ok(()) => metrics::counter!("ingot_flow_outputs_total").increment(1),
                Err(e) => {
                    metrics::counter!("ingot_flow_output_errors_total").increment(1);
                    tracing::warn!(%tenant, %device, error = %e, "a flow's actuation was refused");
                }
            },
        }
    }
}

/// Which of `n` workers runs a device's readings.
fn shard_of(tenant: &str, device: &str, n: usize) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (tenant, device).hash(&mut h);
    (h.finish() % n as u64) as usize
}

fn templates_of(data: Option<&Value>) -> Vec<i64> {
    data.and_then(|d| d.get("templates")).and_then(Value::as_array).map_or_else(Vec::new, |ts| {
        ts.iter().filter_map(|t| t.as_i64().or_else(|| t.as_str().and_then(|s| s.parse().ok()))).collect()
    })
}

/// The message a head gives its flow, if it reacts to `trigger`.
fn head_message(head: &Head, trigger: &Trigger, templates: &[String]) -> Option<Value> {
    let wants = |events: &crate::nodes::Events| match trigger.event {
        "publish" => events.publish,
        "configure" => events.configure,
        "create" => events.create,
        "update" => events.update,
        "remove" => events.remove,
        _ => false,
    };
    let event_message = || {
        let mut data = trigger.data.clone().unwrap_or_else(|| json!({}));
        data["id"] = json!(trigger.device);
        if trigger.data.is_none() || trigger.event == "configure" {
            data["attrs"] = Value::Object(trigger.attrs.clone());
        }
        let mut metadata = json!({"tenant": trigger.tenant});
        if let Some(ts) = trigger.timestamp_ms {
            metadata["timestamp"] = json!(ts);
        }
        json!({"payload": {"event": trigger.event, "data": data, "metadata": metadata}})
    };
    match head {
        Head::EventDevice { device, events } if *device == trigger.device && wants(events) => Some(event_message()),
        Head::EventTemplate { template, events } if templates.contains(template) && wants(events) => {
            Some(event_message())
        }
        Head::Device { device } if *device == trigger.device && trigger.event == "publish" => {
            Some(json!({"payload": trigger.attrs}))
        }
        Head::DeviceTemplate { template } if templates.contains(template) && trigger.event == "publish" => {
            Some(json!({"payload": trigger.attrs}))
        }
        _ => None,
    }
}

/// Runs one flow on a trigger, adding what its outputs ask for to `effects`.
pub async fn run(
    flow: &CompiledFlow,
    trigger: &Trigger,
    templates: &[String],
    http: &HttpEnv,
    contexts: &crate::context::Contexts,
    effects: &mut Vec<Effect>,
) {
    let graph = &flow.graph;
    let mut queue: VecDeque<(usize, Value)> = VecDeque::new();
    for (i, head) in graph.heads() {
        if let Some(msg) = head_message(head, trigger, templates) {
            queue.push_back((i, msg));
        }
    }
    if queue.is_empty() {
        return;
    }
    metrics::counter!("ingot_flow_runs_total").increment(1);
    let now_ms = Utc::now().timestamp_millis();
    let mut steps = 0;
    while let Some((at, msg)) = queue.pop_front() {
        steps += 1;
        if steps > MAX_STEPS {
            metrics::counter!("ingot_flow_node_errors_total").increment(1);
            tracing::warn!(tenant = %trigger.tenant, flow = %flow.id, "the flow ran more than {MAX_STEPS} nodes for one message; stopped");
            return;
        }
        let node = &graph.nodes[at];
        if let Some(trace) = &flow.trace {
            trace.record(&node.id, "in", None, Some(&msg), None);
        }
        let scope = crate::context::Scope { tenant: &trigger.tenant, flow: &flow.id, node: &node.id };
        let mut ctx = RunContext { http, contexts, scope, originator: &trigger.device, now_ms, effects: &mut *effects };
        match node.kind.run(msg, &mut ctx).await {
            Ok(outputs) => {
                for (port, out) in outputs.into_iter().enumerate() {
                    let Some(out) = out else { continue };
                    if let Some(trace) = &flow.trace {
                        trace.record(&node.id, "out", Some(port), Some(&out), None);
                    }
                    let Some(targets) = node.wires.get(port) else { continue };
                    for &t in targets {
                        queue.push_back((t, out.clone()));
                    }
                }
            }
            Err(e) => {
                if let Some(trace) = &flow.trace {
                    trace.record(&node.id, "error", None, None, Some(e.to_string()));
                }
                metrics::counter!("ingot_flow_node_errors_total").increment(1);
                let kind = match &node.kind {
                    Kind::Head(_) => "head",
                    Kind::Switch(_) => "switch",
                    Kind::Change(_) => "change",
                    Kind::Template(_) => "template",
                    Kind::Geofence(_) => "geofence",
                    Kind::Output(_) => "output",
                    Kind::Http(_) => "http",
                    Kind::GetContext(_) => "get context",
                    Kind::MergeData(_) => "merge data",
                    Kind::CumulativeSum(_) => "cumulative sum",
                };
                tracing::info!(tenant = %trigger.tenant, flow = %flow.id, node = %node.id, kind, error = %e, "a flow's branch stopped");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::compile;

    fn trigger(attrs: Value) -> Trigger {
        Trigger {
            tenant: "admin".into(),
            device: "thermo1".into(),
            event: "publish",
            attrs: attrs.as_object().unwrap().clone(),
            data: None,
            timestamp_ms: Some(1_700_000_000_000),
            hops: 0,
        }
    }

    #[tokio::test]
    async fn the_kitchen_flow_sets_the_alarm() {
        let http = HttpEnv::new(HttpPolicy::default());
        let contexts = crate::context::Contexts::default();
        let flow = CompiledFlow {
            id: "f".into(),
            enabled: true,
            graph: compile(&crate::document::tests_support::kitchen("7", "alarm01")).unwrap(),
            trace: Some(Arc::default()),
        };
        for (t, message, severity) in [(30, "kitchen OK", 4), (45, "kitchen on fire", 1)] {
            let mut effects = Vec::new();
            run(&flow, &trigger(json!({"temperature": t})), &["7".to_string()], &http, &contexts, &mut effects).await;
            let attrs = json!({"message": message, "severity": severity});
            assert_eq!(
                effects,
                vec![Effect::Publish { device: "alarm01".into(), attrs: attrs.as_object().unwrap().clone() }]
            );
        }
        let mut effects = Vec::new();
        run(&flow, &trigger(json!({"temperature": 30})), &["8".to_string()], &http, &contexts, &mut effects).await;
        assert!(effects.is_empty(), "another template's device");
        // The trace saw both runs: the switch took each message in and sent it on one port.
        let trace = flow.trace.as_ref().unwrap().snapshot();
        let switch: Vec<(&str, Option<u64>)> = trace["nodes"]["sw"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["kind"].as_str().unwrap(), e["port"].as_u64()))
            .collect();
        assert_eq!(switch, [("in", None), ("out", Some(0)), ("in", None), ("out", Some(1))]);
        assert_eq!(trace["nodes"]["sw"][0]["message"]["payload"]["data"]["attrs"]["temperature"], 30);
    }
}
