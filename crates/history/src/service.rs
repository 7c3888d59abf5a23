//! [`HistoryService`]: what the API asks of history. Routes call this, never the store,
//! so that the store behind it can change (SQLite today, PostgreSQL next) without the
//! API knowing.

use serde_json::Value;
use store::prelude::*;

use crate::HistoryError;
use crate::query::{self, HistoryParams, HistoryResult, Range, RangeQuery};

/// Reads history for the API.
pub struct HistoryService {
    store: SharedStore,
    max_points: u32,
}

impl HistoryService {
    /// `max_points`: most readings one answer returns, over all its attributes.
    pub fn new(store: SharedStore, max_points: u32) -> Self {
        Self { store, max_points }
    }

    /// Most readings one answer returns, over all its attributes.
    pub fn max_points(&self) -> u32 {
        self.max_points
    }

    /// dojot's `/history/device/{id}/history`. Without `attr`, the attributes are the
    /// device's data attributes from its templates (`catalog_labels`) plus every label
    /// it has history for.
    pub async fn device_history(
        &self,
        tenant: &str,
        device_id: &str,
        params: &HistoryParams,
        catalog_labels: Vec<String>,
    ) -> Result<HistoryResult, HistoryError> {
        let labels = self.labels(tenant, device_id, catalog_labels).await?;
        query::history(&self.store, tenant, device_id, params, labels, self.max_points).await
    }

    /// The console's charts and report: readings in a time range, oldest first, bounded
    /// like every answer (see [`query::range`]). Without attributes in `q`, those of
    /// [`Self::device_history`].
    pub async fn range(
        &self,
        tenant: &str,
        device_id: &str,
        q: &RangeQuery,
        catalog_labels: Vec<String>,
    ) -> Result<Range, HistoryError> {
        let labels = if q.attrs.is_empty() { self.labels(tenant, device_id, catalog_labels).await? } else { vec![] };
        query::range(&self.store, tenant, device_id, q, labels, self.max_points).await
    }

    /// The device's data attributes (`catalog_labels`) plus every label it has history for.
    async fn labels(
        &self,
        tenant: &str,
        device_id: &str,
        mut catalog_labels: Vec<String>,
    ) -> Result<Vec<String>, HistoryError> {
        for label in self.store.history_attrs(tenant, device_id).await? {
            if !catalog_labels.contains(&label) {
                catalog_labels.push(label);
            }
        }
        Ok(catalog_labels)
    }

    /// The newest value of each attribute of a device.
    pub async fn latest(&self, tenant: &str, device_id: &str) -> Result<Value, HistoryError> {
        query::latest(&self.store, tenant, device_id).await
    }

    /// Whether the database answers (for `/health`).
    pub async fn check_store(&self) -> Result<(), HistoryError> {
        self.store.tenants().await?;
        Ok(())
    }
}
