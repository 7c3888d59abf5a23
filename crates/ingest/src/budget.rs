//! [`AttrBudget`]: at most N distinct attribute labels per device.
//!
//! Every label a device sends becomes a history series that is kept (and indexed) until
//! retention removes it, so a device that invents labels (`{"x1":1}`, `{"x2":1}`, …)
//! would otherwise grow the store and every `GET …/history` answer without bound. The
//! budget remembers which labels each device already has and refuses a reading that
//! would take a device past the cap, before anything is published: the device hears it
//! in its protocol's terms (v5 PUBACK 0x97 quota exceeded, HTTP 400).
//!
//! What a device has is loaded from the store when it connects (MQTT) or proves itself
//! (HTTP), or else on its first reading since start (or since it was evicted), then kept
//! in memory. The map is sharded by device so that MQTT connections and HTTP handlers
//! rarely meet on one mutex; each shard holds a bounded number of devices, and forgetting
//! one only costs a reload. Labels whose series retention
//! removed stay counted until the device is forgotten (evicted, deleted, or a restart).

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::sync::{Mutex, MutexGuard};

use model::DeviceRef;
use serde_json::{Map, Value};

const SHARDS: usize = 16;

/// Distinct attribute labels per device, bounded.
pub(crate) struct AttrBudget {
    max_per_device: usize,
    devices_per_shard: usize,
    hasher: RandomState,
    shards: Vec<Mutex<HashMap<DeviceRef, HashSet<String>>>>,
}

/// What [`AttrBudget::admit`] decided.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    Admitted,
    /// The reading would take the device past the cap; nothing was recorded.
    OverLimit,
    /// The device's labels are not loaded: call [`AttrBudget::load`] and ask again.
    Unknown,
}

impl AttrBudget {
    /// `max_per_device` labels per device; about `max_devices` devices remembered.
    pub fn new(max_per_device: usize, max_devices: usize) -> Self {
        Self {
            max_per_device,
            devices_per_shard: max_devices.div_ceil(SHARDS).max(1),
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    pub fn max_per_device(&self) -> usize {
        self.max_per_device
    }

    fn shard(&self, device: &DeviceRef) -> MutexGuard<'_, HashMap<DeviceRef, HashSet<String>>> {
        let i = self.hasher.hash_one(device) as usize % SHARDS;
        // Plain sets of labels: nothing a panic could leave half-changed matters.
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the labels of `attrs` for `device` if that keeps it within the cap.
    pub fn admit(&self, device: &DeviceRef, attrs: &Map<String, Value>) -> Admission {
        let mut shard = self.shard(device);
        let Some(known) = shard.get_mut(device) else { return Admission::Unknown };
        let new = attrs.keys().filter(|k| !known.contains(k.as_str())).count();
        if new == 0 {
            return Admission::Admitted;
        }
        if known.len() + new > self.max_per_device {
            return Admission::OverLimit;
        }
        known.extend(attrs.keys().cloned());
        Admission::Admitted
    }

    /// Whether `device`'s labels are loaded.
    pub fn knows(&self, device: &DeviceRef) -> bool {
        self.shard(device).contains_key(device)
    }

    /// Remembers what the store knows of `device` (kept if another caller loaded it first).
    pub fn load(&self, device: &DeviceRef, stored: Vec<String>) {
        let mut shard = self.shard(device);
        if shard.contains_key(device) {
            return;
        }
        if shard.len() >= self.devices_per_shard
            && let Some(victim) = shard.keys().next().cloned()
        {
            shard.remove(&victim);
        }
        shard.insert(device.clone(), stored.into_iter().collect());
    }

    /// Forgets a device (deleted: its history went with it).
    pub fn forget(&self, device: &DeviceRef) {
        self.shard(device).remove(device);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attrs(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn caps_distinct_labels_per_device() {
        let budget = AttrBudget::new(3, 100);
        let d = DeviceRef::new("t", "d").unwrap();
        assert_eq!(budget.admit(&d, &attrs(json!({"a": 1}))), Admission::Unknown);
        budget.load(&d, vec!["a".into()]);
        assert_eq!(budget.admit(&d, &attrs(json!({"a": 1, "b": 2}))), Admission::Admitted);
        assert_eq!(budget.admit(&d, &attrs(json!({"c": 1, "d": 2}))), Admission::OverLimit);
        // Nothing of a refused reading was recorded: one more label still fits.
        assert_eq!(budget.admit(&d, &attrs(json!({"c": 1}))), Admission::Admitted);
        assert_eq!(budget.admit(&d, &attrs(json!({"a": 0, "b": 0, "c": 0}))), Admission::Admitted);
        assert_eq!(budget.admit(&d, &attrs(json!({"e": 1}))), Admission::OverLimit);
        // Another device has a budget of its own.
        let other = DeviceRef::new("t", "other").unwrap();
        budget.load(&other, vec![]);
        assert_eq!(budget.admit(&other, &attrs(json!({"e": 1}))), Admission::Admitted);
        budget.forget(&d);
        assert_eq!(budget.admit(&d, &attrs(json!({"a": 1}))), Admission::Unknown);
    }

    #[test]
    fn remembers_a_bounded_number_of_devices() {
        let budget = AttrBudget::new(10, SHARDS);
        for i in 0..1000 {
            budget.load(&DeviceRef::new("t", format!("d{i}")).unwrap(), vec!["a".into()]);
        }
        let remembered: usize = budget.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!(remembered <= SHARDS, "{remembered} devices remembered");
    }
}
