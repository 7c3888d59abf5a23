//! Several nodes on one database: each node's seat mirror ([`super::Committed`]) and
//! live account views follow the accounts other nodes change.
//!
//! The counts are exact in the database whichever node a login reaches (seat batches
//! lock their tenant). What a node answers from its mirror (a repeated login) carries the
//! account as the node last saw it, so a node that commits a new seat or a plan change
//! publishes `seat.account`, and every other node re-reads that account from the store,
//! mirrors it and passes it to its live views (the node that made the change did so
//! already, and skips its own event).

use std::sync::Arc;

use bus::{Bus, Mode};
use chrono::Utc;
use model::{DeviceEvent, EventKind};
use serde_json::{Value, json};

use crate::{AccountUpdate, AccountView, SeatError, SeatService};

/// The per-node bus group through which a node follows the others' account changes.
pub const FOLLOW_GROUP: &str = "seats";

/// Where this node tells the others of account changes, and its name in those events.
pub(crate) struct Cluster {
    bus: Arc<dyn Bus>,
    node: String,
}

impl SeatService {
    /// Makes this node a node of a cluster on `bus` (see the module documentation).
    /// Returns once the subscription receives.
    pub async fn follow(self: &Arc<Self>, bus: Arc<dyn Bus>) -> Result<(), SeatError> {
        let events = bus.subscribe_events(FOLLOW_GROUP, Mode::EachNode);
        bus.ready().await?;
        let _ = self.cluster.set(Cluster { bus, node: model::secret::random_hex(8) });
        events.follow(Arc::downgrade(self), |seats: Arc<SeatService>, event: Arc<DeviceEvent>| async move {
            let data = &event.data;
            let own = seats.cluster.get().is_some_and(|c| data.get("node").and_then(Value::as_str) == Some(&c.node));
            match (event.kind, data.get("account").and_then(Value::as_str)) {
                (EventKind::SeatAccount, Some(account)) if !own => seats.refresh(&event.tenant, account).await,
                _ => Ok(()),
            }
        });
        Ok(())
    }

    /// Mirrors the stored account and shows it to live views.
    async fn refresh(&self, tenant: &str, account_id: &str) -> Result<(), SeatError> {
        let Some(record) = self.store.account(tenant, account_id).await? else { return Ok(()) };
        self.committed.lock().expect("seat cache").committed(&record, None);
        let account = AccountView::from_record(&record);
        let _ = self.updates.send(AccountUpdate { tenant: tenant.to_string(), account });
        Ok(())
    }

    /// Tells the other nodes that an account changed (nothing on one node).
    pub(crate) async fn tell_nodes(&self, tenant: &str, account_id: &str) {
        let Some(cluster) = self.cluster.get() else { return };
        let event = DeviceEvent {
            kind: EventKind::SeatAccount,
            tenant: tenant.to_string(),
            data: json!({"account": account_id, "node": cluster.node}),
            ts: Utc::now(),
        };
        if let Err(e) = cluster.bus.publish_event(event).await {
            // Committed already: the count is right in the database; other nodes show the
            // account's change at its next new seat.
            tracing::warn!(error = %e, tenant, "the other nodes could not be told of an account change");
        }
    }
}
