//! The HTTP device agent's body, dojot's `{"data": {attributes}, "ts"?: timestamp}`, through
//! what `POST /http-agent/v1/incoming-messages` runs: `http_agent_attrs`, then
//! `DeviceData::from_attrs`. Any JSON gives a reading or a `PayloadError`, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use model::data::{PayloadLimits, http_agent_attrs};
use model::{DeviceData, DeviceRef};

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let ts = body.get("ts").cloned();
    let Ok(attrs) = http_agent_attrs(body) else { return };
    let device = DeviceRef::new("admin", "0998").unwrap();
    let limits = PayloadLimits { max_attrs: 8, max_label_len: 16, max_depth: 4 };
    let received = chrono::DateTime::UNIX_EPOCH;
    if let Ok(d) = DeviceData::from_attrs(&device, attrs, received, &limits) {
        assert!(!d.attrs.is_empty() && d.attrs.len() <= 8);
        assert!(!d.attrs.contains_key("timestamp"));
        if let Some(ts) = ts {
            assert_eq!(Some(d.ts), model::time::parse_device_timestamp(&ts), "ts is the reading's time");
        }
        let _ = d.to_dojot_json();
        // The history API shows this time as RFC 3339; a client must be able to read it back.
        let shown = d.ts_string();
        assert!(chrono::DateTime::parse_from_rfc3339(&shown).is_ok(), "{shown}");
    }
});
