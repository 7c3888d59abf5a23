//! MQTT/HTTP payload → DeviceData: any bytes must give a reading or a PayloadError, never
//! a panic; an accepted reading respects the limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use model::data::PayloadLimits;
use model::{DeviceData, DeviceRef};

fuzz_target!(|data: &[u8]| {
    let device = DeviceRef::new("admin", "0998").unwrap();
    let limits = PayloadLimits { max_attrs: 8, max_label_len: 16, max_depth: 4 };
    if let Ok(d) = DeviceData::from_payload(&device, data, chrono::DateTime::UNIX_EPOCH, &limits) {
        assert!(!d.attrs.is_empty() && d.attrs.len() <= 8);
        assert!(!d.attrs.contains_key("timestamp"));
        let _ = d.to_dojot_json();
        // The history API shows this time as RFC 3339; a client must be able to read it back.
        let shown = d.ts_string();
        assert!(chrono::DateTime::parse_from_rfc3339(&shown).is_ok(), "{shown}");
    }
});
