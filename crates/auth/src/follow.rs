//! Several nodes on one database: what one node revokes or changes, every node forgets.
//!
//! Each node caches valid API tokens and current users ([`crate::cache`]). A node
//! invalidates its own cache after its own commits; with several nodes, the node that
//! commits also publishes an event (`token.revoked`, `user.changed`) and every node (a
//! per-node group, [`Mode::EachNode`]) invalidates on it, within milliseconds. A node that
//! misses an event (the bus was down when it was published) keeps the stale entry for at
//! most [`crate::AuthConfig::token_recheck_ttl`] / `user_recheck_ttl`.

use std::sync::Arc;

use bus::{Bus, Mode};
use chrono::Utc;
use model::{DeviceEvent, EventKind};
use serde_json::{Value, json};

use crate::AuthError;
use crate::service::{AuthService, UserChange};

/// The per-node bus group through which a node follows the others' revocations.
pub const FOLLOW_GROUP: &str = "auth";

impl AuthService {
    /// Makes this node a node of a cluster on `bus`: its revocations and user changes are
    /// published, and every node's (its own included) are applied. Returns once the
    /// subscription receives.
    pub async fn follow(self: &Arc<Self>, bus: Arc<dyn Bus>) -> Result<(), AuthError> {
        let events = bus.subscribe_events(FOLLOW_GROUP, Mode::EachNode);
        bus.ready().await?;
        let _ = self.bus.set(bus);
        events.follow(Arc::downgrade(self), |auth, event| async move {
            auth.apply(&event);
            Ok::<(), AuthError>(())
        });
        Ok(())
    }

    fn apply(&self, event: &DeviceEvent) {
        match event.kind {
            EventKind::TokenRevoked => {
                if let Some(id) = event.data.get("token").and_then(Value::as_str) {
                    self.token_cache().invalidate(|_, p| p.token_id == id);
                }
            }
            EventKind::UserChanged => {
                if let Some(user_id) = event.data.get("user").and_then(Value::as_i64) {
                    let tenant = event.tenant.clone();
                    let removed = event.data.get("removed").and_then(Value::as_bool).unwrap_or(false);
                    let change = if removed {
                        UserChange::Removed { tenant, user_id }
                    } else {
                        UserChange::Updated { tenant, user_id }
                    };
                    self.forget_user(&change);
                }
            }
            _ => {}
        }
    }

    /// Tells the other nodes that token `id` of `tenant` was revoked (nothing on one node).
    pub(crate) async fn tell_token_revoked(&self, tenant: &str, id: &str) {
        self.tell_nodes(tenant, EventKind::TokenRevoked, json!({"token": id})).await;
    }

    /// Tells the other nodes of a user change (nothing on one node).
    pub(crate) async fn tell_user_changed(&self, change: &UserChange) {
        let (tenant, user_id) = change.user();
        let removed = matches!(change, UserChange::Removed { .. });
        self.tell_nodes(tenant, EventKind::UserChanged, json!({"user": user_id, "removed": removed})).await;
    }

    async fn tell_nodes(&self, tenant: &str, kind: EventKind, data: Value) {
        let Some(bus) = self.bus.get() else { return };
        let event = DeviceEvent { kind, tenant: tenant.into(), data, ts: Utc::now() };
        if let Err(e) = bus.publish_event(event).await {
            // Committed already: the other nodes catch up when their cached entry expires.
            tracing::warn!(error = %e, event = kind.as_str(), "the other nodes could not be told of a change");
        }
    }
}
